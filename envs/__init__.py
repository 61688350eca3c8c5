"""Gymnasium environments for prompt construction. Importing this registers ``rlprompt/Prompt-v0``."""

from __future__ import annotations

import gymnasium as gym

from envs.prompt_env import PromptEnv
from envs.vec_env import PromptVecEnv

ENV_ID = "rlprompt/Prompt-v0"

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="envs.factory:make_prompt_env")

__all__ = ["ENV_ID", "PromptEnv", "PromptVecEnv"]
