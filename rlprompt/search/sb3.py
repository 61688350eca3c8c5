"""RL search methods on stable-baselines3: PPO and A2C with RLPrompt's LM-adapter policy."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from rlprompt.policies.lm_adapter import LMAdapterPolicy
from rlprompt.search.base import PolicySearchMethod, SearchContext, record_batch, start_token
from rlprompt.selection import PromptSelector

logger = logging.getLogger(__name__)


class TopKPromptCallback(BaseCallback):
    """Feeds every finished batch of a stable-baselines3 run to a ``PromptSelector``.

    Also logs the batch's reward and metric statistics to TensorBoard and stops training once
    the training reward has scored ``max_evaluations`` distinct prompts (the target-LM budget)
    or ``patience`` batches in a row have scored none.

    Args:
        selector: Chooses the final prompt.
        max_evaluations: Stop after this many distinct prompt evaluations; None: no limit.
        patience: Stop after this many batches in a row without a new prompt; None: no limit.
    """

    def __init__(self, selector: PromptSelector, max_evaluations: int | None = None, patience: int | None = None) -> None:
        super().__init__()
        self.selector = selector
        self.max_evaluations = max_evaluations
        self.patience = patience

    def _on_step(self) -> bool:
        finished = self.selector.add(self.locals["infos"])
        if not finished:
            return True
        record_batch(self.logger, self.selector, finished)
        logger.debug("step %d: %d prompts finished", self.selector.batches, len(finished))
        return not self.selector.should_stop(self.max_evaluations, self.patience)


class SB3Search(PolicySearchMethod):
    """An on-policy stable-baselines3 algorithm over the batched env, one rollout per batch."""

    algorithm_class: ClassVar[type[BaseAlgorithm]]
    # 2e-4 barely moves the policy within a few hundred prompt evaluations; 1e-3 collapses it
    # onto one prompt (the learning-rate study, experiments/README.md).
    default_learning_rate = 5e-4

    def __init__(self, context: SearchContext) -> None:
        super().__init__(context)
        config, backbone = context.config, context.backbone
        policy_kwargs = dict(
            backbone=backbone.model,
            action_token_ids=context.vocab.token_ids,
            start_token_id=start_token(backbone.tokenizer),
            adapter_hidden=config.adapter_hidden,
            sample_top_k=self.sample_top_k,
            length_rule=context.env.length_rule,
        )
        torch.manual_seed(config.seed)
        self.algorithm = self.algorithm_class(
            policy=LMAdapterPolicy,
            env=context.env,
            learning_rate=self.learning_rate,
            n_steps=config.prompt_length,
            gamma=1.0,
            ent_coef=config.ent_coef,
            policy_kwargs=policy_kwargs,
            seed=config.seed,
            device=context.device,
            tensorboard_log=str(context.out_dir / "tensorboard"),
            verbose=0,
            **self.algorithm_kwargs(),
        )

    def algorithm_kwargs(self) -> dict:
        """What this algorithm takes beyond the common settings."""
        return {}

    def run(self, steps: int, progress_bar: bool) -> None:
        config = self.context.config
        if self.context.selector.batches:  # resumed: fresh samples, not a replay of the first run
            self.algorithm.set_random_seed(config.seed + self.context.selector.batches)
        self.algorithm.learn(
            total_timesteps=steps * config.num_prompts * config.prompt_length,
            callback=TopKPromptCallback(self.context.selector, config.max_evaluations, config.patience),
            progress_bar=progress_bar,
        )

    def greedy_action(self, observation: np.ndarray) -> int:
        action, _ = self.algorithm.policy.predict(observation[None], deterministic=True)
        return int(action[0])

    def write_policy(self, path: Path) -> None:
        """The adapter and value head (never the frozen LM), as safetensors."""
        self.algorithm.policy.save_trainable(str(path))

    def read_policy(self, path: Path) -> None:
        self.algorithm.policy.load_trainable(str(path))

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.algorithm.policy.optimizer


class PPOSearch(SB3Search):
    """PPO (the default), several epochs over each batch of prompts."""

    name = "ppo"
    algorithm_class = PPO

    def algorithm_kwargs(self) -> dict:
        config = self.context.config
        return dict(batch_size=config.num_prompts * config.prompt_length, n_epochs=config.n_epochs, gae_lambda=0.95)


class A2CSearch(SB3Search):
    """A2C, one update per batch."""

    name = "a2c"
    algorithm_class = A2C

    def algorithm_kwargs(self) -> dict:
        return dict(gae_lambda=1.0)
