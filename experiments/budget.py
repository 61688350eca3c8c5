"""Does RL earn its cost? PPO, soft Q-learning and random search at growing budgets.

Run from the repository root (needs the 16-shot splits at ``../shared/data/16-shot``)::

    python -m experiments.budget                       # every cell, smallest budget first; resumes
    python -m experiments.budget --budgets 320 1280    # stop at 1,280 for now
    python -m experiments.budget --report-only         # redraw the table and plot from the CSV
    python -m experiments.budget --check-selection     # test accuracy of each stage's top-train-reward prompt
    python -m experiments.budget --settings sst-2/prompt-first --transfer gemma3-270m   # each pick on another LM

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
import io
import json
import logging
import math
import statistics
import sys
import time
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

from experiments import worker_cache
from experiments.fewshot import PROMPT_FIRST, RESULTS, TASKS, Experiment, _mean_std, test_set
from experiments.plot_tuning import scalar_series
from experiments.sweep import DEFAULT_RESOURCES, Resources, add_ray_arguments, run_cells
from rlprompt.artifact import write_atomic
from rlprompt.config import TrainConfig
from rlprompt.search import TEXT_METHODS
from rlprompt.tasks import Task
from rlprompt.train import STATE_FILE, run_dir, train

logger = logging.getLogger("experiments.budget")

BUDGETS = (320, 1280, 5120)
SEEDS = (13, 21, 42)
METHODS: dict[str, dict[str, object]] = {
    "ppo": {"algo": "ppo"},
    "sql": {"algo": "sql"},
    "random": {"algo": "random"},
    "ppo-ent": {"algo": "ppo", "ent_coef": 0.01},
    "ppo-ent02": {"algo": "ppo", "ent_coef": 0.02},
    "ppo-ent05": {"algo": "ppo", "ent_coef": 0.05},
    "grpo": {"algo": "grpo"},
    "ape": {"algo": "ape"},
    "opro": {"algo": "opro"},
    "grpo-lr1e3": {"algo": "grpo", "learning_rate": 1e-3},
    "grpo-kl04": {"algo": "grpo", "kl_coef": 0.4},
    "grpo-opro": {"algo": "grpo-opro"},
}
"""Method name -> the training settings it changes. ``ppo-ent`` is the before/after of issue 13's
item 3: PPO with an entropy bonus (evidence 13: without one the policy stops sampling new prompts
long before 1,280 evaluations); with 0.01 the policy's entropy still collapses by about batch 80,
so ``ppo-ent02`` and ``ppo-ent05`` try larger bonuses. ``grpo``, ``ape`` and ``opro`` are issue 25's
instruction writers (prompt-first settings), and three remedies: ``grpo-lr1e3``, a 3x larger step
for a GRPO policy that barely moved in 80 batches (evidence 25); ``grpo-kl04``, a 10x KL leash,
for the opposite, a writer that collapses onto one instruction (split 21: KL 2.5 nats per token
by batch 7, one distinct instruction a batch from batch 27); ``grpo-opro``, for GRPO trailing
OPRO (the pilot): GRPO on OPRO's meta-prompt, so the writer both sees the best scored
instructions and learns from each group."""
DEFAULT_METHODS = ("ppo", "sql", "random")
SETTINGS = ("sst-2/paper", "sst-2/instruction", "agnews/paper")
VARIABLE_LENGTH = {"instruction": 0}
"""``--min-length`` of a template's runs (absent: fixed 5-token prompts, the paper's)."""
STEP_CAP = 3
"""A stage may take this many times the steps its budget needs: a policy that samples only
prompts it has seen spends no budget, so steps, not evaluations, end it."""
PATIENCE = 40
"""A stage also ends after this many batches in a row (640 sampled prompts) scored no new
prompt: a collapsed policy re-samples what it has scored and would spend the rest of its
steps finding nothing (every 1,280 stage of the first sessions ran to its cap instead)."""
INSTRUCTION_ALONE = {"sst-2/instruction": 0.809}
"""The instruction template with no prompt, test accuracy (experiments/results/fewshot.md)."""
FIXED_CSV = "budget_fixed.csv"
"""The fixed rows of the prompt-first settings: the template alone and the hand-written instruction."""
TEMPLATE_ALONE = "the template alone"
"""The fixed row every prompt's gain is measured from."""
FIXED_PROMPTS = {TEMPLATE_ALONE: lambda task: "", "the hand-written instruction": lambda task: task.manual_prompt}
"""Row label -> the prompt it scores, from the setting's task (prompt-first: the manual prompt is the preset's instruction)."""
RIVALS = {method: ("ape", "opro") for method in ("grpo", "grpo-lr1e3", "grpo-kl04", "grpo-opro")}
"""Issue 25's bar: GRPO's mean test accuracy must beat each rival's by more than the larger seed std of the pair."""


CURVES_CSV = "budget_curves.csv"
SELECTION_CSV = "budget_selection.csv"
TRANSFER_CSV = "budget_transfer.csv"
CURVE_FIELDS = [
    "setting", "seed", "method", "batch", "prompts_sampled", "evaluations", "best_dev_accuracy",
    "best_train_reward", "new_prompt_reward", "entropy", "kl", "distinct_in_batch",
]
"""One row per batch of a cell's run. ``evaluations`` against ``prompts_sampled`` is how much of
what the method samples is new (a policy that only repeats itself spends no budget).
``best_train_reward`` is the highest training reward of any prompt scored so far (what the search
optimises, before selection on dev); ``new_prompt_reward`` the mean training reward of the prompts
first scored in that batch (empty if none was new). ``entropy`` is the policy's mean per-token
entropy in nats at its N-th logged update for batch N (each update follows one batch;
stable-baselines3 logs a PPO update with the next batch and never a session's last one, so a
resumed PPO run's values run up to a batch per session ahead; empty for random search). For an
instruction writer ``entropy`` is the mean negative log-probability per token of its samples, ``kl``
its KL to the untrained LM per token (GRPO), and ``distinct_in_batch`` the distinct instructions
of the batch."""
ENTROPY_TAGS = {"train/entropy_loss": -1.0, "sql/entropy": 1.0}
"""TensorBoard tags of the policy entropy and their sign (stable-baselines3 logs minus the entropy)."""


