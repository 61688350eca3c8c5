"""The paper's few-shot table on the offline models, with baselines at equal budget.

Run from the repository root (needs the 16-shot splits at ``../shared/data/16-shot``)::

    python -m experiments.fewshot                      # every cell; resumes finished ones
    python -m experiments.fewshot --tasks sst-2 --seeds 42 --targets smollm2-135m
    python -m experiments.fewshot --report-only        # redraw the table and plots from the CSV
    python -m experiments.fewshot --check smollm2-135m/sst-2/42/paper/rl   # re-run one cell

Every (target, task, seed, template, method) is one cell. A finished cell is appended to
``experiments/results/fewshot.csv`` (its search curve to ``fewshot_curves.csv``) before the next
one starts, so a crash loses at most one cell and a re-run skips what is done. The markdown
table ``fewshot.md`` and the plots are then regenerated from the CSVs alone.

Methods, each picking its final prompt on dev and reporting test accuracy:
- ``empty``: no prompt; in the instruction template this is the hand-written instruction alone;
- ``manual``: the paper-style manual prompt (``It was``, ``Topic:``);
- ``random``: random search, prompts drawn uniformly from the RL action vocabulary, the same
  number of prompt evaluations on train as the RL run of the same cell, chosen like RL's;
- ``rl``: PPO with the default training config, stopped at ``--budget`` prompt evaluations;
- ``sql``: soft Q-learning (the paper's algorithm) with its defaults, at the same budget.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import json
import logging
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable, Sequence

from experiments import worker_cache
from experiments.sweep import DEFAULT_RESOURCES, Resources, add_ray_arguments, run_cells
from rlprompt.artifact import write_json_atomic
from rlprompt.config import TrainConfig
from rlprompt.evaluation import score_prompts
from rlprompt.models import ModelPool
from rlprompt.scoring.base import calibration_splits
from rlprompt.scoring.calibration import calibrated
from rlprompt.scoring.factory import make_scorer
from rlprompt.scoring.local import Scorer
from rlprompt.tasks import PRESETS, Task, load_task
from rlprompt.train import train

logger = logging.getLogger("experiments.fewshot")

RESULTS = Path("experiments/results")
TEMPLATES = ("paper", "instruction")
METHODS = ("empty", "manual", "random", "rl", "sql")
SEARCH_METHODS = ("random", "rl", "sql")
FLUENCY_WEIGHT = 5.0
"""Fluency weight of the ``*-fluency`` RL settings: the mean token log-likelihood of word
prompts spreads over a few nats, so 5x it weighs about as much as the gap reward's spread."""
RL_SETTINGS: dict[str, dict[str, object]] = {
    "rl": {},
    "sql": {"algo": "sql"},
    "rl-all": {"vocabulary": "all"},
    "rl-fluency": {"fluency_weight": FLUENCY_WEIGHT},
    "rl-all-fluency": {"vocabulary": "all", "fluency_weight": FLUENCY_WEIGHT},
    "rl-top-fluency": {"vocabulary": "top-2000", "fluency_weight": FLUENCY_WEIGHT},
    "rl-fluency15": {"fluency_weight": 3 * FLUENCY_WEIGHT},
}
"""RL methods (PPO unless ``algo`` says otherwise): the default config, soft Q-learning, and the
readable-prompt settings (experiments.readable)."""
TRANSFER = "@"
"""``rl-all@smollm2-135m`` in a cell's method: that source cell's prompt, scored on this cell's target."""
CALIBRATED = "+calibrated"
"""``paper+calibrated`` as a cell's template: the paper template, every prompt of the cell (the
RL reward, dev and test) scored with ``train-mean`` calibration on the split's train inputs."""
TEST_STRIDE = {"agnews": 4}
"""AG News's 7,600 test sentences cost about 100 s per prompt here; every 4th (1,900, all four
classes) is the fixed subset every method is scored on. Other tasks use the whole test file."""


