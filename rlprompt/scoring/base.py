"""The scorer seam: what every target-LM backend provides, and the one factory that picks one.

A backend turns (prompt, input) pairs into class logits. The in-process transformers scorer
(``local``) is one; :class:`rlprompt.scoring.fake.FakeScorer` (``fake``) is another, with no
model at all, for tests and docs. Rewards, dev selection, ``eval`` and ``transfer`` depend on
:class:`ClassScorer` only, and get their scorer from :func:`rlprompt.scoring.factory.make_scorer`.

Adding a backend is one module that defines ``NAME_backend(spec, task, *, models,
max_batch_tokens)`` plus one line in :data:`SCORER_BACKENDS`; a target spec ``NAME:REST`` then
reaches it. This module imports nothing heavy, so settings are checked before torch loads.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Sequence, runtime_checkable

from rlprompt.errors import RLPromptError

if TYPE_CHECKING:
    import torch


@runtime_checkable
class ClassScorer(Protocol):
    """Class logits of a frozen target LM for every (prompt, input) pair."""

    @property
    def num_classes(self) -> int: ...

    def class_logits(self, prompts: Sequence[str], inputs: Sequence[str]) -> torch.Tensor:
        """Float32 logits on the CPU, shape ``[len(prompts), len(inputs), num_classes]``."""
        ...


SCORER_BACKENDS: dict[str, str] = {
    "local": "rlprompt.scoring.local:local_backend",
    "fake": "rlprompt.scoring.fake:fake_backend",
    "openai": "rlprompt.scoring.openai:openai_backend",
}
"""Backend name -> ``module:function`` building it. A target spec ``NAME:REST`` (or just ``NAME``)
picks backend NAME; every other spec (an alias, a file, a folder, a hub id) is ``local``."""

CALIBRATIONS = ("none", "train-mean")
"""How class logits are calibrated: ``none``, or ``train-mean`` (see
:class:`rlprompt.scoring.calibration.CalibratedScorer`)."""


def calibration_splits(calibration: str) -> tuple[str, ...]:
    """The task splits ``calibration`` reads besides the one being scored.

    Raises:
        RLPromptError: On an unknown calibration.
    """
    if calibration not in CALIBRATIONS:
        raise RLPromptError(f"unknown calibration '{calibration}'; valid: {', '.join(CALIBRATIONS)}")
    return ("train",) if calibration == "train-mean" else ()


def split_target_spec(spec: str) -> tuple[str, str]:
    """``(backend name, what the backend is given)`` for a target spec."""
    name, separator, rest = spec.partition(":")
    if name in SCORER_BACKENDS and name != "local" and (separator or not rest):
        return name, rest
    return "local", spec


def file_name_safe(name: str) -> str:
    """``name`` with every run of characters other than letters, digits, ``_``, ``.`` and ``-``
    replaced by one ``_``: one rule for every folder name made from a task or a model."""
    return re.sub(r"[^\w.-]+", "_", name)


def target_label(spec: str) -> str:
    """A short, file-name-safe name for ``spec`` (run folders): a local model's file or folder name,
    else the backend and its model, without a server URL or settings (``openai_my-model``)."""
    backend, rest = split_target_spec(spec)
    if backend == "local":
        return Path(spec).name
    model = rest.split("@", 1)[0].split("?", 1)[0]
    return file_name_safe(f"{backend}_{model}" if model else backend)


def server_requests(scorer: ClassScorer) -> int | None:
    """Requests a served backend's scorer has made (looked up through wrappers such as calibration); None in-process."""
    while not hasattr(scorer, "requests") and hasattr(scorer, "scorer"):
        scorer = scorer.scorer
    return getattr(scorer, "requests", None)


def is_local(spec: str) -> bool:
    """Whether ``spec`` is a model loaded in this process (so it can also serve as a policy backbone)."""
    return split_target_spec(spec)[0] == "local"
