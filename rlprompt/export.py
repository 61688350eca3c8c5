"""Export the prompts of a run (or a prompt file) as JSON, JSONL, CSV or plain text."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from pathlib import Path

from rlprompt.artifact import PromptFile
from rlprompt.errors import RLPromptError

FORMATS = ("json", "jsonl", "csv", "txt")


def resolve_prompt_file(run_or_file: str) -> Path:
    """A run folder means its ``prompt.json``; anything else is taken as a prompt file."""
    path = Path(run_or_file)
    if path.is_dir():
        path = path / "prompt.json"
        if not path.is_file():
            raise RLPromptError(f"run folder '{run_or_file}' has no prompt.json (has the run finished a step?)")
    return path


def export_prompts(prompt_file: PromptFile, fmt: str, top_k: int | None = None) -> str:
    """The top-k prompts of ``prompt_file`` in format ``fmt``.

    ``json`` is a self-contained prompt file whose ``candidates`` are cut to the top k; the
    other formats list one prompt per line or row, best first, with their scores.
    """
    if fmt not in FORMATS:
        raise RLPromptError(f"unknown export format '{fmt}'; valid: {', '.join(FORMATS)}")
    if top_k is not None and top_k < 1:
        raise RLPromptError(f"--top-k must be >= 1, got {top_k}")
    candidates = prompt_file.candidates[:top_k] if top_k else prompt_file.candidates
    if fmt == "json":
        data = prompt_file.to_dict()
        data["candidates"] = [asdict(c) for c in candidates]
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    task = asdict(prompt_file.task)
    rows = [
        {"rank": rank, **asdict(candidate), "target_lm": prompt_file.target_lm}
        for rank, candidate in enumerate(candidates, start=1)
    ]
    if fmt == "txt":
        return "".join(f"{row['prompt']}\n" for row in rows)
    if fmt == "jsonl":
        return "".join(json.dumps({**row, "task": task}, ensure_ascii=False) + "\n" for row in rows)
    buffer = io.StringIO()
    columns = ["rank", "prompt", "train_reward", "train_accuracy", "dev_accuracy", "test_accuracy", "perplexity", "target_lm"]
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
