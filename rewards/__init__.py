"""Reward modules: score a batch of prompts by how well the frozen target LM does the task."""

from __future__ import annotations

from rewards.cache import CachedReward
from rewards.classification import AccuracyReward, GapReward, PromptReward, RewardBatch, gap_rewards
from rewards.fluency import FluencyReward
from rewards.normalize import zscore

__all__ = ["AccuracyReward", "CachedReward", "FluencyReward", "GapReward", "PromptReward", "RewardBatch", "gap_rewards", "zscore"]