@dataclass(frozen=True)
class TaskSetup:
    """How a task is scored in each template."""

    instruction_template: str
    """The hand-written instruction template; {prompt} is where learned tokens go."""
    instruction_verbalizers: tuple[str, ...]
    """Label words of the instruction template."""
    search_templates: tuple[str, ...]
    """Templates in which random search and RL run (the others get the manual rows only)."""


PROMPT_FIRST = "prompt-first"
"""The template of issue 25's instruction writers: the instruction template with ``{prompt}`` moved
before the input, as a line of its own (``{prompt}\nReview: {sentence}\nSentiment: {mask}``)."""


def prompt_first_template(instruction_template: str) -> str:
    """``instruction_template`` with its ``{prompt}`` moved to the front, on a line of its own."""
    return "{prompt}\n" + instruction_template.replace(" {prompt}", "")


TASKS = {
    "sst-2": TaskSetup("Review: {sentence} {prompt}\nSentiment: {mask}", (" negative", " positive"), ("paper", "instruction")),
    "sst-5": TaskSetup(
        "Review: {sentence} {prompt}\nSentiment: {mask}", (" terrible", " bad", " okay", " good", " great"), ("paper",)
    ),
    "agnews": TaskSetup("Article: {sentence} {prompt}\nTopic: {mask}", (" World", " Sports", " Business", " Tech"), ("paper",)),
}
PAPER_ROBERTA_LARGE = {
    # Deng et al. 2022, Table 2 (RoBERTa-large, 16-shot, mean over 5 seeds): for orientation only.
    "Manual prompt": {"sst-2": 82.8, "agnews": 76.9, "sst-5": 34.9},
    "RLPrompt": {"sst-2": 92.5, "agnews": 80.2, "sst-5": 41.4},
}


@dataclass
class CellResult:
    """One row of ``fewshot.csv``."""

    target: str
    task: str
    seed: int
    template: str
    method: str
    prompt: str
    train_accuracy: float | None
    dev_accuracy: float
    test_accuracy: float
    test_examples: int
    prompt_evaluations: int
    prompts_sampled: int
    steps: int
    seconds: float
    run_dir: str
    perplexity: float | None = None
    """Of the prompt under the policy backbone (search methods)."""
    greedy: bool | None = None
    """The final prompt was one of the policy's greedy prompts (RL methods; None: not recorded)."""

    @property
    def key(self) -> tuple[str, str, int, str, str]:
        return (self.target, self.task, int(self.seed), self.template, self.method)


def curves_path(out: Path, target: str) -> Path:
    return out / f"fewshot_curves_{Path(target).name}.png"


def cell_id(key: tuple[str, str, int, str, str]) -> str:
    return "/".join(str(part) for part in key)


def test_set(task: Task) -> list:
    """The test examples a cell is scored on (AG News: every TEST_STRIDE-th), sorted by length:
    the kept prefix blocks then carry little padding (accuracy ignores order)."""
    return sorted(task.test[:: TEST_STRIDE.get(task.name, 1)], key=lambda example: len(example.text))


WORKER_HARNESS = "experiments.fewshot:Experiment"
"""What a Ray worker makes once and runs its cells on (by import name: under ``python -m`` this module is ``__main__``)."""


