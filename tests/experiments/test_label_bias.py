"""The label-bias report: AUC is exact, and rows agree with the scorer."""

from __future__ import annotations

import pytest
import torch

from experiments.label_bias import auc, bias_rows
from rlprompt.models import load_model
from rlprompt.scoring import Scorer
from rlprompt.tasks import load_task


def test_auc_counts_ordered_pairs_and_half_ties() -> None:
    labels = torch.tensor([1, 1, 0, 0])
    assert auc(torch.tensor([0.9, 0.8, 0.1, 0.2]), labels) == 1.0
    assert auc(torch.tensor([0.1, 0.2, 0.9, 0.8]), labels) == 0.0
    # Pairs (pos, neg): 0.5>0.1 yes, 0.5 vs 0.5 tie, 0.3>0.1 yes, 0.3<0.5 no: (2 + 0.5) / 4.
    assert auc(torch.tensor([0.5, 0.3, 0.1, 0.5]), labels) == 0.625
    with pytest.raises(ValueError, match="both classes"):
        auc(torch.tensor([0.1, 0.2]), torch.tensor([1, 1]))


def test_rows_report_the_scorers_accuracy_and_positive_rate(tiny_llama_dir) -> None:
    task = load_task("demo")
    sentences = [example.text for example in task.dev]
    labels = torch.tensor([example.label for example in task.dev])
    row = bias_rows(str(tiny_llama_dir), ["It was"], sentences, labels, task)[0]
    logits = Scorer(load_model(str(tiny_llama_dir)), task.template, task.verbalizers).class_logits(["It was"], sentences)[0]
    predicted = logits.argmax(dim=-1)
    accuracy = float((predicted == labels).float().mean())
    gap = logits[:, 1] - logits[:, 0]
    assert row == (
        f"| {tiny_llama_dir} | `'It was'` | {100 * accuracy:.1f} | {float(predicted.float().mean()):.2f} | {auc(gap, labels):.3f} |"
    )
