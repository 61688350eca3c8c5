"""Reward normalisation across a batch of prompts."""

from __future__ import annotations

import numpy as np


def zscore(rewards: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Per-batch z-scores, as RLPrompt normalises the rewards of the prompts sampled together.

    A batch of one prompt (or of identical rewards) has no spread and maps to zeros.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.size < 2:
        return np.zeros_like(rewards)
    return (rewards - rewards.mean()) / (rewards.std() + eps)
