"""OPRO (Yang et al., 2023): the LM is shown the best instructions so far with their train
scores, and asked for a better one.

The untrained LM is the optimizer; its meta-prompt changes every batch. The instructions shown
are the best :data:`SHOWN` scored so far (by train accuracy), read from the reward cache, so a
resumed run shows what an unbroken one would. The user's instruction is scored first (one
evaluation), so the first batch has a score to improve on.
"""

from __future__ import annotations

from typing import Any

from rlprompt.meta_prompt import opro_meta_prompt
from rlprompt.search.text import TextSearch

SHOWN = 20
"""Scored instructions in the meta-prompt (the paper's 20)."""


class OPROSearch(TextSearch):
    """Each batch: ``num_prompts`` instructions sampled after the scored history, scored on train."""

    name = "opro"

    def history(self) -> list[tuple[str, float]]:
        """The best :data:`SHOWN` instructions scored so far and their train accuracy."""
        scored = [(text, metrics["accuracy"]) for text, (_, metrics) in self.context.reward.scored().items() if text]
        return sorted(scored, key=lambda item: item[1], reverse=True)[:SHOWN]

    def step(self) -> tuple[list[dict[str, Any]], dict[str, float | None]]:
        seed_instruction = self.parts.instruction
        if seed_instruction and seed_instruction not in self.context.reward:
            self.context.selector.add_candidate(self.score_one(seed_instruction))
        history = self.history()
        text = opro_meta_prompt(self.parts, history) if history else self.meta_prompt_text
        meta_prompt = self.writer.encode_meta_prompt(text)
        return self.score(self.writer.sample(meta_prompt, self.context.config.num_prompts, self.generator()))

    def score_one(self, text: str) -> dict[str, Any]:
        from rlprompt.envs.prompt_env import scored_info

        ids = self.writer.tokenizer(text, add_special_tokens=False).input_ids
        return scored_info(text, ids, self.context.reward([text]), 0)
