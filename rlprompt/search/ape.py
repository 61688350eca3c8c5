"""APE (Zhou et al., 2023): sample instructions from the untrained LM and score every new one.

The baseline an RL-trained instruction writer must beat at equal evaluations: it is the same
writer, after the same meta-prompt, that never learns.
"""

from __future__ import annotations

from typing import Any

from rlprompt.search.text import TextSearch


class APESearch(TextSearch):
    """Each batch: ``num_prompts`` instructions sampled after the meta-prompt, scored on train."""

    name = "ape"

    def step(self) -> tuple[list[dict[str, Any]], dict[str, float | None]]:
        return self.score(self.writer.sample(self.meta_prompt_ids, self.context.config.num_prompts, self.generator()))
