"""Does RL earn its cost? PPO, soft Q-learning and random search at growing budgets.

Run from the repository root (needs the 16-shot splits at ``../shared/data/16-shot``)::

    python -m experiments.budget                       # every cell, smallest budget first; resumes
    python -m experiments.budget --budgets 320 1280    # stop at 1,280 for now
    python -m experiments.budget --report-only         # redraw the table and plot from the CSV

A *cell* is (setting, split seed, method); a setting is a task in a template:

- ``sst-2/paper``: SST-2 in the paper's template, 5-token prompts;
- ``sst-2/instruction``: SST-2 inside the instruction template, variable length (0-5 tokens:
  ``--min-length 0``, so "add nothing", the instruction alone, is in the search space);
- ``agnews/paper``: AG News in the paper's template.

Each cell is **one run** that goes to the largest budget in stages: it trains until the target LM
has scored ``budget`` distinct prompts on train (or a step cap of 3 x budget / 16, for a policy
that only repeats itself), its best-on-dev prompt at that point is scored on test and appended to
``budget.csv`` with the stage's wall time, and the next budget *resumes the same run* (policy,
reward cache, candidates) rather than starting over. Every cell gets its smallest budget before
any cell gets the next, so an interrupted study has whole rows at the small budgets; a re-run
skips what is in the CSV. ``budget.md`` (method x budget x setting, mean (std) over the seeds)
and ``budget.png`` (test accuracy against evaluations, log axis) are regenerated from the CSV.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from experiments.fewshot import RESULTS, TASKS, TEST_STRIDE, Experiment, _mean_std
from experiments.sweep import DEFAULT_RESOURCES, Resources, add_ray_arguments, run_cells
from rlprompt.config import TrainConfig
from rlprompt.train import STATE_FILE, run_dir, train

logger = logging.getLogger("experiments.budget")

BUDGETS = (320, 1280, 5120)
SEEDS = (13, 21, 42)
METHODS = ("ppo", "sql", "random")
SETTINGS = ("sst-2/paper", "sst-2/instruction", "agnews/paper")
VARIABLE_LENGTH = {"instruction": 0}
"""``--min-length`` of a template's runs (absent: fixed 5-token prompts, the paper's)."""
STEP_CAP = 3
"""A stage may take this many times the steps its budget needs: a policy that samples only
prompts it has seen spends no budget, so steps, not evaluations, end it."""
INSTRUCTION_ALONE = {"sst-2/instruction": 0.809}
"""The instruction template with no prompt, test accuracy (experiments/results/fewshot.md)."""


@dataclass
class StageResult:
    """One row of ``budget.csv``: a cell's best-on-dev prompt once a budget was reached."""

    setting: str
    seed: int
    method: str
    budget: int
    evaluations: int
    """Distinct prompts scored on train when the stage ended (below the budget: the step cap)."""
    prompts_sampled: int
    steps: int
    prompt: str
    train_accuracy: float
    dev_accuracy: float
    test_accuracy: float
    greedy: bool
    """The prompt was one of the policy's greedy prompts."""
    seconds: float
    """Wall time of this stage (the run from the previous budget to this one, and the test score)."""

    @property
    def key(self) -> tuple[str, int, str, int]:
        return (self.setting, self.seed, self.method, self.budget)


