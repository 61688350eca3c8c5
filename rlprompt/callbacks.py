"""Training callbacks: keep the best prompts seen so far and always leave them on disk."""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from rlprompt.artifact import Candidate

logger = logging.getLogger(__name__)


class TopKPromptCallback(BaseCallback):
    """Keeps the top-k distinct prompts by training reward and saves the best on dev.

    Every finished prompt reported in the env's ``info`` is a candidate. When a new prompt
    enters the top-k, it is scored on dev (``dev_accuracy``); the best candidate by dev
    accuracy (ties: training reward) is handed to ``on_best`` whenever it changes, which
    rewrites the run's prompt file, so a run stopped at any moment leaves its best prompt.

    Args:
        top_k: How many distinct prompts to keep.
        dev_accuracy: Scores a list of prompt texts on dev, returning accuracies in [0, 1].
        on_best: Called with the ranked candidates whenever the best one changes.
    """

    def __init__(
        self,
        top_k: int,
        dev_accuracy: Callable[[list[str]], list[float]],
        on_best: Callable[[list[Candidate]], None],
    ) -> None:
        super().__init__()
        self.top_k = top_k
        self.dev_accuracy = dev_accuracy
        self.on_best = on_best
        self.candidates: dict[str, Candidate] = {}
        self.prompt_evaluations = 0
        self.best: Candidate | None = None

    def ranked(self) -> list[Candidate]:
        """Candidates, best on dev first (then by training reward)."""
        return sorted(
            self.candidates.values(),
            key=lambda c: (c.dev_accuracy if c.dev_accuracy is not None else -1.0, c.train_reward),
            reverse=True,
        )

    def _on_step(self) -> bool:
        finished = [info for info in self.locals["infos"] if "prompt" in info]
        if not finished:
            return True
        self.prompt_evaluations += len(finished)
        raw = np.array([info["raw_reward"] for info in finished])
        accuracy = np.array([info["accuracy"] for info in finished])
        self.logger.record("prompts/train_reward_mean", float(raw.mean()))
        self.logger.record("prompts/train_reward_max", float(raw.max()))
        self.logger.record("prompts/train_accuracy_mean", float(accuracy.mean()))
        self.logger.record("prompts/distinct_in_batch", len({info["prompt"] for info in finished}))
        entrants = []
        for info in finished:
            if info["prompt"] in self.candidates:
                continue
            entrants.append(info)
            self.candidates[info["prompt"]] = Candidate(
                prompt=info["prompt"],
                token_ids=[int(t) for t in info["token_ids"]],
                train_reward=info["raw_reward"],
                train_accuracy=info["accuracy"],
            )
        # Keep only the top-k by training reward; only those are worth a dev evaluation.
        kept = sorted(self.candidates.values(), key=lambda c: c.train_reward, reverse=True)[: self.top_k]
        self.candidates = {c.prompt: c for c in kept}
        to_score = [c for c in kept if c.dev_accuracy is None]
        if to_score:
            for candidate, dev in zip(to_score, self.dev_accuracy([c.prompt for c in to_score])):
                candidate.dev_accuracy = float(dev)
        ranked = self.ranked()
        if ranked and (self.best is None or ranked[0].prompt != self.best.prompt or to_score):
            self.best = ranked[0]
            self.on_best(ranked)
        logger.debug(
            "step %d: reward mean %.2f max %.2f, train acc %.3f, %d distinct, best %r dev %.3f",
            self.num_timesteps, raw.mean(), raw.max(), accuracy.mean(), len({i["prompt"] for i in finished}),
            self.best.prompt, self.best.dev_accuracy or 0.0,
        )
        self.logger.record("prompts/best_dev_accuracy", float(self.best.dev_accuracy or 0.0))
        self.logger.record("prompts/best_train_reward", float(self.best.train_reward))
        return True
