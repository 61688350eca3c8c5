"""Experiment harnesses on a tiny model: the built-in demo data laid out as a 16-shot split."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from experiments import fewshot

DEMO = Path(__file__).resolve().parents[2] / "rlprompt" / "data" / "demo_sentiment"


@pytest.fixture
def demo_split_root(tmp_path, monkeypatch) -> Path:
    """``tmp_path/data`` with the demo data as ``sst-2/16-1``, and SST-2's setup in tiny-model words."""
    split = tmp_path / "data" / "sst-2" / "16-1"
    split.mkdir(parents=True)
    for name in ("train", "dev", "test"):
        shutil.copy(DEMO / f"{name}.tsv", split / f"{name}.tsv")
    # The tiny tokenizer has no single-token " negative"; the paper's label words stand in.
    setup = fewshot.TaskSetup("Review: {sentence} {prompt}\nSentiment: {mask}", (" terrible", " great"), ("paper", "instruction"))
    monkeypatch.setattr(fewshot, "TASKS", {"sst-2": setup})
    return tmp_path / "data"