def scored_prompts(run: Path) -> list[tuple[str, float]]:
    """Every prompt a run's training reward has scored, with its reward, in the order they were
    first scored (the reward cache of its checkpoint)."""
    scores = json.loads((run / STATE_FILE).read_text(encoding="utf-8"))["reward"]["scores"]
    return [(prompt, float(score["reward"])) for prompt, score in scores.items()]


def run_curve(run: Path) -> list[dict]:
    """A run folder's batches: ``history.json``, the training rewards of its reward cache (in the
    order the prompts were first scored) and the policy entropy of its TensorBoard logs; [] if
    the folder has no history."""
    path = run / "history.json"
    if not path.is_file():
        return []
    history = json.loads(path.read_text(encoding="utf-8"))
    rewards = [reward for _, reward in scored_prompts(run)]
    entropy: list[float] = []
    for tag, sign in ENTROPY_TAGS.items():
        entropy = entropy or [sign * value for value in scalar_series(run, tag)]
    rows, scored = [], 0
    for i, row in enumerate(history):
        new = rewards[scored : row["evaluations"]]
        scored = max(scored, row["evaluations"])
        rows.append({
            "batch": row["batch"], "prompts_sampled": row["prompts_sampled"], "evaluations": row["evaluations"],
            "best_dev_accuracy": row["best_dev_accuracy"],
            "best_train_reward": round(max(rewards[:scored]), 4) if scored else "",
            "new_prompt_reward": round(statistics.mean(new), 4) if new else "",
            # Updates past the history belong to a stage still running: never attributed here.
            "entropy": round(entropy[i], 4) if i < len(entropy) else (round(row["entropy"], 4) if row.get("entropy") is not None else ""),
            "kl": round(row["kl"], 5) if row.get("kl") is not None else "",
            "distinct_in_batch": row.get("distinct_in_batch", ""),
        })
    return rows


def _parse_curve_row(row: dict) -> dict:
    def number(name: str) -> float | None:
        value = row.get(name, "")  # columns added later are absent from older CSVs
        return float(value) if value != "" else None

    return {
        "batch": int(row["batch"]), "prompts_sampled": int(row["prompts_sampled"]), "evaluations": int(row["evaluations"]),
        "best_dev_accuracy": float(row["best_dev_accuracy"]), "best_train_reward": number("best_train_reward"),
        "new_prompt_reward": number("new_prompt_reward"), "entropy": number("entropy"), "kl": number("kl"),
        "distinct_in_batch": number("distinct_in_batch"),
    }


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
    """Wall time of this stage (the run from the previous budget to this one, and the test score;
    an interrupted stage adds its earlier sessions' search time, not their model loading)."""
    dtype: str
    """Weights of the target and backbone (``bf16`` or ``fp32``: ``--dtype auto`` on that machine)."""
    perplexity: float = math.nan
    """The prompt's perplexity under the untrained policy LM (nan: rows from before it was recorded)."""

    @property
    def key(self) -> tuple[str, int, str, int]:
        return (self.setting, self.seed, self.method, self.budget)


@dataclass
class SelectionCheck:
    """One row of ``budget_selection.csv``: the prompt a stage would have returned had it picked on
    training reward alone (not on dev), and that prompt's test accuracy."""

    setting: str
    seed: int
    method: str
    budget: int
    prompt: str
    train_reward: float
    test_accuracy: float
    rule: str = "train-reward"
    """The rule that picked the prompt, a key of :data:`SELECTION_RULES` (rows from before the
    column existed are ``train-reward``)."""

    @property
    def key(self) -> tuple[str, int, str, int, str]:
        return (self.setting, self.seed, self.method, self.budget, self.rule)


@dataclass
class TransferCheck:
    """One row of ``budget_transfer.csv``: a stage's best-on-dev prompt scored on test with another
    target LM (``--transfer``). A fixed row's prompt has the row's label as ``method``, seed 0
    and budget 0."""

    setting: str
    seed: int
    method: str
    budget: int
    prompt: str
    target: str
    test_accuracy: float

    @property
    def key(self) -> tuple[str, int, str, int, str]:
        return (self.setting, self.seed, self.method, self.budget, self.target)


def top_train_prompt(run: Path, evaluations: int) -> tuple[str, float] | None:
    """The highest-training-reward prompt among the first ``evaluations`` a run scored (its reward
    cache keeps them in that order), and its reward; None without a checkpoint."""
    if not (run / STATE_FILE).is_file():
        return None
    return max(scored_prompts(run)[:evaluations], key=lambda item: item[1])


def top_train_dev_prompt(run: Path, evaluations: int) -> tuple[str, float] | None:
    """The run's candidate with the highest accuracy on train and dev together (64 sentences, not
    dev's 32 alone), ties to the shorter prompt, so the instruction alone wins a tie; and its
    training reward. None unless the run's prompt file is at ``evaluations``: it keeps the
    candidates of its latest stage only."""
    path = run / "prompt.json"
    if not path.is_file():
        return None
    prompt_file = json.loads(path.read_text(encoding="utf-8"))
    if prompt_file["budget"]["prompt_evaluations"] != evaluations:
        return None
    scored = [c for c in prompt_file["candidates"] if c["dev_accuracy"] is not None]
    best = max(scored, key=lambda c: (c["train_accuracy"] + c["dev_accuracy"], -len(c["token_ids"]), c["train_reward"]))
    return best["prompt"], best["train_reward"]


