"""The few-shot experiment harness, end to end on a tiny model and the built-in demo data."""

from __future__ import annotations

import csv
import json

import pytest

from experiments import fewshot


@pytest.fixture
def experiment(tmp_path, demo_split_root) -> fewshot.Experiment:
    return fewshot.Experiment(demo_split_root, tmp_path / "work", tmp_path / "results", budget=8, num_prompts=4)


def test_runs_every_cell_once_with_equal_budgets_and_writes_the_report(experiment, tiny_llama_dir) -> None:
    target = str(tiny_llama_dir)
    cells = fewshot.plan([target], ["sst-2"], [1], {})
    assert [c[3:] for c in cells] == [
        ("paper", "empty"), ("paper", "manual"), ("paper", "rl"), ("paper", "random"), ("paper", "sql"),
        ("instruction", "empty"), ("instruction", "rl"), ("instruction", "random"), ("instruction", "sql"),
    ]
    assert len(experiment.run(cells)) == 9
    assert experiment.run(cells) == [], "finished cells are skipped on a re-run"

    results = experiment.finished()
    for template in ("paper", "instruction"):
        rl = results[(target, "sst-2", 1, template, "rl")]
        random = results[(target, "sst-2", 1, template, "random")]
        assert 8 <= rl.prompt_evaluations < 8 + 4
        assert rl.prompt_evaluations <= random.prompt_evaluations < rl.prompt_evaluations + 4
        assert rl.run_dir and (experiment.work_dir / rl.run_dir / "history.json").is_file()
        sql = results[(target, "sst-2", 1, template, "sql")]
        assert 8 <= sql.prompt_evaluations < 8 + 4
        assert json.loads((experiment.work_dir / sql.run_dir / "config.json").read_text())["algo"] == "sql"
        assert isinstance(rl.greedy, bool) and isinstance(sql.greedy, bool) and random.greedy is None
    empty = results[(target, "sst-2", 1, "paper", "empty")]
    assert empty.prompt == "" and empty.test_examples == 240 and empty.prompt_evaluations == 0
    assert results[(target, "sst-2", 1, "paper", "manual")].prompt == "It was"

    curves = experiment.curves()
    rl_cell = fewshot.cell_id((target, "sst-2", 1, "paper", "rl"))
    assert [int(row["evaluations"]) for row in curves if row["cell"] == rl_cell][-1] == results[(target, "sst-2", 1, "paper", "rl")].prompt_evaluations

    fewshot.plot_curves(results, curves, experiment.results)
    markdown = fewshot.report(results, curves, experiment.results, 8).read_text()
    plot = fewshot.curves_path(experiment.results, target)
    assert plot.is_file() and f"]({plot.name})" in markdown
    rl_test = results[(target, "sst-2", 1, "paper", "rl")].test_accuracy
    assert f"| RL (PPO), paper template | {100 * rl_test:.1f} (0.0) |" in markdown
    sql_test = results[(target, "sst-2", 1, "paper", "sql")].test_accuracy
    assert f"| RL (soft Q-learning), paper template | {100 * sql_test:.1f} (0.0) |" in markdown
    assert "| RLPrompt | 92.5 | 80.2 | 41.4 |" in markdown


def test_a_crash_mid_cell_loses_only_that_cell(experiment, tiny_llama_dir, monkeypatch) -> None:
    target = str(tiny_llama_dir)
    cells = fewshot.plan([target], ["sst-2"], [1], {})[:3]
    original = experiment.run_cell

    def crash_on_rl(key, done):
        if key[4] == "rl":
            raise KeyboardInterrupt
        return original(key, done)

    monkeypatch.setattr(experiment, "run_cell", crash_on_rl)
    with pytest.raises(KeyboardInterrupt):
        experiment.run(cells)
    with experiment.csv_path.open() as handle:
        assert [row["method"] for row in csv.DictReader(handle)] == ["empty", "manual"]


def test_random_search_needs_the_rl_budget_first(experiment, tiny_llama_dir) -> None:
    with pytest.raises(SystemExit, match=r"needs \[.*, .rl.\)\] first"):
        experiment.run([(str(tiny_llama_dir), "sst-2", 1, "paper", "random")])


def test_check_re_runs_a_cell_and_finds_the_same_prompt(experiment, tiny_llama_dir, capsys) -> None:
    target = str(tiny_llama_dir)
    experiment.run([(target, "sst-2", 1, "paper", "rl")])
    assert fewshot._check(experiment, f"{target}/sst-2/1/paper/rl") == 0
    assert "same prompt" in capsys.readouterr().out


def test_a_workers_second_cell_reuses_the_first_cells_model_and_test_prefixes(tmp_path, demo_split_root, tiny_llama_dir, monkeypatch) -> None:
    """What ``--ray`` ships is pickled by reference, so a worker's cache survives between its cells:
    the second cell loads no model and builds no test prefixes again."""
    import functools

    from experiments import worker_cache
    from rlprompt import models
    from rlprompt.scoring import prefix_cache

    experiment = fewshot.Experiment(demo_split_root, tmp_path / "work", tmp_path / "results", budget=8, num_prompts=4)
    shipped = functools.partial(worker_cache.run_cell, fewshot.WORKER_HARNESS, "timed_cell", experiment.spec())
    cloudpickle = pytest.importorskip("ray.cloudpickle", reason="cloudpickle comes with Ray, an optional extra")
    in_worker = cloudpickle.loads(cloudpickle.dumps(shipped))
    assert in_worker.func is worker_cache.run_cell, "shipped by reference: the worker's own module and its cache"

    loads, prefix_builds = [], []
    original_load, original_compute = models.load_model, prefix_cache.PrefixState.compute
    monkeypatch.setattr(models, "load_model", lambda *a, **k: loads.append(a[0]) or original_load(*a, **k))
    monkeypatch.setattr(prefix_cache.PrefixState, "compute", staticmethod(lambda *a, **k: prefix_builds.append(len(a[1])) or original_compute(*a, **k)))
    monkeypatch.setattr(worker_cache, "_HARNESSES", {})
    target = str(tiny_llama_dir)
    first = in_worker((target, "sst-2", 1, "paper", "empty"), {})
    builds_after_first = list(prefix_builds)
    second = cloudpickle.loads(cloudpickle.dumps(shipped))((target, "sst-2", 1, "paper", "manual"), {})
    assert loads == [target], "the model is loaded once, by the first cell"
    test_size = first.test_examples
    assert test_size in builds_after_first
    assert test_size not in prefix_builds[len(builds_after_first):], "the second cell reuses the test prefixes"
    assert (first.prompt, second.prompt) == ("", "It was") and len(worker_cache._HARNESSES) == 1
