"""Class scores of a frozen target LM for (prompt x input) pairs, through one seam.

- :mod:`~rlprompt.scoring.base`: the :class:`ClassScorer` protocol and the backend registry (no
  torch import: settings are checked with it before anything loads);
- :mod:`~rlprompt.scoring.factory`: :func:`make_scorer`, a target spec -> its backend's scorer;
- :mod:`~rlprompt.scoring.local`: the in-process transformers backend, :class:`Scorer`;
- :mod:`~rlprompt.scoring.fake`: :class:`FakeScorer`, no model, for tests and docs;
- :mod:`~rlprompt.scoring.calibration`: contextual calibration of any backend;
- :mod:`~rlprompt.scoring.encoding`, :mod:`~rlprompt.scoring.prefix_cache`: the local backend's parts.

The heavy names are imported on first use, so ``from rlprompt.scoring import Scorer`` works
and ``import rlprompt.scoring`` alone does not load torch.
"""

from __future__ import annotations

import importlib

from rlprompt.scoring.base import CALIBRATIONS, SCORER_BACKENDS, ClassScorer, calibration_splits

_LAZY = {
    "Scorer": "rlprompt.scoring.local",
    "TemplateEncoder": "rlprompt.scoring.encoding",
    "EncodedPair": "rlprompt.scoring.encoding",
    "verbalizer_token_ids": "rlprompt.scoring.encoding",
    "CalibratedScorer": "rlprompt.scoring.calibration",
    "calibrated": "rlprompt.scoring.calibration",
    "FakeScorer": "rlprompt.scoring.fake",
    "make_scorer": "rlprompt.scoring.factory",
}

__all__ = ["CALIBRATIONS", "SCORER_BACKENDS", "ClassScorer", "calibration_splits", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rlprompt.scoring' has no attribute '{name}'")
