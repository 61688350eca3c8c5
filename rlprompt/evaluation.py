"""Accuracy of prompts on a task split, for reports and model-to-model reuse."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from rlprompt.models import LoadedModel
from rlprompt.scoring import CalibratedScorer, Scorer, calibrated, calibration_splits
from rlprompt.tasks import Example, Task


@dataclass
class PromptScore:
    """Accuracy of one prompt on one split."""

    prompt: str
    accuracy: float
    per_class_accuracy: list[float]


def task_scorer(lm: LoadedModel, task: Task, calibration: str = "none", **options) -> Scorer | CalibratedScorer:
    """The scorer of ``task`` on ``lm``, calibrated on the task's train inputs if asked.

    Args:
        lm: The model to score with.
        task: Its template and verbalizers; its train split is the calibration set.
        calibration: ``none`` or ``train-mean`` (see :class:`rlprompt.scoring.CalibratedScorer`).
        **options: Passed to :class:`rlprompt.scoring.Scorer`.

    Raises:
        RLPromptError: On an unknown calibration, or a calibrated scorer for a task without train data.
    """
    task.require(*calibration_splits(calibration))
    scorer = Scorer(lm, task.template, task.verbalizers, **options)
    return calibrated(scorer, calibration, [example.text for example in task.train])


def score_prompts(scorer: Scorer | CalibratedScorer, prompts: Sequence[str], examples: Sequence[Example]) -> list[PromptScore]:
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
