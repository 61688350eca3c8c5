"""The reward seam: a reward scores a batch of prompt texts and names the metrics it reports.

Classification (:mod:`rlprompt.rewards.classification`) is one implementation; a generation
reward is another module deriving from :class:`PromptReward`. The env passes the metrics on in
each finished prompt's ``info["metrics"]``, and selection ranks on one of them by name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


@dataclass
class RewardBatch:
    """Raw (un-normalised) rewards of a batch of prompts, and named per-prompt metrics."""

    rewards: np.ndarray
    """One reward per prompt, shape ``[P]``."""
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    """Metric name -> one value per prompt, shape ``[P]`` (e.g. ``accuracy`` in [0, 1])."""

    def row(self, index: int) -> dict[str, float]:
        """The metrics of prompt ``index``."""
        return {name: float(values[index]) for name, values in self.metrics.items()}


class PromptReward(ABC):
    """Scores a batch of prompt texts on a task."""

    metric_names: tuple[str, ...] = ()
    """The metrics every batch of this reward carries."""

    @abstractmethod
    def __call__(self, prompts: Sequence[str]) -> RewardBatch:
        """Rewards and metrics of ``prompts``, in order."""
