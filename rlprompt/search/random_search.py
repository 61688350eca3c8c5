"""Random search: the baseline RL must beat."""

from __future__ import annotations

import numpy as np

from rlprompt.search.base import SearchMethod


class RandomSearch(SearchMethod):
    """Every token drawn uniformly from the action vocabulary; prompts scored and chosen exactly
    as in RL (same env, reward, cache and selector)."""

    name = "random"

    def run(self, steps: int, progress_bar: bool) -> None:
        from tqdm.auto import tqdm

        context = self.context
        env, selector = context.env, context.selector
        # A resumed run is seeded by the batches already done too, so it does not redraw them.
        rng = np.random.default_rng([context.config.seed, selector.batches] if selector.batches else context.config.seed)
        env.reset()
        for _ in tqdm(range(steps), desc="random search", unit="step", disable=not progress_bar):
            for _ in range(env.prompt_length):
                _, _, _, infos = env.step(rng.integers(env.vocab.size, size=env.num_envs))
            selector.add(infos)
            if selector.budget_spent(context.config.max_evaluations):
                return
