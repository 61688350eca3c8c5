"""Before/after curves of an RL setting change: runs side by side on one split.

Usage (from the repository root), after training the runs to compare, e.g.::

    python -m experiments.plot_tuning runs/tuning/lr2e-4 runs/tuning/lr5e-4 runs/tuning/lr1e-3 runs/tuning/random \\
        --out experiments/results/tuning_lr_sst2_seed42.png

Left: mean training reward of each batch of sampled prompts (RL runs; read from their
TensorBoard logs). Right: best-so-far dev accuracy against prompt evaluations (every run's
``history.json``), the curve the few-shot experiment compares at equal budget.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def scalar_series(run: Path, tag: str) -> list[float]:
    """Every value of a TensorBoard scalar in the run's logs, in order: each session of a resumed
    run writes its own folder (``PPO_1``, ``PPO_2``, ...), read in that order; [] if none has it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def session(folder: Path) -> tuple[str, int]:
        prefix, _, number = folder.name.rpartition("_")
        return (prefix, int(number)) if number.isdigit() else (folder.name, 0)

    folders = sorted({path.parent for path in (run / "tensorboard").rglob("events.out.tfevents.*")}, key=session)
    values: list[float] = []
    for folder in folders:
        events = EventAccumulator(str(folder))
        events.Reload()
        if tag in events.Tags().get("scalars", []):
            values += [event.value for event in events.Scalars(tag)]
    return values


def batch_reward_means(run: Path) -> list[float]:
    """``prompts/train_reward_mean`` per batch from the run's TensorBoard logs; [] if it has none."""
    return scalar_series(run, "prompts/train_reward_mean")


def plot(runs: list[Path], labels: list[str], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for run, label in zip(runs, labels):
        means = batch_reward_means(run)
        if means:
            left.plot(range(1, len(means) + 1), means, label=label)
        history = json.loads((run / "history.json").read_text())
        right.step([row["evaluations"] for row in history], [100 * row["best_dev_accuracy"] for row in history], where="post", label=label)
    left.set(title="mean training reward of each batch", xlabel="training step (16 prompts)", ylabel="gap reward")
    right.set(title="best-so-far dev accuracy", xlabel="prompt evaluations on train", ylabel="dev accuracy (%)")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.plot_tuning", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (each with history.json)")
    parser.add_argument("--labels", nargs="+", help="one per run (default: the folder names)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)
    labels = args.labels or [run.name for run in args.runs]
    if len(labels) != len(args.runs):
        parser.error(f"{len(labels)} labels for {len(args.runs)} runs; give one label per run")
    missing = [str(run) for run in args.runs if not (run / "history.json").is_file()]
    if missing:
        parser.error(f"no history.json in {', '.join(missing)}; train them first (rlprompt train ... --runs-dir runs/tuning)")
    print(plot(args.runs, labels, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
