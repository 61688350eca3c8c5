"""Random search: the baseline RL must beat."""

from __future__ import annotations

import numpy as np

from rlprompt.search.base import SearchMethod


class RandomSearch(SearchMethod):
    """Every token drawn uniformly from the action vocabulary; prompts scored and chosen exactly
    as in RL (same env, reward, cache and selector). With variable length each prompt's length is
    drawn uniformly from ``min_length``..``prompt_length`` first, so short prompts (the empty one
    among them) are drawn as often as long ones."""

    name = "random"

    def run(self, steps: int, progress_bar: bool) -> None:
        from tqdm.auto import tqdm

        context = self.context
        env, selector = context.env, context.selector
        # A resumed run is seeded by the batches already done too, so it does not redraw them.
        rng = np.random.default_rng([context.config.seed, selector.batches] if selector.batches else context.config.seed)
        env.reset()
        rule = env.length_rule
        for _ in tqdm(range(steps), desc="random search", unit="step", disable=not progress_bar):
            if rule is None:
                lengths = np.full(env.num_envs, env.prompt_length)
            else:
                lengths = rng.integers(rule.min_length, env.prompt_length + 1, size=env.num_envs)
            for position in range(env.prompt_length):
                tokens = rng.integers(env.vocab.size if rule is None else env.vocab.size - 1, size=env.num_envs)
                if rule is not None:
                    # Tokens are drawn from the other actions (skipping the end action's index).
                    tokens = np.where(position < lengths, tokens + (tokens >= rule.end_action), rule.end_action)
                _, _, _, infos = env.step(tokens)
            selector.add(infos)
            if selector.should_stop(context.config.max_evaluations, context.config.patience):
                return
