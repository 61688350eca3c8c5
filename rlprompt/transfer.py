"""Transfer matrix: every prompt scored on every model, as a table and a heatmap.

Each prompt is text, re-tokenized for each model's tokenizer, and scored with its own prompt
file's template and verbalizers (and calibration, on each model's own logits). The empty and
manual prompts come as reference rows; the cell of the model a prompt was learned on (its
diagonal) is marked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from rlprompt.artifact import PromptFile, write_json_atomic
from rlprompt.devices import check_device_name, check_dtype_name, release_device_memory
from rlprompt.errors import RLPromptError
from rlprompt.evaluation import score_prompts
from rlprompt.models import ModelPool
from rlprompt.scoring.base import calibration_splits
from rlprompt.scoring.factory import make_scorer


@dataclass
class TransferRow:
    """One prompt and its accuracy on each model."""

    label: str
    prompt: str
    source_lm: str | None
    """The model the prompt was learned on (``None`` for the reference rows)."""
    accuracy: dict[str, float] = field(default_factory=dict)


def transfer_matrix(
    prompt_files: Sequence[PromptFile],
    labels: Sequence[str],
    target_lms: Sequence[str],
    task_name: str | None = None,
    data: str | None = None,
    split: str = "test",
    dtype: str = "auto",
    device: str = "auto",
) -> list[TransferRow]:
    """Score every prompt file's prompt, plus the empty and manual prompts, on every model.

    Args:
        prompt_files: The learned prompts.
        labels: A short name per prompt file (e.g. its run name).
        target_lms: Model specs to score on.
        task_name: Task to load (default: the first prompt file's).
        data: Task data location.
        split: Split to score.
        dtype: Weight dtype of every model (see :mod:`rlprompt.devices`).
        device: Where the models run.
    """
    if not prompt_files:
        raise RLPromptError("transfer needs at least one prompt file")
    if not target_lms:
        raise RLPromptError("transfer needs at least one target model")
    check_dtype_name(dtype)
    check_device_name(device)
    reference = prompt_files[0].task
    calibrations = sorted({p.task.calibration for p in prompt_files})
    if len(calibrations) > 1:
        # The empty and manual rows are scored one way; mixed files would make them ambiguous.
        raise RLPromptError(f"the prompt files mix calibrations ({', '.join(calibrations)}); transfer each kind separately")
    tasks = [p.task.to_task(data, name=task_name or reference.name) for p in prompt_files]
    for task in tasks:
        task.require(split, *calibration_splits(reference.calibration))
    rows = [TransferRow("empty", "", None), TransferRow("manual", tasks[0].manual_prompt, None)]
    rows += [TransferRow(label, p.prompt, p.target_lm) for label, p in zip(labels, prompt_files)]
    for spec in target_lms:
        # One model on the device at a time: everything that references this model (its pool,
        # scorers and their prefix caches) lives in _score_on_one_model and is gone when it
        # returns, so it is freed before the next model loads.
        for row, accuracy in zip(rows, _score_on_one_model(spec, rows, tasks, reference.calibration, split, device, dtype)):
            row.accuracy[spec] = accuracy
        release_device_memory(device)
    return rows


def _score_on_one_model(
    spec: str, rows: Sequence[TransferRow], tasks: Sequence, calibration: str, split: str, device: str, dtype: str
) -> list[float]:
    """The accuracy of every row on model ``spec``: the reference rows, then each prompt file's row."""
    models = ModelPool(device, dtype)
    scorer = make_scorer(spec, tasks[0], calibration, models=models)
    accuracies = [score.accuracy for score in score_prompts(scorer, [row.prompt for row in rows[:2]], tasks[0].split(split))]
    for row, task in zip(rows[2:], tasks):
        task_scorer = make_scorer(spec, task, calibration, models=models)
        accuracies.append(score_prompts(task_scorer, [row.prompt], task.split(split))[0].accuracy)
    return accuracies


def markdown_table(rows: Sequence[TransferRow], target_lms: Sequence[str]) -> str:
    """Prompts down the side, models across; ``*`` marks the model a prompt was learned on."""
    lines = ["| prompt | text | " + " | ".join(target_lms) + " |", "|---|---|" + "---|" * len(target_lms)]
    for row in rows:
        cells = [f"{100 * row.accuracy[m]:.1f}%{'*' if m == row.source_lm else ''}" for m in target_lms]
        lines.append(f"| {row.label} | `{row.prompt!r}` | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("`*`: the model the prompt was learned on.")
    return "\n".join(lines) + "\n"


def heatmap(rows: Sequence[TransferRow], target_lms: Sequence[str], path: Path) -> None:
    """Accuracy heatmap (PNG); the learned-on cells are outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    values = np.array([[100 * row.accuracy[m] for m in target_lms] for row in rows])
    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(target_lms), 1.2 + 0.5 * len(rows)))
    image = ax.imshow(values, cmap="viridis", vmin=min(40.0, values.min()), vmax=100.0, aspect="auto")
    ax.set_xticks(range(len(target_lms)), target_lms)
    ax.set_yticks(range(len(rows)), [row.label for row in rows])
    for r, row in enumerate(rows):
        for c, model in enumerate(target_lms):
            ax.text(c, r, f"{values[r, c]:.1f}", ha="center", va="center", color="white" if values[r, c] < 75 else "black")
            if model == row.source_lm:
                ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
    ax.set_xlabel("scored on")
    ax.set_title("accuracy (%); red box: learned on this model")
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_transfer(rows: Sequence[TransferRow], target_lms: Sequence[str], out_dir: Path) -> dict[str, Path]:
    """Write ``transfer.md``, ``transfer.json`` and ``transfer.png`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / "transfer.md", "json": out_dir / "transfer.json", "heatmap": out_dir / "transfer.png"}
    paths["markdown"].write_text(markdown_table(rows, target_lms), encoding="utf-8")
    write_json_atomic(paths["json"], [row.__dict__ for row in rows])
    heatmap(rows, target_lms, paths["heatmap"])
    return paths
