"""What a Ray worker keeps between the cells it runs: one harness object per spec, so a worker's
second cell reuses the models and test prefixes its first cell loaded.

The cache lives here, in an importable module, and not in the harness: ``python -m
experiments.fewshot`` runs the harness as ``__main__``, and cloudpickle ships a function of
``__main__`` *by value*, with a fresh copy of every global it reads, so a cache kept there is
empty in every task (each cell loaded the model and rebuilt the 1,821 test prefixes again: 193 s
against 61 s serially). A function of this module is pickled *by reference*: each worker
imports the module once, and its cache lives as long as the worker.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from typing import Any, Hashable

logger = logging.getLogger("experiments.worker_cache")

_HARNESSES: dict[str, Any] = {}
"""This process's harness objects, by factory and spec."""


def cached(factory: str, spec: dict) -> Any:
    """``factory(**spec)``, made once per process; ``factory`` is ``module:name``, imported by name
    (so the worker imports the harness module itself, never ``__main__``)."""
    key = json.dumps([factory, spec], default=str, sort_keys=True)
    if key in _HARNESSES:
        logger.info("worker %d: reusing the %s of an earlier cell (its models and test prefixes)", os.getpid(), factory)
        return _HARNESSES[key]
    module, _, name = factory.partition(":")
    harness = _HARNESSES[key] = getattr(importlib.import_module(module), name)(**spec)
    return harness


def run_cell(factory: str, method: str, spec: dict, key: Hashable, done: dict) -> Any:
    """One cell in a worker: ``cached(factory, spec).method(key, done)``; give it to
    :func:`experiments.sweep.run_cells` as ``functools.partial(run_cell, factory, method, spec)``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    return getattr(cached(factory, spec), method)(key, done)
