"""Exporting a prompt file's candidates as JSON, JSONL, CSV and text; resolving run folders."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from rlprompt.artifact import Candidate, PromptFile, TaskSpec
from rlprompt.errors import RLPromptError
from rlprompt.export import FORMATS, export_prompts, resolve_prompt_file


@pytest.fixture
def prompt_file() -> PromptFile:
    """A prompt file with three ranked candidates."""
    candidates = [
        Candidate("Absolutely wonderful", [1, 2], 10.0, 0.75, 0.625, None),
        Candidate("Really, \"really\" bad", [3, 4], 8.5, 0.5, 0.5, 0.25),
        Candidate("Third one", [5], -1.0, 0.25, None, None),
    ]
    return PromptFile(
        prompt="Absolutely wonderful",
        token_ids=[1, 2],
        tokenizer="tiny",
        target_lm="tiny-llama",
        task=TaskSpec("demo", "{sentence} {prompt} {mask}", [" terrible", " great"], ["negative", "positive"], "It was"),
        accuracy={"train": 0.75, "dev": 0.625, "test": 0.5},
        budget={"steps": 2, "prompt_evaluations": 8, "seconds": 1.0},
        seed=0,
        versions={"rlprompt": "0.1.0"},
        created_at="2025-01-01T00:00:00+00:00",
        candidates=candidates,
    )


@pytest.mark.parametrize("top_k", [1, 2, 3, 10, None])
def test_json_loads_back_with_candidates_cut(prompt_file: PromptFile, top_k: int | None) -> None:
    text = export_prompts(prompt_file, "json", top_k)
    assert text.endswith("}\n")
    loaded = PromptFile.from_dict(json.loads(text))
    assert loaded == replace(prompt_file, candidates=prompt_file.candidates[:top_k])
    assert len(loaded.candidates) == min(top_k or 3, 3)


def test_json_export_does_not_modify_the_prompt_file(prompt_file: PromptFile) -> None:
    export_prompts(prompt_file, "json", 1)
    assert len(prompt_file.candidates) == 3


def test_txt(prompt_file: PromptFile) -> None:
    assert export_prompts(prompt_file, "txt") == 'Absolutely wonderful\nReally, "really" bad\nThird one\n'
    assert export_prompts(prompt_file, "txt", top_k=2) == 'Absolutely wonderful\nReally, "really" bad\n'


def test_csv_exact(prompt_file: PromptFile) -> None:
    text = export_prompts(prompt_file, "csv", top_k=2)
    assert text == (
        "rank,prompt,train_reward,train_accuracy,dev_accuracy,test_accuracy,perplexity,target_lm\n"
        "1,Absolutely wonderful,10.0,0.75,0.625,,,tiny-llama\n"
        '2,"Really, ""really"" bad",8.5,0.5,0.5,0.25,,tiny-llama\n'
    )


def test_csv_parses_back(prompt_file: PromptFile) -> None:
    rows = list(csv.DictReader(io.StringIO(export_prompts(prompt_file, "csv"))))
    assert len(rows) == 3
    assert [row["rank"] for row in rows] == ["1", "2", "3"]
    assert rows[1]["prompt"] == 'Really, "really" bad'
    assert rows[2]["dev_accuracy"] == ""


def test_jsonl(prompt_file: PromptFile) -> None:
    lines = export_prompts(prompt_file, "jsonl", top_k=2).splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first == {
        "rank": 1,
        "prompt": "Absolutely wonderful",
        "token_ids": [1, 2],
        "train_reward": 10.0,
        "train_accuracy": 0.75,
        "dev_accuracy": 0.625,
        "test_accuracy": None,
        "perplexity": None,
        "greedy": False,
        "target_lm": "tiny-llama",
        "task": asdict(prompt_file.task),
    }
    assert json.loads(lines[1])["rank"] == 2
    assert json.loads(lines[1])["prompt"] == 'Really, "really" bad'


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "txt"])
def test_no_candidates(prompt_file: PromptFile, fmt: str) -> None:
    empty = replace(prompt_file, candidates=[])
    expected = {"jsonl": "", "txt": "", "csv": "rank,prompt,train_reward,train_accuracy,dev_accuracy,test_accuracy,perplexity,target_lm\n"}
    assert export_prompts(empty, fmt) == expected[fmt]


def test_unknown_format(prompt_file: PromptFile) -> None:
    with pytest.raises(RLPromptError) as info:
        export_prompts(prompt_file, "xml")
    assert str(info.value) == "unknown export format 'xml'; valid: json, jsonl, csv, txt"
    assert FORMATS == ("json", "jsonl", "csv", "txt")


@pytest.mark.parametrize("top_k", [0, -3])
def test_top_k_below_one(prompt_file: PromptFile, top_k: int) -> None:
    with pytest.raises(RLPromptError) as info:
        export_prompts(prompt_file, "txt", top_k)
    assert str(info.value) == f"--top-k must be >= 1, got {top_k}"


def test_resolve_run_folder_with_prompt_json(tmp_path: Path, prompt_file: PromptFile) -> None:
    prompt_file.save(tmp_path / "prompt.json")
    assert resolve_prompt_file(str(tmp_path)) == tmp_path / "prompt.json"
    assert PromptFile.load(resolve_prompt_file(str(tmp_path))) == prompt_file


def test_resolve_run_folder_without_prompt_json(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(RLPromptError) as info:
        resolve_prompt_file(str(tmp_path))
    assert str(info.value) == f"run folder '{tmp_path}' has no prompt.json (has the run finished a step?)"


def test_resolve_file_is_taken_as_is(tmp_path: Path) -> None:
    assert resolve_prompt_file(str(tmp_path / "best.json")) == tmp_path / "best.json"
    assert resolve_prompt_file(str(tmp_path / "missing.json")) == tmp_path / "missing.json"