class BudgetStudy:
    """The cells, their staged runs and the CSV.

    Args:
        data_root: Folder of the 16-shot splits.
        work_dir: Run folders and the test-score cache.
        results: Where ``budget.csv``, ``budget.md`` and ``budget.png`` go.
        target: The target LM (the policy backbone too).
        num_prompts: Prompts per batch.
    """

    def __init__(self, data_root: Path, work_dir: Path, results: Path, target: str = "smollm2-135m", num_prompts: int = 16) -> None:
        # The few-shot harness loads the splits and caches test scores; this study reuses both.
        self.harness = Experiment(data_root, work_dir, results, budget=0, num_prompts=num_prompts, name="budget")
        self.work_dir, self.results, self.target, self.num_prompts = work_dir, results, target, num_prompts
        self.csv_path = results / "budget.csv"

    def finished(self) -> dict[tuple, StageResult]:
        if not self.csv_path.exists():
            return {}
        with self.csv_path.open(newline="") as handle:
            rows = [_parse(row) for row in csv.DictReader(handle)]
        return {row.key: row for row in rows}

    def run(
        self, settings: list[str], seeds: list[int], methods: list[str], budgets: list[int],
        ray_address: str | None = None, resources: Resources = DEFAULT_RESOURCES,
    ) -> list[StageResult]:
        """Every (cell, budget) not in the CSV, each budget for every cell before the next budget;
        returns those run. With ``ray_address`` the stages are Ray tasks (a stage waits for its
        cell's previous one; see :mod:`experiments.sweep`)."""
        budgets = sorted(budgets)
        stages = [(setting, seed, method, budget) for budget in budgets for setting in settings for seed in seeds for method in methods]
        previous = {budget: budgets[i - 1] for i, budget in enumerate(budgets) if i}
        out: list[StageResult] = []

        def needs(key: tuple) -> list[tuple]:
            setting, seed, method, budget = key
            return [(setting, seed, method, previous[budget])] if budget in previous else []

        def record(key: tuple, result: StageResult) -> None:
            with self.csv_path.open("a", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=[f.name for f in fields(StageResult)])
                if handle.tell() == 0:
                    writer.writeheader()
                writer.writerow(asdict(result))
            out.append(result)
            # The table and plot after every stage: a study stopped at any point has them up to date.
            self.write_report()

        run_one = self.run_stage if ray_address is None else functools.partial(_stage_in_worker, self.spec())
        run_cells(stages, run_one, record, needs=needs, done=self.finished(), ray_address=ray_address, resources=resources)
        return out

    def write_report(self) -> Path:
        """``budget.png`` and ``budget.md`` from the CSV as it stands; returns the table's path."""
        results = self.finished()
        plot(results, self.results)
        return report(results, self.results)

    def spec(self) -> dict:
        """What a Ray worker needs to make the same study."""
        return dict(data_root=self.harness.data_root, work_dir=self.work_dir, results=self.results, target=self.target, num_prompts=self.num_prompts)

    def config(self, setting: str, seed: int, method: str, budget: int) -> TrainConfig:
        task_name, template = setting.split("/")
        task = self.harness.task(task_name, seed, template)
        return TrainConfig(
            task=task_name,
            data=str(self.harness.data_root / task_name / f"16-{seed}"),
            template=task.template.text,
            verbalizers=list(task.verbalizers),
            manual_prompt=task.manual_prompt,
            target_lm=self.target,
            algo=method,
            min_length=VARIABLE_LENGTH.get(template),
            num_prompts=self.num_prompts,
            steps=STEP_CAP * math.ceil(budget / self.num_prompts),
            max_evaluations=budget,
            seed=seed,
            run_name=f"{task_name}-{template}-{seed}-{method}",
            runs_dir=str(self.work_dir),
            evaluate_test=False,
        )

    def run_stage(self, key: tuple[str, int, str, int], finished: dict | None = None) -> StageResult:
        """Train the cell's run up to the key's budget of evaluations (resuming it when it has a
        checkpoint) and score its best-on-dev prompt on test."""
        setting, seed, method, budget = key
        started = time.monotonic()
        config = self.config(setting, seed, method, budget)
        resume = (run_dir(config) / STATE_FILE).is_file()
        logger.info("%s/%d/%s: %s to %d evaluations", setting, seed, method, "resuming" if resume else "starting", budget)
        best = train(config, progress_bar=sys.stderr.isatty(), resume=resume).prompt_file
        task_name, template = setting.split("/")
        task = self.harness.task(task_name, seed, template)
        test = sorted(task.test[:: TEST_STRIDE.get(task_name, 1)], key=lambda example: len(example.text))
        test_accuracy = self.harness.test_accuracy(self.target, task, test, best.prompt)
        result = StageResult(
            setting, seed, method, budget,
            int(best.budget["prompt_evaluations"]), int(best.budget["prompts_sampled"]), int(best.budget["steps"]),
            best.prompt, float(best.accuracy["train"]), float(best.accuracy["dev"]), test_accuracy,
            any(c.greedy and c.prompt == best.prompt for c in best.candidates),
            round(time.monotonic() - started, 1),
        )
        logger.info(
            "%s/%d/%s at %d: %r dev %.1f%% test %.1f%% (%d evaluations, %.0f s)", setting, seed, method, budget,
            result.prompt, 100 * result.dev_accuracy, 100 * result.test_accuracy, result.evaluations, result.seconds,
        )
        return result


