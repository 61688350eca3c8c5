"""A scorer with no model behind it (``fake``): deterministic class logits from a rule.

For tests and docs, as DSPy ships its ``DummyLM``: a run against ``--target-lm fake`` exercises
rewards, selection, evaluation and artifacts without loading a target LM.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Callable, Sequence

import torch

if TYPE_CHECKING:
    from rlprompt.models import ModelPool
    from rlprompt.tasks import Task

Rule = Callable[[str, str], Sequence[float]]
"""(prompt, input) -> one logit per class."""


def hashed_logits(num_classes: int) -> Rule:
    """A rule giving each (prompt, input) pair fixed pseudo-random logits in [-1, 1)."""

    def rule(prompt: str, text: str) -> list[float]:
        digest = hashlib.sha256(f"{prompt}\x00{text}".encode()).digest()
        return [digest[c] / 128.0 - 1.0 for c in range(num_classes)]

    return rule


class FakeScorer:
    """Class logits from ``rule`` (default: :func:`hashed_logits`); records every call.

    Args:
        num_classes: Classes of the task.
        rule: Logits of one (prompt, input) pair.
    """

    def __init__(self, num_classes: int, rule: Rule | None = None) -> None:
        self._num_classes = num_classes
        self.rule = rule or hashed_logits(num_classes)
        self.calls: list[tuple[list[str], list[str]]] = []
        """``(prompts, inputs)`` of every call, in order."""

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def class_logits(self, prompts: Sequence[str], inputs: Sequence[str]) -> torch.Tensor:
        self.calls.append((list(prompts), list(inputs)))
        values = [[list(self.rule(p, x)) for x in inputs] for p in prompts]
        return torch.tensor(values, dtype=torch.float32).reshape(len(prompts), len(inputs), self.num_classes)


def fake_backend(spec: str, task: Task, *, models: ModelPool, max_batch_tokens: int | None = None) -> FakeScorer:
    """The registered ``fake`` backend (the spec after ``fake:`` is unused)."""
    return FakeScorer(task.num_classes)
