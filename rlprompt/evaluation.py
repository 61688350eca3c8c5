"""Accuracy of prompts on a task split, for reports and model-to-model reuse."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from rlprompt.scoring.base import ClassScorer
from rlprompt.tasks import Example


@dataclass
class PromptScore:
    """Accuracy of one prompt on one split."""

    prompt: str
    accuracy: float
    per_class_accuracy: list[float]


def score_prompts(scorer: ClassScorer, prompts: Sequence[str], examples: Sequence[Example]) -> list[PromptScore]:
    """Accuracy (overall and per gold class) of each prompt, through ``evaluate``."""
    from rlprompt.metrics import accuracy

    logits = scorer.class_logits(prompts, [example.text for example in examples])
    references = [example.label for example in examples]
    scores = []
    for prompt, prompt_logits in zip(prompts, logits):
        result = accuracy(prompt_logits.argmax(dim=-1).tolist(), references, scorer.num_classes)
        scores.append(PromptScore(prompt, result["accuracy"], result["per_class_accuracy"]))
    return scores


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table with aligned columns (percentages for floats in [0, 1])."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{100 * value:.1f}%"
        if value is None:
            return "-"
        return str(value)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in text)]) for i, h in enumerate(headers)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in text)])