class Experiment:
    """Runs cells, keeps the finished ones on disk and reuses what is shared between cells.

    Args:
        data_root: Folder of the 16-shot splits (``<task>/16-<seed>/``).
        work_dir: Run folders and the test-score cache.
        results: Where ``<name>.csv`` and ``<name>_curves.csv`` go.
        budget: Distinct prompt evaluations of an RL cell.
        num_prompts: Prompts per batch.
        name: Stem of this experiment's files.
        shared: Other experiments' result CSVs whose cells count as finished here (read only,
            so two experiments can run at once without writing the same file).
    """

    def __init__(
        self,
        data_root: Path,
        work_dir: Path,
        results: Path,
        budget: int,
        num_prompts: int,
        name: str = "fewshot",
        shared: Sequence[Path] = (),
    ) -> None:
        self.data_root = data_root
        self.work_dir = work_dir
        self.results = results
        self.budget = budget
        self.num_prompts = num_prompts
        self.csv_path = results / f"{name}.csv"
        self.curves_path = results / f"{name}_curves.csv"
        self.shared = list(shared)
        self.test_cache_path = work_dir / f"test_scores_{name}.json"
        self.models = ModelPool()
        self._test_scorer: tuple[str, Scorer] | None = None
        self._test_cache: dict[str, float] = json.loads(self.test_cache_path.read_text()) if self.test_cache_path.exists() else {}

    # --- inputs -------------------------------------------------------------------------------
    def task(self, task: str, seed: int, template: str) -> Task:
        template = template.removesuffix(CALIBRATED)
        data = self.data_root / task / f"16-{seed}"
        if not data.is_dir():
            raise SystemExit(f"no 16-shot split at {data}; expected ../shared/data/16-shot/<task>/16-<seed>")
        setup = TASKS[task]
        if template == "paper":
            return load_task(task, str(data))
        if template == PROMPT_FIRST:
            # The instruction goes before the input; the manual prompt is the preset's hand-written
            # instruction (the baseline row, and where an instruction writer starts).
            return load_task(
                task, str(data), template=prompt_first_template(setup.instruction_template),
                verbalizers=list(setup.instruction_verbalizers), manual_prompt=PRESETS[task].instruction,
            )
        return load_task(task, str(data), template=setup.instruction_template, verbalizers=list(setup.instruction_verbalizers), manual_prompt="")

    # --- results on disk ----------------------------------------------------------------------
    def finished(self, own_only: bool = False) -> dict[tuple, CellResult]:
        """Finished cells: this experiment's, then (unless ``own_only``) the shared CSVs'."""
        rows = []
        for path in [self.csv_path] if own_only else [*self.shared, self.csv_path]:
            if path.exists():
                with path.open(newline="") as handle:
                    rows += [_parse_row(row) for row in csv.DictReader(handle)]
        for row in rows:
            # Rows written before the perplexity column existed: their prompt file has it.
            prompt_file = self.work_dir / row.run_dir / "prompt.json"
            if row.perplexity is None and row.run_dir and prompt_file.exists():
                row.perplexity = json.loads(prompt_file.read_text())["perplexity"]
        return {row.key: row for row in rows}

    def curves(self) -> list[dict]:
        if not self.curves_path.exists():
            return []
        finished = {cell_id(key) for key in self.finished(own_only=True)}
        with self.curves_path.open(newline="") as handle:
            # Curve rows of a cell that crashed before its result row are ignored.
            return [row for row in csv.DictReader(handle) if row["cell"] in finished]

    def _append(self, path: Path, header: list[str], rows: Iterable[dict]) -> None:
        new = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        if not new:
            with path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                old_header, old_rows = reader.fieldnames, list(reader)
            if old_header != header:
                # A column was added since the file was started: rewrite it with the new header.
                with path.open("w", newline="") as handle:
                    writer = csv.DictWriter(handle, fieldnames=header)
                    writer.writeheader()
                    writer.writerows({name: row.get(name, "") for name in header} for row in old_rows)
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=header)
            if new:
                writer.writeheader()
            writer.writerows(rows)

    # --- running cells ------------------------------------------------------------------------
    def run(
        self, cells: list[tuple[str, str, int, str, str]], ray_address: str | None = None, resources: Resources = DEFAULT_RESOURCES
    ) -> list[CellResult]:
        """Run the cells not finished yet, each saved as soon as it finishes; returns those run.

        Args:
            cells: Cell keys, in the order a serial run takes them.
            ray_address: None: one after another here; else as Ray tasks (see :mod:`experiments.sweep`).
            resources: What each cell asks Ray for.
        """
        out: list[CellResult] = []

        def record(key: tuple, result: CellResult) -> None:
            self._record(key, result)
            out.append(result)

        run_one = self.timed_cell if ray_address is None else functools.partial(worker_cache.run_cell, WORKER_HARNESS, "timed_cell", self.spec())
        run_cells(cells, run_one, record, needs=self.needs, done=self.finished(), ray_address=ray_address, resources=resources)
        return out

    def spec(self) -> dict:
        """What a Ray worker needs to make the same experiment."""
        return dict(
            data_root=self.data_root, work_dir=self.work_dir, results=self.results, budget=self.budget,
            num_prompts=self.num_prompts, name=self.csv_path.stem, shared=tuple(self.shared),
        )

    @staticmethod
    def needs(key: tuple[str, str, int, str, str]) -> list[tuple[str, str, int, str, str]]:
        """The cells ``key`` needs finished first: random search takes its RL cell's budget, a
        transfer cell its source cell's prompt."""
        target, task, seed, template, method = key
        if method == "random":
            return [(target, task, seed, template, "rl")]
        if TRANSFER in method:
            source_method, source_target = method.split(TRANSFER)
            return [(source_target, task, seed, template, source_method)]
        return []

    def timed_cell(self, key: tuple[str, str, int, str, str], done: dict[tuple, CellResult]) -> CellResult:
        """:meth:`run_cell` with its wall time and a log line."""
        started = time.monotonic()
        logger.info("cell %s: starting", cell_id(key))
        result = self.run_cell(key, done)
        result.seconds = round(time.monotonic() - started, 1)
        logger.info(
            "cell %s: %r dev %.1f%% test %.1f%% (%d evaluations, %.0f s)",
            cell_id(key), result.prompt, 100 * result.dev_accuracy, 100 * result.test_accuracy,
            result.prompt_evaluations, result.seconds,
        )
        return result

    def _record(self, key: tuple, result: CellResult) -> None:
        """Append a finished cell to the CSVs (its search curve first: a curve without its result
        row is ignored, so a crash between the two loses nothing but that cell)."""
        history = self.work_dir / result.run_dir / "history.json" if result.run_dir else None
        if history and history.exists():
            curve = [
                {"cell": cell_id(key), "evaluations": row["evaluations"], "best_dev_accuracy": row["best_dev_accuracy"]}
                for row in json.loads(history.read_text())
            ]
            self._append(self.curves_path, ["cell", "evaluations", "best_dev_accuracy"], curve)
        self._append(self.csv_path, [f.name for f in fields(CellResult)], [asdict(result)])

    def run_cell(self, key: tuple[str, str, int, str, str], done: dict[tuple, CellResult]) -> CellResult:
        target, task_name, seed, template, method = key
        task = self.task(task_name, seed, template)
        calibration = calibration_of(template)
        test = test_set(task)
        fixed = self._fixed_prompt(key, task, done)
        if fixed is not None:
            prompt, perplexity = fixed
            dev = score_prompts(make_scorer(target, task, calibration, models=self.models), [prompt], task.dev)[0].accuracy
            test_accuracy = self.test_accuracy(target, task, test, prompt, calibration)
            return CellResult(*key, prompt, None, dev, test_accuracy, len(test), 0, 0, 0, 0.0, "", perplexity)
        run_name = "-".join(str(part) for part in key)
        settings: dict[str, object] = {"algo": "random"}
        if method in RL_SETTINGS:
            settings = {"algo": "ppo", **RL_SETTINGS[method]}
            budget = self.budget
            steps = 3 * math.ceil(budget / self.num_prompts)  # a cap: repeats cost no evaluation
        else:
            rl = done.get((target, task_name, seed, template, "rl"))
            if rl is None:
                raise SystemExit(f"cell {cell_id(key)} needs the RL cell of the same split first (its budget)")
            # Whole batches, so random search gets at least RL's evaluations, never fewer.
            budget = rl.prompt_evaluations
            steps = math.ceil(budget / self.num_prompts)
        config = TrainConfig(
            task=task_name,
            data=str(self.data_root / task_name / f"16-{seed}"),
            template=task.template.text,
            verbalizers=list(task.verbalizers),
            manual_prompt=task.manual_prompt,
            target_lm=target,
            num_prompts=self.num_prompts,
            steps=steps,
            max_evaluations=budget,
            seed=seed,
            run_name=run_name,
            runs_dir=str(self.work_dir),
            evaluate_test=False,
            calibration=calibration,
            **settings,  # type: ignore[arg-type]
        )
        result = train(config, progress_bar=sys.stderr.isatty())
        best = result.prompt_file
        return CellResult(
            *key,
            best.prompt,
            best.accuracy["train"],
            best.accuracy["dev"],
            self.test_accuracy(target, task, test, best.prompt, calibration),
            len(test),
            int(best.budget["prompt_evaluations"]),
            int(best.budget["prompts_sampled"]),
            int(best.budget["steps"]),
            0.0,
            run_name,
            best.perplexity,
            any(c.greedy and c.prompt == best.prompt for c in best.candidates) if method in RL_SETTINGS else None,
        )

    def _fixed_prompt(self, key: tuple, task: Task, done: dict[tuple, CellResult]) -> tuple[str, float | None] | None:
        """The prompt of a cell that searches nothing (and its perplexity, if known); None for search cells."""
        target, task_name, seed, template, method = key
        if method in ("empty", "manual"):
            return ("" if method == "empty" else task.manual_prompt), None
        if TRANSFER not in method:
            return None
        source_method, source_target = method.split(TRANSFER)
        source_key = (source_target, task_name, seed, template, source_method)
        if source_key not in done:
            raise SystemExit(f"cell {cell_id(key)} needs the cell {cell_id(source_key)} first")
        return done[source_key].prompt, done[source_key].perplexity

    def test_accuracy(self, target: str, task: Task, test: list, prompt: str, calibration: str = "none") -> float:
        """Test accuracy, computed once per (model, template, verbalizers, test set, prompt): the
        test file is the same for every seed, so the empty and manual prompts are scored once.
        A calibrated score also depends on the split's train inputs, so it is kept per split."""
        setting = json.dumps([target, task.name, task.template.text, list(task.verbalizers), len(test)])
        reference = [example.text for example in task.train] if calibration_splits(calibration) else []
        key_parts = [setting, prompt]
        if reference:
            key_parts += [calibration, hashlib.sha256(json.dumps(reference).encode()).hexdigest()[:16]]
        key = json.dumps(key_parts)
        if key not in self._test_cache:
            scorer = calibrated(self._scorer_for_test(setting, target, task), calibration, reference)
            self._test_cache[key] = score_prompts(scorer, [prompt], test)[0].accuracy
            self.test_cache_path.parent.mkdir(parents=True, exist_ok=True)
            # Atomic: Ray workers share this file, and one may read it while another writes.
            write_json_atomic(self.test_cache_path, self._test_cache)
        return self._test_cache[key]


    def _scorer_for_test(self, setting: str, target: str, task: Task) -> Scorer:
        # The test inputs' prefixes cost about as much as everything else in a cell; one scorer
        # keeps them for the setting being run (cells are planned setting by setting).
        if self._test_scorer is None or self._test_scorer[0] != setting:
            self._test_scorer = None
            scorer = Scorer(self.models.get(target), task.template, task.verbalizers, keep_all_prefixes=True)
            self._test_scorer = (setting, scorer)
        return self._test_scorer[1]


