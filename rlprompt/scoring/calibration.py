"""Contextual calibration of any backend's class logits (``--calibration train-mean``)."""

from __future__ import annotations

from typing import Sequence

import torch

from rlprompt.errors import RLPromptError
from rlprompt.scoring.base import ClassScorer, calibration_splits


class CalibratedScorer:
    """A scorer whose class logits are calibrated per prompt on unlabelled reference inputs.

    Each prompt's verbalizer logits have their mean over the reference inputs (the task's train
    sentences, labels unused) subtracted, so a prompt is judged by how it orders the inputs,
    not by which label it pushes every input towards. Small LMs need this: with the empty
    SST-2 prompt, SmolLM2-135M and Gemma-3-270M both answer " great" for 98-99% of inputs, and
    an uncalibrated prompt's gain is then mostly a shift of that bias, which is the model's own
    and does not carry to another model. This is contextual calibration (Zhao et al., 2021)
    with the mean over real inputs in place of a content-free one.

    Args:
        scorer: The uncalibrated scorer.
        reference_sentences: Inputs the offsets are averaged over.
    """

    def __init__(self, scorer: ClassScorer, reference_sentences: Sequence[str]) -> None:
        if not reference_sentences:
            raise RLPromptError("calibration needs at least one reference input (the task's train split)")
        self.scorer = scorer
        self.reference = list(reference_sentences)
        self._offsets: dict[str, torch.Tensor] = {}

    @property
    def num_classes(self) -> int:
        return self.scorer.num_classes

    def offsets(self, prompts: Sequence[str]) -> torch.Tensor:
        """Mean class logits of each prompt over the reference inputs, ``[len(prompts), num_classes]``."""
        missing = [prompt for prompt in dict.fromkeys(prompts) if prompt not in self._offsets]
        if missing:
            self._offsets.update(zip(missing, self.scorer.class_logits(missing, self.reference).mean(dim=1)))
        if not prompts:
            return torch.zeros(0, self.num_classes)
        return torch.stack([self._offsets[prompt] for prompt in prompts])

    def class_logits(self, prompts: Sequence[str], sentences: Sequence[str]) -> torch.Tensor:
        """Calibrated verbalizer logits, shape ``[len(prompts), len(sentences), num_classes]``."""
        logits = self.scorer.class_logits(prompts, sentences)
        if list(sentences) == self.reference:
            # Scoring the reference set itself (the training reward): its mean is the offset.
            offsets = logits.mean(dim=1)
            self._offsets.update(zip(prompts, offsets))
        else:
            offsets = self.offsets(prompts)
        return logits - offsets[:, None, :]


def calibrated(scorer: ClassScorer, calibration: str, reference_sentences: Sequence[str]) -> ClassScorer:
    """``scorer`` with ``calibration`` (one of :data:`CALIBRATIONS`) applied.

    Raises:
        RLPromptError: On an unknown calibration, or ``train-mean`` without reference inputs.
    """
    if not calibration_splits(calibration):
        return scorer
    return CalibratedScorer(scorer, reference_sentences)