SELECTION_RULES: dict[str, tuple[Callable[[Path, int], tuple[str, float] | None], str]] = {
    "train-reward": (top_train_prompt, "the highest training reward among the stage's evaluations"),
    "train+dev": (top_train_dev_prompt, "the highest accuracy on train and dev together among the final stage's candidates (ties: the shorter prompt)"),
}
"""``--check-selection``'s alternatives to the study's best-on-dev rule: name -> (picks a run's
prompt at a number of evaluations, what it picks)."""


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
        return _read_rows(self.csv_path, StageResult)

    def selection_checks(self) -> dict[tuple, SelectionCheck]:
        """The rows of ``budget_selection.csv`` by (setting, seed, method, budget, rule)."""
        return _read_rows(self.results / SELECTION_CSV, SelectionCheck)

    def check_selection(self, settings: list[str] | None = None) -> list[SelectionCheck]:
        """For every finished stage (of ``settings``; None: all) whose run folder is on this
        machine, and every rule of :data:`SELECTION_RULES` without a row for it in
        ``budget_selection.csv`` yet: score the prompt the rule picks on test and add the row.
        Tells whether a better search objective value, or more sentences to select on, is a
        better prompt than the one the 32 dev sentences pick."""
        done, out = self.selection_checks(), []
        for key, stage in sorted(self.finished().items()):
            setting, seed, method, budget = key
            if settings is not None and setting not in settings:
                continue
            for rule, (pick, _) in SELECTION_RULES.items():
                if (*key, rule) in done:
                    continue
                picked = pick(self.work_dir / cell_name(setting, seed, method), stage.evaluations)
                if picked is None:
                    continue
                prompt, reward = picked
                test = self.test_accuracy(setting, seed, prompt)
                row = SelectionCheck(setting, seed, method, budget, prompt, round(reward, 4), test, rule)
                _append_row(self.results / SELECTION_CSV, row)
                logger.info("%s/%d/%s at %d, %s: %r test %.1f%%", setting, seed, method, budget, rule, prompt, 100 * row.test_accuracy)
                out.append(row)
        return out

    def transfer_checks(self) -> dict[tuple, TransferCheck]:
        """The rows of ``budget_transfer.csv`` by (setting, seed, method, budget, target)."""
        return _read_rows(self.results / TRANSFER_CSV, TransferCheck)

    def transfer(self, target: str, settings: list[str]) -> list[TransferCheck]:
        """Score on test with ``target`` every finished stage's prompt of ``settings`` and the
        prompt-first settings' fixed rows, each not in ``budget_transfer.csv`` yet: does what the
        search found on the study's target help another model? (The test set is the same for
        every split seed, so a fixed row is scored once.)"""
        done, out = self.transfer_checks(), []
        stages = {key: stage for key, stage in sorted(self.finished().items()) if key[0] in settings}
        # A fixed row takes its task from any finished split of its setting (all share the test set).
        split_of = {key[0]: key[1] for key in reversed(list(stages))}

        @functools.cache
        def task_of(setting: str, seed: int) -> Task:
            task_name, template = setting.split("/")
            return self.harness.task(task_name, seed, template)

        todo = [
            TransferCheck(setting, 0, label, 0, prompt_of(task_of(setting, seed)), target, math.nan)
            for setting, seed in split_of.items() if setting.endswith(f"/{PROMPT_FIRST}") for label, prompt_of in FIXED_PROMPTS.items()
        ]
        todo += [TransferCheck(*key, stage.prompt, target, math.nan) for key, stage in stages.items()]
        for row in todo:
            if row.key in done:
                continue
            task = task_of(row.setting, row.seed or split_of[row.setting])
            row.test_accuracy = self.harness.test_accuracy(target, task, test_set(task), row.prompt)
            _append_row(self.results / TRANSFER_CSV, row)
            logger.info("%s/%d/%s at %d on %s: %r test %.1f%%", row.setting, row.seed, row.method, row.budget, target, row.prompt, 100 * row.test_accuracy)
            out.append(row)
        return out

    def test_accuracy(self, setting: str, seed: int, prompt: str) -> float:
        """``prompt``'s accuracy on the setting's test set (AG News: its fixed subset): the score a
        row of the CSVs has for it already (a stalled run's next stage keeps its prompt; a test
        pass costs minutes, and the harness's test cache stays on the machine that made it),
        else scored and cached. The test set is the same for every split seed."""
        for row in (*self.finished().values(), *self.selection_checks().values()):
            if row.setting == setting and row.prompt == prompt:
                return row.test_accuracy
        task_name, template = setting.split("/")
        task = self.harness.task(task_name, seed, template)
        return self.harness.test_accuracy(self.target, task, test_set(task), prompt)

    def fixed_rows(self) -> dict[str, dict[str, float]]:
        """Setting -> {row label: test accuracy} of :data:`FIXED_CSV`."""
        path = self.results / FIXED_CSV
        rows: dict[str, dict[str, float]] = {}
        if path.exists():
            with path.open(newline="") as handle:
                for row in csv.DictReader(handle):
                    rows.setdefault(row["setting"], {})[row["row"]] = float(row["test_accuracy"])
        return rows

    def score_fixed_rows(self, settings: list[str], seed: int) -> None:
        """The fixed rows of every prompt-first setting in ``settings`` not yet in :data:`FIXED_CSV`
        (the test set is the same for every split seed, so one score each; split ``seed`` only
        supplies the task)."""
        done = self.fixed_rows()
        for setting in settings:
            task_name, template = setting.split("/")
            if template != PROMPT_FIRST:
                continue
            task = self.harness.task(task_name, seed, template)
            for label, prompt_of in FIXED_PROMPTS.items():
                if label not in done.get(setting, {}):
                    prompt = prompt_of(task)
                    accuracy = self.harness.test_accuracy(self.target, task, test_set(task), prompt)
                    _append_dict(self.results / FIXED_CSV, {"setting": setting, "row": label, "prompt": prompt, "test_accuracy": accuracy})
                    logger.info("%s: %s %r test %.1f%%", setting, label, prompt, 100 * accuracy)

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
            _append_row(self.csv_path, result)
            out.append(result)
            # The table and plot after every stage: a study stopped at any point has them up to date.
            self.write_report()

        # A worker keeps its study (models, test prefixes) between stages; named by import path, so
        # Ray ships the cache by reference, not by value (experiments.worker_cache).
        run_one = self.run_stage if ray_address is None else functools.partial(worker_cache.run_cell, "experiments.budget:BudgetStudy", "run_stage", self.spec())
        self.score_fixed_rows(settings, seeds[0])
        run_cells(stages, run_one, record, needs=needs, done=self.finished(), ray_address=ray_address, resources=resources)
        return out

    def write_report(self) -> Path:
        """``budget_curves.csv``, ``budget.png`` and ``budget.md`` from the CSV as it stands;
        returns the table's path."""
        results = self.finished()
        curves = self.collect_curves(results)
        fixed = {**{setting: {"the instruction alone": value} for setting, value in INSTRUCTION_ALONE.items()}, **self.fixed_rows()}
        plot(results, curves, self.results, fixed)
        return report(results, curves, self.selection_checks(), self.results, fixed, self.transfer_checks())

    def collect_curves(self, results: dict[tuple, StageResult]) -> dict[tuple, list[dict]]:
        """Every finished cell's search curve, one row per batch (:data:`CURVE_FIELDS`): read
        again from its run folder where that is on this machine, else kept from
        ``budget_curves.csv`` (run folders do not travel with the repository; the curves do)."""
        path = self.results / CURVES_CSV
        curves: dict[tuple, list[dict]] = {}
        if path.exists():
            with path.open(newline="") as handle:
                for row in csv.DictReader(handle):
                    curves.setdefault((row["setting"], int(row["seed"]), row["method"]), []).append(row)
        for setting, seed, method in sorted({key[:3] for key in results}):
            fresh = run_curve(self.work_dir / cell_name(setting, seed, method))
            if fresh:
                curves[(setting, seed, method)] = [{"setting": setting, "seed": seed, "method": method, **row} for row in fresh]
        _write_csv(path, CURVE_FIELDS, [row for key in sorted(curves) for row in curves[key]])
        return {key: [_parse_curve_row(row) for row in rows] for key, rows in curves.items()}

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
            min_length=VARIABLE_LENGTH.get(template),
            num_prompts=self.num_prompts,
            steps=STEP_CAP * math.ceil(budget / self.num_prompts),
            max_evaluations=budget,
            patience=PATIENCE,
            seed=seed,
            run_name=cell_name(setting, seed, method),
            runs_dir=str(self.work_dir),
            evaluate_test=False,
            **METHODS[method],  # type: ignore[arg-type]
        )

    def run_stage(self, key: tuple[str, int, str, int], finished: dict | None = None) -> StageResult:
        """Train the cell's run up to the key's budget of evaluations (resuming it when it has a
        checkpoint) and score its best-on-dev prompt on test."""
        setting, seed, method, budget = key
        started = time.monotonic()
        config = self.config(setting, seed, method, budget)
        resume = (run_dir(config) / STATE_FILE).is_file()
        earlier = _stage_seconds_so_far(run_dir(config), key, finished if finished is not None else self.finished()) if resume else 0.0
        logger.info("%s/%d/%s: %s to %d evaluations", setting, seed, method, "resuming" if resume else "starting", budget)
        best = train(config, progress_bar=sys.stderr.isatty(), resume=resume).prompt_file
        test_accuracy = self.test_accuracy(setting, seed, best.prompt)
        result = StageResult(
            setting, seed, method, budget,
            int(best.budget["prompt_evaluations"]), int(best.budget["prompts_sampled"]), int(best.budget["steps"]),
            best.prompt, float(best.accuracy["train"]), float(best.accuracy["dev"]), test_accuracy,
            any(c.greedy and c.prompt == best.prompt for c in best.candidates),
            round(earlier + time.monotonic() - started, 1),
            str(best.dtype),
            float(best.perplexity) if best.perplexity is not None else math.nan,
        )
        logger.info(
            "%s/%d/%s at %d: %r dev %.1f%% test %.1f%% (%d evaluations, %.0f s)", setting, seed, method, budget,
            result.prompt, 100 * result.dev_accuracy, 100 * result.test_accuracy, result.evaluations, result.seconds,
        )
        return result