def calibration_of(template: str) -> str:
    """The calibration a cell's template names (see :data:`CALIBRATED`)."""
    return "train-mean" if template.endswith(CALIBRATED) else "none"


def _parse_row(row: dict[str, str]) -> CellResult:
    values: dict[str, object] = {}
    for item in fields(CellResult):
        raw = row.get(item.name) or ""
        if item.name in ("seed", "test_examples", "prompt_evaluations", "prompts_sampled", "steps"):
            values[item.name] = int(raw)
        elif item.name in ("train_accuracy", "dev_accuracy", "test_accuracy", "seconds", "perplexity"):
            values[item.name] = float(raw) if raw != "" else None
        elif item.name == "greedy":
            values[item.name] = {"True": True, "False": False}.get(raw)
        else:
            values[item.name] = raw
    return CellResult(**values)  # type: ignore[arg-type]


def plan(targets: list[str], tasks: list[str], seeds: list[int], search_targets: dict[str, list[str]]) -> list[tuple]:
    """Every cell, RL before the random search that takes its budget, seeds innermost."""
    cells = []
    for target in targets:
        for task in tasks:
            if task not in search_targets.get(target, tasks):
                continue
            # Seeds innermost: cells of one template share the kept test-set prefixes.
            for template in TEMPLATES:
                for seed in seeds:
                    cells.append((target, task, seed, template, "empty"))
                    if template == "paper":
                        cells.append((target, task, seed, template, "manual"))
                    if template in TASKS[task].search_templates:
                        cells += [(target, task, seed, template, method) for method in ("rl", "random", "sql")]
    return cells


