"""APE (Zhou et al., 2023): sample instructions from the untrained LM and score every new one.

The baseline an RL-trained instruction writer must beat at equal evaluations: it is the same
writer, after the same meta-prompt, that never learns.
"""

from __future__ import annotations

from rlprompt.search.text import TextSearch


class APESearch(TextSearch):
    """Each batch: ``num_prompts`` instructions sampled after the meta-prompt, scored on train."""

    name = "ape"
