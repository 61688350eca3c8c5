"""An optional fluency term: prefer prompts a reference LM finds likely."""

from __future__ import annotations

from typing import Sequence

from rlprompt.perplexity import mean_log_likelihood
from rlprompt.rewards.base import PromptReward, RewardBatch


class FluencyReward(PromptReward):
    """Adds ``weight`` x the prompt's mean token log-likelihood under a reference LM.

    The log-likelihood is negative (about -3 for fluent text, -10 or lower for token salad),
    so a positive weight pulls the policy towards prompts that read as language.

    Args:
        reward: The task reward.
        model: The reference causal LM (by default the policy's backbone).
        tokenizer: Its tokenizer.
        weight: Scale of the term.
    """

    def __init__(self, reward: PromptReward, model, tokenizer, weight: float) -> None:
        self.reward = reward
        self.metric_names = getattr(reward, "metric_names", ())
        self.model = model
        self.tokenizer = tokenizer
        self.weight = weight

    def __call__(self, prompts: Sequence[str]) -> RewardBatch:
        batch = self.reward(prompts)
        fluency = mean_log_likelihood(self.model, self.tokenizer, prompts)
        return RewardBatch(rewards=batch.rewards + self.weight * fluency, metrics=batch.metrics)