# --- report -----------------------------------------------------------------------------------
ROWS = [
    ("paper", "empty", "Empty prompt, `{sentence} {mask}`"),
    ("paper", "manual", "Manual, paper style (`It was` / `Topic:`)"),
    ("instruction", "empty", "Manual, instruction style (`Review:`/`Article:` … `Sentiment:`/`Topic:`)"),
    ("manual-dev", "", "Best manual on dev (of the two above)"),
    ("manual-oracle", "", "Best manual on test (oracle pick, not a method)"),
    ("paper", "random", "Random search, paper template"),
    ("paper", "rl", "RL (PPO), paper template"),
    ("paper", "sql", "RL (soft Q-learning), paper template"),
    ("instruction", "random", "Random search inside the instruction template"),
    ("instruction", "rl", "RL (PPO) inside the instruction template"),
    ("instruction", "sql", "RL (soft Q-learning) inside the instruction template"),
]


def _mean_std(values: list[float], scale: float = 100.0) -> str:
    """``mean (std)`` of ``values`` x ``scale`` (default: fractions as percentages); – if none."""
    if not values:
        return "–"
    mean = scale * statistics.mean(values)
    std = scale * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ({std:.1f})"


def _row_values(results: dict[tuple, CellResult], target: str, task: str, seeds: list[int], template: str, method: str) -> list[float]:
    values = []
    for seed in seeds:
        if template in ("manual-dev", "manual-oracle"):
            pair = [results.get((target, task, seed, "paper", "manual")), results.get((target, task, seed, "instruction", "empty"))]
            if None in pair:
                continue
            pick = max(pair, key=lambda r: r.dev_accuracy if template == "manual-dev" else r.test_accuracy)
            values.append(pick.test_accuracy)
        elif (target, task, seed, template, method) in results:
            values.append(results[(target, task, seed, template, method)].test_accuracy)
    return values


