"""Gymnasium environments for prompt construction. Importing this registers ``rlprompt/Prompt-v0``."""

from __future__ import annotations

import gymnasium as gym

from rlprompt.envs.prompt_env import PromptEnv
from rlprompt.envs.vec_env import PromptVecEnv
from rlprompt.envs.vocab import VOCABULARIES, ActionVocabulary, build_vocabulary

ENV_ID = "rlprompt/Prompt-v0"

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="rlprompt.builder:make_prompt_env")

__all__ = ["ENV_ID", "VOCABULARIES", "ActionVocabulary", "PromptEnv", "PromptVecEnv", "build_vocabulary"]
