"""Score each distinct prompt once per run, and keep the scores across a resumed run."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from rlprompt.rewards.base import PromptReward, RewardBatch


class CachedReward(PromptReward):
    """Wraps a reward so a prompt already scored in this run is not scored again.

    Prompts are keyed by their text: the text is what the target LM sees (it is re-tokenized),
    so equal texts get equal rewards. Only the prompts not seen before reach the wrapped reward,
    in one batch. :meth:`state` and :meth:`load_state` carry the scores into a resumed run.

    Args:
        reward: The reward to cache.
    """

    def __init__(self, reward: PromptReward) -> None:
        self.reward = reward
        self.metric_names = getattr(reward, "metric_names", ())
        self._scores: dict[str, tuple[float, dict[str, float]]] = {}
        self.lookups = 0
        self.hits = 0

    @property
    def evaluations(self) -> int:
        """Prompts actually scored by the wrapped reward."""
        return len(self._scores)

    @property
    def hit_rate(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0

    def __contains__(self, prompt: str) -> bool:
        """Whether ``prompt`` has been scored (so scoring it again costs no evaluation)."""
        return prompt in self._scores

    def scored(self) -> dict[str, tuple[float, dict[str, float]]]:
        """Every prompt scored so far: its reward and metrics."""
        return dict(self._scores)

    def __call__(self, prompts: Sequence[str]) -> RewardBatch:
        new = list(dict.fromkeys(p for p in prompts if p not in self._scores))
        self.lookups += len(prompts)
        self.hits += len(prompts) - len(new)
        if new:
            batch = self.reward(new)
            for i, prompt in enumerate(new):
                self._scores[prompt] = (float(batch.rewards[i]), batch.row(i))
        rewards = np.array([self._scores[p][0] for p in prompts], dtype=np.float64)
        names = self._scores[prompts[0]][1] if prompts else self.metric_names  # every batch of one reward has the same
        metrics = {name: np.array([self._scores[p][1][name] for p in prompts], dtype=np.float64) for name in names}
        return RewardBatch(rewards=rewards, metrics=metrics)

    def state(self) -> dict[str, Any]:
        """The scored prompts and counters, as JSON-ready data."""
        return {
            "scores": {prompt: {"reward": reward, "metrics": metrics} for prompt, (reward, metrics) in self._scores.items()},
            "lookups": self.lookups,
            "hits": self.hits,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Take the scores of :meth:`state`: those prompts are never scored again."""
        self._scores = {prompt: (float(s["reward"]), dict(s["metrics"])) for prompt, s in state["scores"].items()}
        self.lookups, self.hits = int(state["lookups"]), int(state["hits"])