def report(results: dict[tuple, CellResult], curves: list[dict], out: Path, budget: int) -> Path:
    """Write ``fewshot.md`` and the curve plots from the finished cells."""
    targets = sorted({k[0] for k in results}, key=lambda t: (t != "smollm2-135m", t))
    tasks = [t for t in TASKS if any(k[1] == t for k in results)]
    seeds = sorted({k[2] for k in results})
    lines = [
        "# Few-shot classification: RL vs manual prompts vs random search",
        "",
        "Generated by `python -m experiments.fewshot` from `fewshot.csv` (one row per cell: target,",
        "task, split seed, template, method) and `fewshot_curves.csv`. Test accuracy, mean (std) over",
        f"the 16-shot split seeds {', '.join(map(str, seeds))}; every method picks its prompt on the",
        "split's dev set. Test sets: SST-2 all 1,821, SST-5 all 2,210, AG News every 4th of the 7,600",
        "(1,900; the same for every method). The test file is the same for every split seed, so a",
        "fixed prompt (empty, manual) has one test accuracy and a std of 0; the seeds change only",
        "which manual prompt dev picks.",
        "",
        "**Budget:** RL (PPO and soft Q-learning, each with its own defaults: 16 prompts per step, 5 tokens,",
        "`words` vocabulary; PPO learning rate 5e-4 over the full distribution, SQL 5e-5 with top-256",
        "sampling; SQL cells also score the policy's greedy prompt every 10 steps, which the PPO cells,",
        f"run before greedy decoding existed, did not) stops once the target LM has scored {budget} distinct",
        "prompts on the train set; random search draws 5-token prompts uniformly from the same vocabulary",
        "and gets at least as many evaluations as the PPO cell (rounded up to whole batches of 16). All",
        "keep the top 8 by train reward, score them on dev, and report the best on dev.",
        "",
    ]
    for target in targets:
        present = [t for t in tasks if any(k[0] == target and k[1] == t for k in results)]
        lines += [f"## Target LM: {target}", "", "| method | " + " | ".join(present) + " |", "|---|" + "---|" * len(present)]
        for template, method, label in ROWS:
            values = [_row_values(results, target, task, seeds, template, method) for task in present]
            # A row some splits have not reached yet says how many it averages.
            cells = [_mean_std(v) + (f" n={len(v)}" if 0 < len(v) < len(seeds) else "") for v in values]
            if any(c != "–" for c in cells):
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        plot = curves_path(out, target)
        if plot.exists():
            lines += ["", f"![best-so-far dev accuracy vs prompt evaluations]({plot.name})"]
        lines.append("")
    lines += [
        "## For orientation only: the paper's RoBERTa-large numbers",
        "",
        "Deng et al. (2022), Table 2, RoBERTa-large (355M, masked LM), 16-shot, mean over 5 seeds.",
        "A different and much larger model: not comparable cell by cell with the tables above.",
        "",
        "| method | sst-2 | agnews | sst-5 |",
        "|---|---|---|---|",
    ]
    for method, values in PAPER_ROBERTA_LARGE.items():
        lines.append(f"| {method} | {values['sst-2']} | {values['agnews']} | {values['sst-5']} |")
    greedy = {method: [r.greedy for k, r in results.items() if k[4] == method and r.greedy is not None] for method in ("rl", "sql")}
    counted = [f"{METHOD_LABELS[m]} {sum(flags)} of {len(flags)}" for m, flags in greedy.items() if flags]
    if counted:
        lines += ["", f"Cells whose final prompt was a greedy prompt of the policy (recorded since greedy decoding exists): {', '.join(counted)}."]
    lines += ["", "## Every cell", "", "| cell | prompt | dev | test | evaluations | greedy | seconds |", "|---|---|---|---|---|---|---|"]
    for key in sorted(results):
        row = results[key]
        flag = "–" if row.greedy is None else "yes" if row.greedy else "no"
        lines.append(
            f"| {cell_id(key)} | `{row.prompt!r}` | {100 * row.dev_accuracy:.1f} | {100 * row.test_accuracy:.1f} | "
            f"{row.prompt_evaluations} | {flag} | {row.seconds:.0f} |"
        )
    total = sum(row.seconds for row in results.values())
    lines += ["", f"Total wall time of the cells: {total / 60:.0f} min.", ""]
    path = out / "fewshot.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


