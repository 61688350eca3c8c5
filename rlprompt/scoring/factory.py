"""The one factory of scorers: a target spec -> its backend's scorer, calibrated if asked."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from rlprompt.scoring.base import SCORER_BACKENDS, ClassScorer, calibration_splits, split_target_spec
from rlprompt.scoring.calibration import calibrated

if TYPE_CHECKING:
    from rlprompt.models import ModelPool
    from rlprompt.tasks import Task


def _resolve(target: str):
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def make_scorer(
    target: str, task: Task, calibration: str = "none", *, models: ModelPool, max_batch_tokens: int | None = None
) -> ClassScorer:
    """The scorer of ``task`` on the target ``target``, calibrated on the task's train inputs if asked.

    Args:
        target: A target spec; its backend is chosen by :func:`split_target_spec`.
        task: Its template and verbalizers; its train split is the calibration set.
        calibration: One of :data:`CALIBRATIONS`.
        models: Where local models are loaded (each spec once, on one device, in one dtype).
        max_batch_tokens: Memory bound of one forward pass (local backends).

    Raises:
        RLPromptError: On an unknown calibration, a calibration without train data, or a
            target the backend cannot use.
    """
    task.require(*calibration_splits(calibration))
    name, rest = split_target_spec(target)
    scorer = _resolve(SCORER_BACKENDS[name])(rest, task, models=models, max_batch_tokens=max_batch_tokens)
    return calibrated(scorer, calibration, [example.text for example in task.train])
