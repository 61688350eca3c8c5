"""OPRO (Yang et al., 2023): the LM is shown the best instructions so far with their train
scores, and asked for a better one.

The untrained LM is the optimizer; its meta-prompt changes every batch
(:meth:`~rlprompt.search.text.TextSearch.batch_meta_prompt`): the best :data:`SHOWN` instructions
scored so far (by train accuracy), worst to best, after the user's instruction is scored first.
"""

from __future__ import annotations

from rlprompt.search.text import TextSearch

SHOWN = 20
"""Scored instructions in the meta-prompt (the paper's 20)."""


class OPROSearch(TextSearch):
    """Each batch: ``num_prompts`` instructions sampled after the scored history, scored on train."""

    name = "opro"
    shown_history = SHOWN
