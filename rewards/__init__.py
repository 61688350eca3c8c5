"""Reward modules: score a batch of prompts by how well the frozen target LM does the task."""

from __future__ import annotations

from rlprompt.rewards.base import PromptReward, RewardBatch
from rlprompt.rewards.cache import CachedReward
from rlprompt.rewards.classification import AccuracyReward, GapReward, gap_rewards
from rlprompt.rewards.fluency import FluencyReward
from rlprompt.rewards.normalize import zscore

__all__ = ["AccuracyReward", "CachedReward", "FluencyReward", "GapReward", "PromptReward", "RewardBatch", "gap_rewards", "zscore"]
