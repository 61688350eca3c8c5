"""Classification metrics through Hugging Face ``evaluate``, offline.

The metric is an :class:`evaluate.Metric` defined here and instantiated in memory, so
computing it never fetches a metric script from the hub.
"""

from __future__ import annotations

from typing import Sequence

import datasets
import evaluate
import numpy as np


class PromptAccuracy(evaluate.Metric):
    """Accuracy overall and per class (recall of each gold class)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Accuracy overall and per gold class.",
            citation="",
            inputs_description="predictions and references: class indices",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, num_classes: int) -> dict:
        predictions = np.asarray(predictions)
        references = np.asarray(references)
        per_class = []
        for label in range(num_classes):
            gold = references == label
            per_class.append(float((predictions[gold] == label).mean()) if gold.any() else float("nan"))
        return {"accuracy": float((predictions == references).mean()), "per_class_accuracy": per_class}


_METRIC: PromptAccuracy | None = None


def accuracy(predictions: Sequence[int], references: Sequence[int], num_classes: int) -> dict:
    """``{"accuracy": float, "per_class_accuracy": [float per class]}``."""
    global _METRIC
    if _METRIC is None:
        _METRIC = PromptAccuracy(keep_in_memory=True)
    return _METRIC.compute(predictions=list(predictions), references=list(references), num_classes=num_classes)
