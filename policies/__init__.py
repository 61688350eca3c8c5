"""Policies that write prompts token by token (their action vocabularies are the env's)."""

from __future__ import annotations

from rlprompt.policies.lm_adapter import AdapterAndValue, BackboneFeatures, LMAdapterPolicy

__all__ = ["AdapterAndValue", "BackboneFeatures", "LMAdapterPolicy"]
