"""Search methods: how prompts are proposed. One interface, one registry.

Every method runs on the same reward (with its cache and budget), the same selector and the
same artifacts (:class:`rlprompt.search.base.SearchMethod`). Adding one is a new module that
defines a ``SearchMethod`` subclass plus one line in :data:`SEARCH_METHODS`; the CLI's
``--algo`` choices and ``TrainConfig.check`` read the registry. Nothing here imports torch.
"""

from __future__ import annotations

import importlib

from rlprompt.errors import RLPromptError

SEARCH_METHODS: dict[str, str] = {
    "ppo": "rlprompt.search.sb3:PPOSearch",
    "a2c": "rlprompt.search.sb3:A2CSearch",
    "sql": "rlprompt.search.sql:SQLSearch",
    "random": "rlprompt.search.random_search:RandomSearch",
    "grpo": "rlprompt.search.grpo:GRPOSearch",
    "ape": "rlprompt.search.ape:APESearch",
    "opro": "rlprompt.search.opro:OPROSearch",
    "grpo-opro": "rlprompt.search.grpo:GRPOHistorySearch",
}
"""``--algo`` name -> ``module:class`` of its :class:`~rlprompt.search.base.SearchMethod`."""
TEXT_METHODS = frozenset({"grpo", "ape", "opro", "grpo-opro"})
"""The methods whose policy writes whole instructions with a causal LM
(:class:`~rlprompt.search.text.TextSearch`); the others write prompts token by token."""


def check_search_method(name: str) -> None:
    """Raise unless ``name`` is a registered search method."""
    if name not in SEARCH_METHODS:
        raise RLPromptError(f"unknown algo '{name}'; valid: {', '.join(SEARCH_METHODS)}")


def search_method(name: str) -> type:
    """The :class:`~rlprompt.search.base.SearchMethod` subclass registered as ``name``."""
    check_search_method(name)
    module, _, cls = SEARCH_METHODS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