def _stage_seconds_so_far(run: Path, key: tuple[str, int, str, int], finished: dict[tuple, StageResult]) -> float:
    """Search seconds an interrupted session already spent on this stage: the run's seconds in its
    checkpoint less its seconds when the previous stage ended (0 if this stage had not started)."""
    setting, seed, method, budget = key
    state = json.loads((run / STATE_FILE).read_text(encoding="utf-8"))
    earlier = [row for k, row in finished.items() if k[:3] == (setting, seed, method) and k[3] < budget]
    previous_steps = max((row.steps for row in earlier), default=0)
    history = state["selector"]["history"]
    if len(history) <= previous_steps:
        return 0.0
    previous_end = history[previous_steps - 1]["seconds"] if previous_steps else 0.0
    return max(float(state["seconds"]) - previous_end, 0.0)


def cell_name(setting: str, seed: int, method: str) -> str:
    """A cell's run folder name under the work folder, e.g. ``sst-2-paper-13-ppo``."""
    return f"{setting.replace('/', '-')}-{seed}-{method}"


_FROM_CSV = {"int": int, "float": float, "bool": lambda raw: raw == "True", "str": str}
"""How a CSV cell becomes a row dataclass's field, by the field's annotation."""


def _parse(row: dict[str, str], cls: type) -> Any:
    """A ``cls`` row (:class:`StageResult`, :class:`SelectionCheck`) from its CSV row; a column the
    CSV lacks, or leaves empty, takes the field's default (a column added later)."""
    def given(item: Any) -> bool:
        return row.get(item.name) is not None and (row[item.name] != "" or item.default is MISSING)

    return cls(**{item.name: _FROM_CSV[item.type](row[item.name]) for item in fields(cls) if given(item)})


def _write_csv(path: Path, fieldnames: list[str], rows: Any) -> None:
    """Write ``rows`` (dicts) under ``fieldnames`` at once (atomic: another study process may
    read or redraw the same file)."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fieldnames, restval="")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, text.getvalue())


def _append_dict(path: Path, row: dict[str, Any]) -> None:
    """Append ``row`` to a CSV with its keys as the header (written first if the file is new)."""
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def _read_rows(path: Path, cls: type) -> dict[tuple, Any]:
    """The rows of one of the study's CSVs as ``cls`` dataclasses, by their ``key`` ({} before the file exists)."""
    if not path.exists():
        return {}
    with path.open(newline="") as handle:
        rows = [_parse(row, cls) for row in csv.DictReader(handle)]
    return {row.key: row for row in rows}


