"""Classification rewards computed from the target LM's verbalizer logits."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from rlprompt.defaults import CORRECT_COEF, INCORRECT_COEF
from rlprompt.rewards.base import PromptReward, RewardBatch
from rlprompt.scoring.base import ClassScorer
from rlprompt.tasks import Example


def gap_rewards(
    logits: torch.Tensor, labels: torch.Tensor, correct_coef: float = CORRECT_COEF, incorrect_coef: float = INCORRECT_COEF
) -> tuple[torch.Tensor, torch.Tensor]:
    """RLPrompt's gap reward.

    For each example, ``gap = p(gold) - max p(other)`` with probabilities from a softmax over
    the verbalizer logits only. The example's reward is ``correct_coef * gap`` when the gold
    class wins (gap > 0) and ``incorrect_coef * gap`` otherwise; a prompt's reward is the mean
    over examples.

    Args:
        logits: Verbalizer logits, ``[P, E, C]``.
        labels: Gold classes, ``[E]``.
        correct_coef: Scale of the (positive) gap of a correct example.
        incorrect_coef: Scale of the (negative) gap of a wrong example.

    Returns:
        ``(rewards [P], accuracy [P])``.
    """
    probs = logits.float().softmax(dim=-1)
    gold_mask = torch.nn.functional.one_hot(labels, probs.shape[-1]).bool().expand_as(probs)
    gold = probs[gold_mask].view(probs.shape[:-1])
    other = probs.masked_fill(gold_mask, float("-inf")).amax(dim=-1)
    gap = gold - other
    correct = gap > 0
    per_example = torch.where(correct, correct_coef * gap, incorrect_coef * gap)
    return per_example.mean(dim=-1), correct.float().mean(dim=-1)


class _ClassificationReward(PromptReward):
    """Scores prompts on fixed labelled examples; every batch carries ``accuracy``."""

    metric_names = ("accuracy",)

    def __init__(self, scorer: ClassScorer, examples: Sequence[Example]) -> None:
        if not examples:
            raise ValueError("a reward needs at least one example")
        self.scorer = scorer
        self.sentences = [example.text for example in examples]
        self.labels = torch.tensor([example.label for example in examples])

    def _logits(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.scorer.class_logits(prompts, self.sentences)


class GapReward(_ClassificationReward):
    """The paper's gap reward over a fixed set of examples (see :func:`gap_rewards`)."""

    def __init__(
        self, scorer: ClassScorer, examples: Sequence[Example], correct_coef: float = CORRECT_COEF,
        incorrect_coef: float = INCORRECT_COEF,
    ) -> None:
        super().__init__(scorer, examples)
        self.correct_coef = correct_coef
        self.incorrect_coef = incorrect_coef

    def __call__(self, prompts: Sequence[str]) -> RewardBatch:
        rewards, accuracy = gap_rewards(self._logits(prompts), self.labels, self.correct_coef, self.incorrect_coef)
        return RewardBatch(rewards=rewards.numpy().astype(np.float64), metrics={"accuracy": accuracy.numpy().astype(np.float64)})


class AccuracyReward(_ClassificationReward):
    """Reward = accuracy in percent (a coarser signal than the gap reward)."""

    def __call__(self, prompts: Sequence[str]) -> RewardBatch:
        predictions = self._logits(prompts).argmax(dim=-1)
        accuracy = (predictions == self.labels).float().mean(dim=-1).numpy().astype(np.float64)
        return RewardBatch(rewards=100.0 * accuracy, metrics={"accuracy": accuracy})