METHOD_LABELS = {"rl": "PPO", "sql": "soft Q-learning", "random": "random search"}


def plot_curves(results: dict[tuple, CellResult], curves: list[dict], out: Path) -> list[Path]:
    """Best-so-far dev accuracy vs prompt evaluations, RL vs random search: mean over seeds and
    the min-max band, one panel per task, one figure per target LM."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    by_cell: dict[str, list[tuple[float, float]]] = {}
    for row in curves:
        by_cell.setdefault(row["cell"], []).append((float(row["evaluations"]), float(row["best_dev_accuracy"])))
    paths = []
    for target in sorted({k[0] for k in results}):
        tasks = [t for t in TASKS if any(k[0] == target and k[1] == t and k[4] in SEARCH_METHODS for k in results)]
        if not tasks:
            continue
        figure, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
        for axis, task in zip(axes[0], tasks):
            for template in TEMPLATES:
                for method, color in (("rl", "tab:blue"), ("sql", "tab:green"), ("random", "tab:orange")):
                    series = [
                        by_cell[cell_id(k)] for k in results
                        if k[:2] == (target, task) and k[3:] == (template, method) and cell_id(k) in by_cell
                    ]
                    if not series:
                        continue
                    # From the first batch every seed has finished to the end of the shortest run.
                    start = max(points[0][0] for points in series)
                    grid = np.linspace(start, max(start, min(points[-1][0] for points in series)), 100)
                    stacked = np.array([
                        np.interp(grid, [p[0] for p in points], [p[1] for p in points]) for points in series
                    ]) * 100
                    style = "-" if template == "paper" else "--"
                    label = f"{METHOD_LABELS[method]}, {template} template (n={len(series)})"
                    axis.plot(grid, stacked.mean(axis=0), style, color=color, label=label)
                    axis.fill_between(grid, stacked.min(axis=0), stacked.max(axis=0), color=color, alpha=0.15)
            axis.set_title(f"{task} ({target})")
            axis.set_xlabel("prompt evaluations on train")
            axis.set_ylabel("best-so-far dev accuracy (%)")
            axis.grid(alpha=0.3)
            axis.legend(fontsize=7, loc="lower right")
        figure.tight_layout()
        path = curves_path(out, target)
        figure.savefig(path, dpi=120)
        plt.close(figure)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.fewshot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[13, 21, 42])
    parser.add_argument("--targets", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    parser.add_argument(
        "--search-tasks", nargs="+", default=["gemma3-270m=sst-2"], metavar="TARGET=TASK[,TASK]",
        help="restrict a target to some tasks (default: gemma3-270m runs SST-2 only)",
    )
    parser.add_argument("--methods", nargs="+", help="run only these methods' cells (default: every method)")
    parser.add_argument("--templates", nargs="+", choices=list(TEMPLATES), help="run only these templates' cells (default: both)")
    parser.add_argument("--budget", type=int, default=320, help="distinct prompt evaluations per search cell (default: 320)")
    parser.add_argument("--num-prompts", type=int, default=16, help="prompts per batch (default: 16)")
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data/16-shot"))
    parser.add_argument("--work-dir", type=Path, default=Path("runs/fewshot"), help="run folders and the test-score cache")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the CSVs, table and plots go")
    parser.add_argument("--report-only", action="store_true", help="only regenerate the table and plots")
    add_ray_arguments(parser)
    parser.add_argument("--check", metavar="CELL", help="re-run one finished cell (target/task/seed/template/method) and compare")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("rlprompt").setLevel(logging.INFO)

    experiment = Experiment(args.data_root, args.work_dir, args.results, args.budget, args.num_prompts)
    if args.check:
        return _check(experiment, args.check)
    if not args.report_only:
        search_targets = {}
        for item in args.search_tasks:
            target, _, names = item.partition("=")
            search_targets[target] = names.split(",")
        cells = plan(args.targets, args.tasks, args.seeds, search_targets)
        cells = [c for c in cells if (not args.methods or c[4] in args.methods) and (not args.templates or c[3] in args.templates)]
        experiment.run(cells, ray_address=args.ray, resources=Resources(args.cpus_per_cell, args.gpus_per_cell))
    # The same CSV holds experiments.readable's cells; this table is about the methods above.
    results = {key: row for key, row in experiment.finished().items() if key[4] in METHODS}
    curves = experiment.curves()
    plot_curves(results, curves, args.results)
    print(report(results, curves, args.results, args.budget))
    return 0


def _check(experiment: Experiment, cell: str) -> int:
    # The target may itself be a path: the last four parts are the rest of the key.
    target, task, seed, template, method = cell.rsplit("/", 4)
    key = (target, task, int(seed), template, method)
    done = experiment.finished()
    if key not in done:
        raise SystemExit(f"cell {cell} has not been run; finished cells are listed in {experiment.csv_path}")
    experiment.work_dir = experiment.work_dir / "check"
    again = experiment.run_cell(key, done)
    same = again.prompt == done[key].prompt
    print(f"{cell}: recorded {done[key].prompt!r} test {100 * done[key].test_accuracy:.1f}%; "
          f"re-run {again.prompt!r} test {100 * again.test_accuracy:.1f}%: {'same prompt' if same else 'DIFFERENT'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