def _append_row(path: Path, row: Any) -> None:
    """Append one row dataclass to its CSV, with the header if the file is new; a CSV from before
    a column was added is rewritten with it first."""
    names = [f.name for f in fields(row)]
    if path.exists():
        with path.open(newline="") as handle:
            header = next(csv.reader(handle), None)
        if header is not None and header != names:
            with path.open(newline="") as handle:
                _write_csv(path, names, list(csv.DictReader(handle)))
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        if handle.tell() == 0:
            writer.writeheader()
        writer.writerow(asdict(row))


LABELS = {
    "ppo": "PPO", "sql": "soft Q-learning", "random": "random search",
    "ppo-ent": "PPO, entropy bonus 0.01", "ppo-ent02": "PPO, entropy bonus 0.02", "ppo-ent05": "PPO, entropy bonus 0.05",
    "grpo": "GRPO instruction writer", "ape": "APE", "opro": "OPRO",
    "grpo-lr1e3": "GRPO, learning rate 1e-3", "grpo-kl04": "GRPO, KL penalty 0.4", "grpo-opro": "GRPO on OPRO's meta-prompt",
}
COLORS = {
    "ppo": "tab:blue", "sql": "tab:green", "random": "tab:orange",
    "ppo-ent": "tab:purple", "ppo-ent02": "tab:brown", "ppo-ent05": "tab:red",
    "grpo": "tab:cyan", "ape": "tab:olive", "opro": "tab:pink", "grpo-lr1e3": "tab:gray",
    "grpo-kl04": "goldenrod", "grpo-opro": "darkred",
}


def _stages(results: dict[tuple, StageResult], setting: str, method: str, budget: int) -> list[StageResult]:
    return [results[k] for k in sorted(results) if k[0] == setting and k[2] == method and k[3] == budget]


def _settings(results: dict[tuple, Any]) -> list[str]:
    return [s for s in SETTINGS if any(k[0] == s for k in results)] + sorted({k[0] for k in results} - set(SETTINGS))


def _methods(results: dict[tuple, Any]) -> list[str]:
    return [m for m in METHODS if any(k[2] == m for k in results)]


def _table(results: dict[tuple, StageResult], cell: Callable[[list[StageResult]], str], extra: dict[str, dict[str, float]] | None = None) -> list[str]:
    """A setting x method by budget table, ``cell`` formatting each group of stages; ``extra``
    adds a constant row per setting (the instruction alone)."""
    budgets = sorted({k[3] for k in results})
    lines = ["| setting | method | " + " | ".join(f"{b:,}" for b in budgets) + " |", "|---|---|" + "---|" * len(budgets)]
    for setting in _settings(results):
        for method in _methods(results):
            cells = [cell(rows) if (rows := _stages(results, setting, method, b)) else "–" for b in budgets]
            if any(c != "–" for c in cells):
                lines.append(f"| {setting} | {LABELS.get(method, method)} | " + " | ".join(cells) + " |")
        for label, value in (extra or {}).get(setting, {}).items():
            lines.append(f"| {setting} | {label} | " + " | ".join(f"{100 * value:.1f}" for _ in budgets) + " |")
    return lines


