"""rlprompt: discrete, readable text prompts for frozen language models, found by RL."""

from __future__ import annotations

__version__ = "0.1.0"
