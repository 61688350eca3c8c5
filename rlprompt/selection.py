"""Choosing the final prompt while prompts are being found: one rule for every search method.

RL and random search (and any later method) feed the same :class:`PromptSelector`, so their
comparison is about how prompts are proposed, not how one is chosen.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any, Callable, Sequence

from rlprompt.artifact import Candidate
from rlprompt.defaults import SELECTION_METRIC

logger = logging.getLogger(__name__)


class PromptSelector:
    """Keeps the top-k distinct prompts by training reward and the best of them on dev.

    Every finished prompt (an env ``info`` with a ``"prompt"`` key) is a candidate. When a new
    prompt enters the top-k it is scored on dev (once per prompt); the best prompt so far by
    the dev value of ``metric`` (ties: training reward) is kept even after it leaves the top-k,
    and is handed to ``on_best`` with the other candidates whenever it changes, so a run
    stopped at any moment leaves its best prompt.

    Args:
        top_k: How many distinct prompts to keep.
        dev_score: Scores a list of prompt texts on dev: the value of ``metric`` for each.
        on_best: Called with the ranked candidates whenever the best one changes.
        evaluations: Returns how many distinct prompts the training reward has scored so far
            (the target-LM budget spent), recorded in ``history``.
        metric: The reward metric selection ranks on (its train value comes from each info's
            ``metrics``); the candidates' ``train_accuracy``/``dev_accuracy`` hold it.
        on_batch: Called after every finished batch (checkpoints for ``--resume``).
    """

    def __init__(
        self,
        top_k: int,
        dev_score: Callable[[list[str]], list[float]],
        on_best: Callable[[list[Candidate]], None],
        evaluations: Callable[[], int] = lambda: 0,
        metric: str = SELECTION_METRIC,
        on_batch: Callable[[], None] = lambda: None,
    ) -> None:
        self.top_k = top_k
        self.dev_score = dev_score
        self.on_best = on_best
        self.evaluations = evaluations
        self.metric = metric
        self.on_batch = on_batch
        self.candidates: dict[str, Candidate] = {}
        self.prompts_sampled = 0
        self.batches = 0
        self.best: Candidate | None = None
        self.history: list[dict[str, float]] = []
        """One row per batch: prompts sampled, evaluations, best dev value and its train reward,
        and the seconds since the selector was made (so step times and curves over wall time)."""
        self._started = time.monotonic()
        self._seconds_before = 0.0
        self._dev_scores: dict[str, float] = {}

    @staticmethod
    def _merit(candidate: Candidate) -> tuple[float, float]:
        return (candidate.dev_accuracy if candidate.dev_accuracy is not None else -1.0, candidate.train_reward)

    def ranked(self) -> list[Candidate]:
        """The best prompt so far first, then the kept candidates by dev value and training reward."""
        others = sorted((c for c in self.candidates.values() if c is not self.best), key=self._merit, reverse=True)
        return ([self.best] if self.best else []) + others

    def should_stop(self, max_evaluations: int | None, patience: int | None = None) -> bool:
        """Whether the search is over: the training reward has scored ``max_evaluations``
        distinct prompts, or the last ``patience`` batches scored none (None: no such limit)."""
        if max_evaluations is not None and self.evaluations() >= max_evaluations:
            return True
        if patience is None or len(self.history) <= patience:
            return False
        return self.history[-1]["evaluations"] == self.history[-1 - patience]["evaluations"]

    @property
    def seconds(self) -> float:
        """Seconds of search so far, across resumed runs."""
        return self._seconds_before + time.monotonic() - self._started

    def add(self, infos: Sequence[dict[str, Any]], stats: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Take one batch of env infos; returns the finished prompts' infos (empty if none).
        ``stats``: the method's own numbers for this batch, recorded in its ``history`` row."""
        finished = [info for info in infos if "prompt" in info]
        if not finished:
            return finished
        self.prompts_sampled += len(finished)
        self.batches += 1
        for info in finished:
            if info["prompt"] not in self.candidates:
                self.candidates[info["prompt"]] = self._candidate(info)
        # Keep only the top-k by training reward; only those are worth a dev evaluation.
        kept = sorted(self.candidates.values(), key=lambda c: c.train_reward, reverse=True)[: self.top_k]
        self.candidates = {c.prompt: c for c in kept}
        self._score_on_dev([c for c in kept if c.dev_accuracy is None])
        self._challenge(max(kept, key=self._merit))
        self.history.append({"batch": self.batches, "prompts_sampled": self.prompts_sampled, **self._progress(), "seconds": round(self.seconds, 3), **(stats or {})})
        self.on_batch()
        return finished

    def add_greedy(self, info: dict[str, Any]) -> Candidate:
        """Take the policy's greedy prompt (an env ``info`` of a finished prompt): it is scored on
        dev and enters the candidates whatever its training reward, and the last ``history`` row
        records it."""
        candidate = self.add_candidate(info)
        candidate.greedy = True
        if self.history:
            self.history[-1].update(
                greedy_prompt=candidate.prompt,
                greedy_train_reward=float(candidate.train_reward),
                greedy_dev_accuracy=float(candidate.dev_accuracy or 0.0),
                **self._progress(),
            )
        return candidate

    def add_candidate(self, info: dict[str, Any]) -> Candidate:
        """Take one prompt (an env ``info`` of a finished prompt) outside a batch, e.g. the empty
        prompt before a variable-length search: it is scored on dev and enters the candidates
        whatever its training reward, so the result is never worse on dev than it."""
        prompt = info["prompt"]
        best = self.best if self.best is not None and self.best.prompt == prompt else None
        candidate = self.candidates.get(prompt) or best or self._candidate(info)
        self.candidates[prompt] = candidate
        self._score_on_dev([candidate] if candidate.dev_accuracy is None else [])
        self._challenge(candidate)
        return candidate

    def _progress(self) -> dict[str, float]:
        """The budget spent and the best prompt's values, for a ``history`` row."""
        assert self.best is not None
        return {
            "evaluations": self.evaluations(),
            "best_dev_accuracy": float(self.best.dev_accuracy or 0.0),
            "best_train_reward": float(self.best.train_reward),
        }

    def _candidate(self, info: dict[str, Any]) -> Candidate:
        return Candidate(
            prompt=info["prompt"],
            token_ids=[int(t) for t in info["token_ids"]],
            train_reward=info["raw_reward"],
            train_accuracy=info["metrics"][self.metric],
            dev_accuracy=self._dev_scores.get(info["prompt"]),
        )

    def _score_on_dev(self, candidates: list[Candidate]) -> None:
        if candidates:
            for candidate, dev in zip(candidates, self.dev_score([c.prompt for c in candidates])):
                candidate.dev_accuracy = self._dev_scores[candidate.prompt] = float(dev)

    def _challenge(self, challenger: Candidate) -> None:
        """Make ``challenger`` the best prompt if it beats the best so far on dev (ties: training
        reward). The best prompt is never evicted: a later, higher-reward batch must beat it on dev."""
        if self.best is None or self._merit(challenger) > self._merit(self.best):
            self.best = challenger
            logger.info(
                "step %d: new best %r%s, dev %s %.1f%%, train reward %.1f",
                self.batches, challenger.prompt, " (greedy)" if challenger.greedy else "", self.metric,
                100 * (challenger.dev_accuracy or 0.0), challenger.train_reward,
            )
            self.on_best(self.ranked())

    def state(self) -> dict[str, Any]:
        """Everything :meth:`load_state` needs to go on where this selector is, as JSON-ready data."""
        return {
            "candidates": [asdict(c) for c in self.candidates.values()],
            "best": asdict(self.best) if self.best else None,
            "prompts_sampled": self.prompts_sampled,
            "batches": self.batches,
            "history": self.history,
            "dev_scores": self._dev_scores,
            "seconds": self.seconds,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Go on from :meth:`state`: no prompt already scored on dev is scored again."""
        self.candidates = {c["prompt"]: Candidate(**c) for c in state["candidates"]}
        best = state["best"]
        self.best = (self.candidates.get(best["prompt"]) or Candidate(**best)) if best else None
        self.prompts_sampled, self.batches = int(state["prompts_sampled"]), int(state["batches"])
        self.history = list(state["history"])
        self._dev_scores = {p: float(v) for p, v in state["dev_scores"].items()}
        self._seconds_before, self._started = float(state["seconds"]), time.monotonic()
