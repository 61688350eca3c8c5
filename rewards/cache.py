"""Score each distinct prompt once per run."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rewards.classification import PromptReward, RewardBatch


class CachedReward:
    """Wraps a reward so a prompt already scored in this run is not scored again.

    Prompts are keyed by their text: the text is what the target LM sees (it is re-tokenized),
    so equal texts get equal rewards. Only the prompts not seen before reach the wrapped reward,
    in one batch.

    Args:
        reward: The reward to cache.
    """

    def __init__(self, reward: PromptReward) -> None:
        self.reward = reward
        self._scores: dict[str, tuple[float, float]] = {}
        self.lookups = 0
        self.hits = 0

    @property
    def evaluations(self) -> int:
        """Prompts actually scored by the wrapped reward."""
        return len(self._scores)

    @property
    def hit_rate(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0

    def __call__(self, prompts: Sequence[str]) -> RewardBatch:
        new = list(dict.fromkeys(p for p in prompts if p not in self._scores))
        self.lookups += len(prompts)
        self.hits += len(prompts) - len(new)
        if new:
            batch = self.reward(new)
            for prompt, reward, accuracy in zip(new, batch.rewards, batch.accuracy):
                self._scores[prompt] = (float(reward), float(accuracy))
        scores = np.array([self._scores[p] for p in prompts], dtype=np.float64).reshape(len(prompts), 2)
        return RewardBatch(rewards=scores[:, 0], accuracy=scores[:, 1])