_WORKER_STUDIES: dict[str, BudgetStudy] = {}
"""A Ray worker's studies, kept between stages so the test prefixes are reused."""


def _stage_in_worker(spec: dict, key: tuple, finished: dict) -> StageResult:
    """One stage in a Ray worker (a top-level function, so it pickles)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    name = json.dumps(spec, default=str, sort_keys=True)
    if name not in _WORKER_STUDIES:
        _WORKER_STUDIES[name] = BudgetStudy(**spec)
    return _WORKER_STUDIES[name].run_stage(key, finished)


def _parse(row: dict[str, str]) -> StageResult:
    values: dict[str, object] = {}
    for item in fields(StageResult):
        raw = row[item.name]
        if item.name in ("seed", "budget", "evaluations", "prompts_sampled", "steps"):
            values[item.name] = int(raw)
        elif item.name in ("train_accuracy", "dev_accuracy", "test_accuracy", "seconds"):
            values[item.name] = float(raw)
        elif item.name == "greedy":
            values[item.name] = raw == "True"
        else:
            values[item.name] = raw
    return StageResult(**values)  # type: ignore[arg-type]


LABELS = {"ppo": "PPO", "sql": "soft Q-learning", "random": "random search"}


def report(results: dict[tuple, StageResult], out: Path) -> Path:
    """``budget.md`` from the finished stages."""
    settings = [s for s in SETTINGS if any(k[0] == s for k in results)] + sorted({k[0] for k in results} - set(SETTINGS))
    budgets = sorted({k[3] for k in results})
    seeds = sorted({k[1] for k in results})
    lines = [
        "# Budget study: RL vs random search at growing numbers of prompt evaluations",
        "",
        "Generated by `python -m experiments.budget` from `budget.csv`. Target and policy backbone:",
        "smollm2-135m. Test accuracy of the best-on-dev prompt once each budget of distinct prompt",
        f"evaluations on train was reached, mean (std) over the 16-shot split seeds {', '.join(map(str, seeds))}",
        "(n = seeds with that stage finished). One run per method and seed; each budget resumes the",
        "run of the previous one. `sst-2/instruction` searches 0-5-token prompts inside",
        "`Review: {sentence} {prompt}\\nSentiment:` (the instruction alone is in the search space and is",
        "scored first); the others search 5-token prompts in the paper's template.",
        "",
    ]
    header = "| setting | method | " + " | ".join(f"{b:,}" for b in budgets) + " |"
    lines += ["## Test accuracy", "", header, "|---|---|" + "---|" * len(budgets)]
    for setting in settings:
        for method in METHODS:
            cells = []
            for budget in budgets:
                rows = [results[k] for k in results if k[0] == setting and k[2] == method and k[3] == budget]
                cells.append(f"{_mean_std([r.test_accuracy for r in rows])} n={len(rows)}" if rows else "–")
            if any(c != "–" for c in cells):
                lines.append(f"| {setting} | {LABELS.get(method, method)} | " + " | ".join(cells) + " |")
        if setting in INSTRUCTION_ALONE:
            lines.append(f"| {setting} | the instruction alone | " + " | ".join(f"{100 * INSTRUCTION_ALONE[setting]:.1f}" for _ in budgets) + " |")
    lines += ["", "## Dev accuracy of the same prompts (what selection saw)", "", header, "|---|---|" + "---|" * len(budgets)]
    for setting in settings:
        for method in METHODS:
            cells = []
            for budget in budgets:
                rows = [results[k] for k in results if k[0] == setting and k[2] == method and k[3] == budget]
                cells.append(_mean_std([r.dev_accuracy for r in rows]))
            if any(c != "–" for c in cells):
                lines.append(f"| {setting} | {LABELS.get(method, method)} | " + " | ".join(cells) + " |")
    plot = out / "budget.png"
    if plot.exists():
        lines += ["", f"![test accuracy vs prompt evaluations]({plot.name})"]
    lines += ["", "## Every stage", "", "| cell | budget | prompt | evaluations | steps | greedy | dev | test | seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for key in sorted(results):
        row = results[key]
        lines.append(
            f"| {row.setting}/{row.seed}/{row.method} | {row.budget} | `{row.prompt!r}` | {row.evaluations} | {row.steps} | "
            f"{'yes' if row.greedy else 'no'} | {100 * row.dev_accuracy:.1f} | {100 * row.test_accuracy:.1f} | {row.seconds:.0f} |"
        )
    total = sum(row.seconds for row in results.values())
    lines += ["", f"Total wall time of the stages: {total / 60:.0f} min.", ""]
    path = out / "budget.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def plot(results: dict[tuple, StageResult], out: Path) -> Path | None:
    """``budget.png``: test accuracy against evaluations (log axis), mean over seeds and the
    min-max band, one panel per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    settings = [s for s in SETTINGS if any(k[0] == s for k in results)]
    if not settings:
        return None
    figure, axes = plt.subplots(1, len(settings), figsize=(5 * len(settings), 3.8), squeeze=False)
    for axis, setting in zip(axes[0], settings):
        for method, color in (("ppo", "tab:blue"), ("sql", "tab:green"), ("random", "tab:orange")):
            budgets = sorted({k[3] for k in results if k[0] == setting and k[2] == method})
            if not budgets:
                continue
            by_budget = [np.array([100 * results[k].test_accuracy for k in results if k[0] == setting and k[2] == method and k[3] == b]) for b in budgets]
            means = [values.mean() for values in by_budget]
            axis.plot(budgets, means, "o-", color=color, label=f"{LABELS[method]} (n={len(by_budget[0])})")
            axis.fill_between(budgets, [v.min() for v in by_budget], [v.max() for v in by_budget], color=color, alpha=0.15)
        if setting in INSTRUCTION_ALONE:
            axis.axhline(100 * INSTRUCTION_ALONE[setting], color="gray", linestyle="--", label="the instruction alone")
        axis.set_xscale("log")
        axis.set_title(setting)
        axis.set_xlabel("prompt evaluations on train (log)")
        axis.set_ylabel("test accuracy of the best-on-dev prompt (%)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    path = out / "budget.png"
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.budget", description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), help=f"task/template pairs (default: {' '.join(SETTINGS)})")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--budgets", nargs="+", type=int, default=list(BUDGETS), help="distinct prompt evaluations (default: 320 1280 5120)")
    parser.add_argument("--target", default="smollm2-135m")
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data/16-shot"))
    parser.add_argument("--work-dir", type=Path, default=Path("runs/budget"))
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--report-only", action="store_true")
    add_ray_arguments(parser)
    args = parser.parse_args(argv)
    for setting in args.settings:
        task, _, template = setting.partition("/")
        if task not in TASKS or template not in ("paper", "instruction"):
            parser.error(f"setting '{setting}' is not TASK/TEMPLATE with TASK in {', '.join(TASKS)} and TEMPLATE paper or instruction")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("rlprompt").setLevel(logging.INFO)
    study = BudgetStudy(args.data_root, args.work_dir, args.results, args.target)
    args.results.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        resources = Resources(args.cpus_per_cell, args.gpus_per_cell)
        study.run(args.settings, args.seeds, args.methods, args.budgets, ray_address=args.ray, resources=resources)
    print(study.write_report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