def report(
    results: dict[tuple, StageResult], curves: dict[tuple, list[dict]], checks: dict[tuple, SelectionCheck], out: Path,
    fixed: dict[str, dict[str, float]] | None = None, transfers: dict[tuple, TransferCheck] | None = None,
) -> Path:
    """``budget.md`` from the finished stages, the cells' curves and the selection checks."""
    seeds = sorted({k[1] for k in results})
    lines = [
        "# Budget study: RL vs random search at growing numbers of prompt evaluations",
        "",
        "Generated by `make budget` (three `python -m experiments.budget` runs; `--report-only` redraws it",
        "from `budget.csv` and `budget_curves.csv`). Target and policy backbone: smollm2-135m. Test",
        "accuracy of the best-on-dev prompt once each budget of distinct prompt evaluations on train was",
        f"reached, mean (std) over the 16-shot split seeds {', '.join(map(str, seeds))}",
        "(n = seeds with that stage finished). One run per method and seed; each budget resumes the",
        "run of the previous one (where its run folder was lost with a session's machine, the stage",
        "started the run over and its seconds count from the start). `sst-2/instruction` searches",
        "0-5-token prompts inside `Review: {sentence} {prompt}\\nSentiment:` (the instruction alone is in",
        "the search space and is scored first); the others search 5-token prompts in the paper's",
        f"template. A stage ends at its budget, after {STEP_CAP} x budget / 16 batches, or after {PATIENCE} batches in a",
        "row that scored no new prompt (a collapsed policy; stages run before 2026-12-07 had no such",
        "rule and ran to their cap).",
        "",
        "## Test accuracy",
        "",
        *_table(results, lambda rows: f"{_mean_std([r.test_accuracy for r in rows])} n={len(rows)}", fixed),
        "",
        "## Dev accuracy of the same prompts (what selection saw)",
        "",
        *_table(results, lambda rows: _mean_std([r.dev_accuracy for r in rows])),
        "",
        "## Dev minus test: how much selection on 32 dev sentences overfits",
        "",
        *_table(results, lambda rows: _mean_std([r.dev_accuracy - r.test_accuracy for r in rows])),
        "",
        "## Best training reward found (what the search optimises, before selection on dev)",
        "",
        "The highest gap reward on the 16-shot train split of any prompt scored by the end of the stage.",
        "",
        *_table(results, lambda rows: _mean_std([v for row in rows if (v := _at_stage_end(curves, row, "best_train_reward")) is not None], scale=1.0)),
        "",
        *_versus_random_lines(results),
        *_rival_lines(results),
        *_readability_lines(results),
        *(line for rule in SELECTION_RULES for line in _selection_lines(results, checks, rule)),
        *_transfer_lines(results, transfers or {}, fixed or {}),
        "## Distinct prompts scored when the stage ended (seeds that reached the budget)",
        "",
        "A method that stops sampling new prompts ends a stage at the step cap below its budget.",
        "",
        *_table(results, lambda rows: f"{statistics.mean(r.evaluations for r in rows):,.0f} ({sum(r.evaluations >= r.budget for r in rows)}/{len(rows)})"),
    ]
    if (out / "budget.png").exists():
        lines += ["", "![test accuracy, best training reward, new prompts and policy entropy against the budget](budget.png)"]
    entropy = _curve_lines(curves, "entropy")
    if entropy:
        lines += ["", "## Policy entropy (nats per token), mean over seeds", "", *entropy]
    lines += _writer_curve_lines(curves)
    lines += ["", "## Every stage", "", "| cell | budget | prompt | evaluations | steps | greedy | dev | test | seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for key in sorted(results):
        row = results[key]
        lines.append(
            f"| {row.setting}/{row.seed}/{row.method} | {row.budget} | `{row.prompt!r}` | {row.evaluations} | {row.steps} | "
            f"{'yes' if row.greedy else 'no'} | {100 * row.dev_accuracy:.1f} | {100 * row.test_accuracy:.1f} | {row.seconds:.0f} |"
        )
    total = sum(row.seconds for row in results.values())
    lines += ["", f"Total wall time of the stages: {total / 60:.0f} min ({total / 3600:.1f} h).", ""]
    path = out / "budget.md"
    write_atomic(path, "\n".join(lines))
    return path


def _rival_lines(results: dict[tuple, StageResult]) -> list[str]:
    """Each method of :data:`RIVALS` against its rivals: the difference of the mean test accuracies,
    the larger seed std of the pair, and whether the difference exceeds it (split by split, the
    splits both have)."""
    lines = []
    for method, rivals in RIVALS.items():
        for setting in _settings(results):
            for budget in sorted({k[3] for k in results if k[0] == setting and k[2] == method}):
                ours = {r.seed: r.test_accuracy for r in _stages(results, setting, method, budget)}
                for rival in rivals:
                    theirs = {r.seed: r.test_accuracy for r in _stages(results, setting, rival, budget)}
                    seeds = sorted(set(ours) & set(theirs))
                    if not seeds:
                        continue
                    a, b = [100 * ours[s] for s in seeds], [100 * theirs[s] for s in seeds]
                    gap = statistics.mean(a) - statistics.mean(b)
                    spread = max(statistics.stdev(a), statistics.stdev(b)) if len(seeds) > 1 else float("nan")
                    verdict = "n=1: no std" if len(seeds) < 2 else ("**beats**" if gap > spread else ("**worse**" if -gap > spread else "within std"))
                    lines.append(f"| {setting} | {budget:,} | {LABELS.get(method, method)} vs {LABELS.get(rival, rival)} | {len(seeds)} | {gap:+.1f} | {spread:.1f} | {verdict} |")
    if not lines:
        return []
    return [
        "## The instruction writer against APE and OPRO (same splits, same budget)", "",
        "Difference of the mean test accuracies (points) and the larger seed std of the pair (issue 25's bar).", "",
        "| setting | budget | comparison | splits | difference | larger std | verdict |", "|---|---|---|---|---|---|---|", *lines, "",
    ]


def _readability_lines(results: dict[tuple, StageResult]) -> list[str]:
    """The median perplexity, under the untrained policy LM, of the prompts each method chose."""
    rows = []
    for setting in _settings(results):
        for method in _methods(results):
            for budget in sorted({k[3] for k in results if k[0] == setting and k[2] == method}):
                values = [r.perplexity for r in _stages(results, setting, method, budget) if not math.isnan(r.perplexity)]
                if values:
                    rows.append(f"| {setting} | {LABELS.get(method, method)} | {budget:,} | {statistics.median(values):,.1f} | {len(values)} |")
    if not rows:
        return []
    return [
        "## Readability: median perplexity of the chosen prompts under the untrained policy LM", "",
        "| setting | method | budget | median perplexity | n |", "|---|---|---|---|---|", *rows, "",
    ]


BASELINE = "random"
"""The method every other one must beat (issue 13: does RL earn its cost over random search?)."""


def _versus_random_lines(results: dict[tuple, StageResult]) -> list[str]:
    """Each method's test accuracy minus random search's on the same split and budget (paired),
    and whether the difference of the means exceeds both methods' seed std (issue 13's bar)."""
    def cell(rows: list[StageResult]) -> str:
        pairs = [(row, results[base]) for row in rows if (base := (row.setting, row.seed, BASELINE, row.budget)) in results]
        if not pairs:
            return "–"
        ours, theirs = [row.test_accuracy for row, _ in pairs], [base.test_accuracy for _, base in pairs]
        gap = statistics.mean(ours) - statistics.mean(theirs)
        spread = max(statistics.stdev(ours), statistics.stdev(theirs)) if len(pairs) > 1 else float("inf")
        verdict = "**beats**" if gap > spread else ("**worse**" if -gap > spread else "within std")
        return f"{_mean_std([a - b for a, b in zip(ours, theirs)])} {verdict} n={len(pairs)}"

    others = {key: row for key, row in results.items() if key[2] != BASELINE}
    if not any((key[0], key[1], BASELINE, key[3]) in results for key in others):
        return []
    return [
        "## Against random search, split by split",
        "",
        "Test accuracy minus random search's on the same split at the same budget, mean (std) over",
        "the splits both finished. **beats** (or **worse**): the difference of the two means exceeds",
        "the larger of the two methods' seed std; otherwise it is within std.",
        "",
        *_table(others, cell),
        "",
    ]


def _selection_lines(results: dict[tuple, StageResult], checks: dict[tuple, SelectionCheck], rule: str) -> list[str]:
    """One selection-check table (``--check-selection``): test accuracy of the prompt ``rule``
    picks at each checked stage, and its difference to the best-on-dev prompt's."""
    checked = {key: stage for key, stage in results.items() if (*key, rule) in checks}
    if not checked:
        return []
    return [
        f"## Selection by `{rule}` instead of dev alone (`--check-selection`)",
        "",
        f"Test accuracy of the prompt with {SELECTION_RULES[rule][1]}, and in brackets its mean",
        "difference to the best-on-dev prompt's test accuracy (positive: this rule would have picked",
        "better).",
        "",
        *_table(checked, lambda rows: (
            f"{_mean_std([checks[(*r.key, rule)].test_accuracy for r in rows])} "
            f"[{100 * statistics.mean(checks[(*r.key, rule)].test_accuracy - r.test_accuracy for r in rows):+.1f}] n={len(rows)}"
        )),
        "",
    ]


def _transfer_lines(results: dict[tuple, StageResult], transfers: dict[tuple, TransferCheck], fixed: dict[str, dict[str, float]]) -> list[str]:
    """A table per (setting, other target) of ``--transfer``: each method's mean test accuracy on
    the study's target and on the other, its gain over the template alone on each (split by
    split, then the mean), and the share of the gain the other target keeps."""
    lines = []
    for setting, target in sorted({(key[0], key[4]) for key in transfers}):
        alone = transfers.get((setting, 0, TEMPLATE_ALONE, 0, target))
        here_alone = fixed.get(setting, {}).get(TEMPLATE_ALONE)
        if alone is None or here_alone is None:
            continue
        lines += [
            f"## Transfer to {target} (`--transfer {target}`), {setting}",
            "",
            f"Test accuracy of each stage's prompt on the study's target and on {target}, mean over the",
            "splits with both, and the gain over the template alone on each (its share kept on the",
            f"other model: gain there / gain here). The template alone: {100 * here_alone:.1f} here, {100 * alone.test_accuracy:.1f} on {target}.",
            "",
            f"| method | budget | n | test here | test on {target} | gain here | gain there | kept |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for label in FIXED_PROMPTS:
            if label != TEMPLATE_ALONE and (row := transfers.get((setting, 0, label, 0, target))) and label in fixed.get(setting, {}):
                here = fixed[setting][label]
                lines.append(
                    f"| {label} | – | – | {100 * here:.1f} | {100 * row.test_accuracy:.1f} | {100 * (here - here_alone):+.1f} | "
                    f"{100 * (row.test_accuracy - alone.test_accuracy):+.1f} | {_kept(here - here_alone, row.test_accuracy - alone.test_accuracy)} |"
                )
        for method in _methods(results):
            for budget in sorted({key[3] for key in results if key[0] == setting and key[2] == method}):
                pairs = [
                    (stage, transfers[(*key, target)])
                    for key, stage in results.items()
                    if (key[0], key[2], key[3]) == (setting, method, budget) and (*key, target) in transfers
                ]
                if not pairs:
                    continue
                gain_here = statistics.mean(stage.test_accuracy - here_alone for stage, _ in pairs)
                gain_there = statistics.mean(row.test_accuracy - alone.test_accuracy for _, row in pairs)
                lines.append(
                    f"| {LABELS.get(method, method)} | {budget:,} | {len(pairs)} | {_mean_std([s.test_accuracy for s, _ in pairs])} | "
                    f"{_mean_std([r.test_accuracy for _, r in pairs])} | {100 * gain_here:+.1f} | {100 * gain_there:+.1f} | {_kept(gain_here, gain_there)} |"
                )
        lines.append("")
    return lines


def _kept(gain_here: float, gain_there: float) -> str:
    """The share of a gain another model keeps; none to keep when there was no gain here."""
    return f"{100 * gain_there / gain_here:.0f}%" if gain_here > 0 else "no gain here"


def _at_stage_end(curves: dict[tuple, list[dict]], stage: StageResult, column: str) -> float | None:
    """A curve's ``column`` at the last batch of ``stage`` (None without a curve or a value)."""
    rows = [row for row in curves.get(stage.key[:3], []) if row["batch"] <= stage.steps]
    return rows[-1][column] if rows else None


ENTROPY_BATCHES = (2, 5, 10, 20, 40, 80, 160, 320)
"""Batches at which the entropy table (and the writers' curve tables) read each run's curve."""


def _curve_lines(curves: dict[tuple, list[dict]], column: str, methods: Sequence[str] | None = None) -> list[str]:
    """A setting x method table of one curve column at :data:`ENTROPY_BATCHES`: each run's latest
    logged value up to that batch, mean over the runs that got there (``methods``: only those)."""
    at: dict[tuple[str, str, int], list[float]] = {}
    for (setting, _, method), rows in curves.items():
        if methods is not None and method not in methods:
            continue
        logged = [(row["batch"], row[column]) for row in rows if row.get(column) is not None]
        for milestone in ENTROPY_BATCHES:
            before = [value for batch, value in logged if batch <= milestone]
            if before and rows[-1]["batch"] >= milestone:
                at.setdefault((setting, method, milestone), []).append(before[-1])
    if not at:
        return []
    batches = [b for b in ENTROPY_BATCHES if any(key[2] == b for key in at)]
    lines = ["| setting | method | " + " | ".join(f"batch {b}" for b in batches) + " |", "|---|---|" + "---|" * len(batches)]
    for setting in _settings(curves):
        for method in _methods(curves):
            cells = [f"{statistics.mean(values):.2f} n={len(values)}" if (values := at.get((setting, method, b))) else "–" for b in batches]
            if any(c != "–" for c in cells):
                lines.append(f"| {setting} | {LABELS.get(method, method)} | " + " | ".join(cells) + " |")
    return lines


WRITER_CURVES = {
    "new_prompt_reward": "Mean train gap reward of the instructions first scored in that batch",
    "kl": "KL of the GRPO writer to the untrained LM, nats per token (the last epoch of the update)",
    "distinct_in_batch": "Distinct instructions among the batch's 16",
}
"""The per-batch curves issue 25 asks of the instruction writers, with their table titles."""


def _writer_curve_lines(curves: dict[tuple, list[dict]]) -> list[str]:
    """The instruction writers' per-batch curves (:data:`WRITER_CURVES`), a table each."""
    writers = [method for method, settings in METHODS.items() if settings["algo"] in TEXT_METHODS]
    lines = []
    for column, title in WRITER_CURVES.items():
        table = _curve_lines(curves, column, writers)
        if table:
            lines += ["", f"## Instruction writers: {title}, mean over seeds", "", *table]
    return lines


def plot(results: dict[tuple, StageResult], curves: dict[tuple, list[dict]], out: Path, fixed: dict[str, dict[str, float]] | None = None) -> Path | None:
    """``budget.png``, one column per setting. Rows: test accuracy against evaluations (log axis),
    mean over seeds and the min-max band; the best training reward found against evaluations, one
    line per run (what the search optimises); distinct prompts scored against prompts sampled
    (random search draws new prompts all the time; a policy that has stopped exploring goes flat);
    the RL policies' entropy per batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import NullFormatter

    settings = _settings(results)
    if not settings:
        return None
    figure, axes = plt.subplots(4, len(settings), figsize=(5 * len(settings), 14.5), squeeze=False)
    for column, setting in enumerate(settings):
        accuracy, objective, exploration, entropy = axes[:, column]
        for method in _methods(results):
            color = COLORS.get(method)
            budgets = sorted({k[3] for k in results if k[0] == setting and k[2] == method})
            if budgets:
                by_budget = [np.array([100 * r.test_accuracy for r in _stages(results, setting, method, b)]) for b in budgets]
                sizes = [len(v) for v in by_budget]
                n = str(sizes[0]) if len(set(sizes)) == 1 else "/".join(map(str, sizes))  # seeds per budget where they differ
                accuracy.plot(budgets, [v.mean() for v in by_budget], "o-", color=color, label=f"{LABELS.get(method, method)} (n={n})")
                accuracy.fill_between(budgets, [v.min() for v in by_budget], [v.max() for v in by_budget], color=color, alpha=0.15)
            runs = [curves[k] for k in sorted(curves) if k[0] == setting and k[2] == method]
            for i, rows in enumerate(runs):
                label = LABELS.get(method, method) if i == 0 else None
                best = [(r["evaluations"], r["best_train_reward"]) for r in rows if r["best_train_reward"] is not None]
                if best:
                    objective.step(*zip(*best), where="post", color=color, alpha=0.7, label=label)
                exploration.plot([r["prompts_sampled"] for r in rows], [r["evaluations"] for r in rows], color=color, alpha=0.7, label=label)
                points = [(r["batch"], r["entropy"]) for r in rows if r["entropy"] is not None]
                if points:
                    entropy.plot(*zip(*points), color=color, alpha=0.7, label=label)
        for (label, value), style in zip((fixed or {}).get(setting, {}).items(), ("--", ":")):
            accuracy.axhline(100 * value, color="gray", linestyle=style, label=label)
        accuracy.set(xscale="log", title=setting, xlabel="prompt evaluations on train (log)", ylabel="test accuracy of the best-on-dev prompt (%)")
        objective.set(xscale="log", xlabel="prompt evaluations on train (log)", ylabel="best training reward found (gap reward)")
        exploration.set(xlabel="prompts sampled", ylabel="distinct prompts scored (evaluations)")
        entropy.set(xlabel="batch (16 prompts)", ylabel="policy entropy (nats per token; writers: -log p of their samples)")
        for axis in (accuracy, objective):
            axis.xaxis.set_minor_formatter(NullFormatter())  # a short log range labels its minor ticks on top of each other
        for axis in (accuracy, objective, exploration, entropy):
            axis.grid(alpha=0.3)
            if axis.get_legend_handles_labels()[0]:
                axis.legend(fontsize=7, loc="best")
    figure.tight_layout()
    path, image = out / "budget.png", io.BytesIO()
    figure.savefig(image, format="png", dpi=110)
    plt.close(figure)
    write_atomic(path, image.getvalue())
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.budget", description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), help=f"task/template pairs (default: {' '.join(SETTINGS)})")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=list(METHODS), help=f"default: {' '.join(DEFAULT_METHODS)}")
    parser.add_argument("--budgets", nargs="+", type=int, default=list(BUDGETS), help="distinct prompt evaluations (default: 320 1280 5120)")
    parser.add_argument("--target", default="smollm2-135m")
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data/16-shot"))
    parser.add_argument("--work-dir", type=Path, default=Path("runs/budget"))
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--report-only", action="store_true", help="redraw the table and plot from the CSVs (no model)")
    parser.add_argument(
        "--check-selection", action="store_true",
        help="score on test the prompt each other selection rule picks at each finished stage (of --settings; run folders needed), then redraw",
    )
    parser.add_argument(
        "--transfer", metavar="TARGET",
        help="score on test with TARGET (e.g. gemma3-270m) every finished stage's prompt of --settings and the fixed rows, then redraw",
    )
    add_ray_arguments(parser)
    args = parser.parse_args(argv)
    for setting in args.settings:
        task, _, template = setting.partition("/")
        if task not in TASKS or template not in ("paper", "instruction", PROMPT_FIRST):
            parser.error(f"setting '{setting}' is not TASK/TEMPLATE with TASK in {', '.join(TASKS)} and TEMPLATE paper, instruction or {PROMPT_FIRST}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("rlprompt").setLevel(logging.INFO)
    logging.getLogger("tensorboard").setLevel(logging.WARNING)  # it logs every event file it reads
    study = BudgetStudy(args.data_root, args.work_dir, args.results, args.target)
    args.results.mkdir(parents=True, exist_ok=True)
    if args.check_selection:
        study.check_selection(args.settings)
    elif args.transfer:
        study.transfer(args.transfer, args.settings)
    elif not args.report_only:
        resources = Resources(args.cpus_per_cell, args.gpus_per_cell)
        study.run(args.settings, args.seeds, args.methods, args.budgets, ray_address=args.ray, resources=resources)
    print(study.write_report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
