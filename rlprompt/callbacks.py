"""Choosing the final prompt while prompts are being sampled, and watching training.

``PromptSelector`` is the one rule every search method uses to pick its prompt (RL and random
search alike, so their comparison is about how prompts are proposed, not how one is chosen);
``TopKPromptCallback`` feeds it from a stable-baselines3 run.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from rlprompt.artifact import Candidate

logger = logging.getLogger(__name__)


class PromptSelector:
    """Keeps the top-k distinct prompts by training reward and the best of them on dev.

    Every finished prompt (an env ``info`` with a ``"prompt"`` key) is a candidate. When a new
    prompt enters the top-k it is scored on dev (once per prompt); the best prompt so far by dev
    accuracy (ties: training reward) is kept even after it leaves the top-k, and is handed to
    ``on_best`` with the other candidates whenever it changes, so a run stopped at any moment
    leaves its best prompt.

    Args:
        top_k: How many distinct prompts to keep.
        dev_accuracy: Scores a list of prompt texts on dev, returning accuracies in [0, 1].
        on_best: Called with the ranked candidates whenever the best one changes.
        evaluations: Returns how many distinct prompts the training reward has scored so far
            (the target-LM budget spent), recorded in ``history``.
    """

    def __init__(
        self,
        top_k: int,
        dev_accuracy: Callable[[list[str]], list[float]],
        on_best: Callable[[list[Candidate]], None],
        evaluations: Callable[[], int] = lambda: 0,
    ) -> None:
        self.top_k = top_k
        self.dev_accuracy = dev_accuracy
        self.on_best = on_best
        self.evaluations = evaluations
        self.candidates: dict[str, Candidate] = {}
        self.prompts_sampled = 0
        self.batches = 0
        self.best: Candidate | None = None
        self.history: list[dict[str, float]] = []
        """One row per batch: prompts sampled, evaluations, best dev accuracy and its train reward,
        and the seconds since the selector was made (so step times and curves over wall time)."""
        self._started = time.monotonic()
        self._dev_scores: dict[str, float] = {}

    @staticmethod
    def _merit(candidate: Candidate) -> tuple[float, float]:
        return (candidate.dev_accuracy if candidate.dev_accuracy is not None else -1.0, candidate.train_reward)

    def ranked(self) -> list[Candidate]:
        """The best prompt so far first, then the kept candidates by dev accuracy and training reward."""
        others = sorted((c for c in self.candidates.values() if c is not self.best), key=self._merit, reverse=True)
        return ([self.best] if self.best else []) + others

    def budget_spent(self, max_evaluations: int | None) -> bool:
        """Whether the training reward has scored ``max_evaluations`` distinct prompts (None: never)."""
        return max_evaluations is not None and self.evaluations() >= max_evaluations

    def add(self, infos: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Take one batch of env infos; returns the finished prompts' infos (empty if none)."""
        finished = [info for info in infos if "prompt" in info]
        if not finished:
            return finished
        self.prompts_sampled += len(finished)
        self.batches += 1
        for info in finished:
            if info["prompt"] not in self.candidates:
                self.candidates[info["prompt"]] = Candidate(
                    prompt=info["prompt"],
                    token_ids=[int(t) for t in info["token_ids"]],
                    train_reward=info["raw_reward"],
                    train_accuracy=info["accuracy"],
                    dev_accuracy=self._dev_scores.get(info["prompt"]),
                )
        # Keep only the top-k by training reward; only those are worth a dev evaluation.
        kept = sorted(self.candidates.values(), key=lambda c: c.train_reward, reverse=True)[: self.top_k]
        self.candidates = {c.prompt: c for c in kept}
        to_score = [c for c in kept if c.dev_accuracy is None]
        if to_score:
            for candidate, dev in zip(to_score, self.dev_accuracy([c.prompt for c in to_score])):
                candidate.dev_accuracy = self._dev_scores[candidate.prompt] = float(dev)
        challenger = max(kept, key=self._merit)
        # The best prompt is never evicted: a later, higher-reward batch must beat it on dev.
        if self.best is None or self._merit(challenger) > self._merit(self.best):
            self.best = challenger
            logger.info(
                "step %d: new best %r, dev accuracy %.1f%%, train reward %.1f",
                self.batches, challenger.prompt, 100 * (challenger.dev_accuracy or 0.0), challenger.train_reward,
            )
            self.on_best(self.ranked())
        self.history.append(
            {
                "batch": self.batches,
                "prompts_sampled": self.prompts_sampled,
                "evaluations": self.evaluations(),
                "best_dev_accuracy": float(self.best.dev_accuracy or 0.0),
                "best_train_reward": float(self.best.train_reward),
                "seconds": round(time.monotonic() - self._started, 3),
            }
        )
        return finished


class TopKPromptCallback(BaseCallback):
    """Feeds every finished batch of a stable-baselines3 run to a ``PromptSelector``.

    Also logs the batch's reward statistics to TensorBoard and stops training once the
    training reward has scored ``max_evaluations`` distinct prompts (the target-LM budget).

    Args:
        selector: Chooses the final prompt.
        max_evaluations: Stop after this many distinct prompt evaluations; None: no limit.
    """

    def __init__(self, selector: PromptSelector, max_evaluations: int | None = None) -> None:
        super().__init__()
        self.selector = selector
        self.max_evaluations = max_evaluations

    def _on_step(self) -> bool:
        finished = self.selector.add(self.locals["infos"])
        if not finished:
            return True
        raw = np.array([info["raw_reward"] for info in finished])
        accuracy = np.array([info["accuracy"] for info in finished])
        distinct = len({info["prompt"] for info in finished})
        self.logger.record("prompts/train_reward_mean", float(raw.mean()))
        self.logger.record("prompts/train_reward_max", float(raw.max()))
        self.logger.record("prompts/train_accuracy_mean", float(accuracy.mean()))
        self.logger.record("prompts/distinct_in_batch", distinct)
        best = self.selector.best
        assert best is not None
        self.logger.record("prompts/best_dev_accuracy", float(best.dev_accuracy or 0.0))
        self.logger.record("prompts/best_train_reward", float(best.train_reward))
        logger.debug(
            "step %d: train reward mean %.2f max %.2f, train accuracy %.3f, %d distinct prompts",
            self.selector.batches, raw.mean(), raw.max(), accuracy.mean(), distinct,
        )
        return not self.selector.budget_spent(self.max_evaluations)
