"""The budget study: staged runs that resume, smallest budget first, and its report."""

from __future__ import annotations

import csv
import json

import pytest

from experiments import budget


@pytest.fixture
def study(tmp_path, demo_split_root, tiny_llama_dir) -> budget.BudgetStudy:
    return budget.BudgetStudy(demo_split_root, tmp_path / "work", tmp_path / "results", target=str(tiny_llama_dir), num_prompts=4)


def test_stages_resume_one_run_per_cell_smallest_budget_first(study, tmp_path) -> None:
    settings, methods = ["sst-2/instruction"], ["ppo", "random"]
    study.results.mkdir(parents=True)
    first = study.run(settings, [1], methods, [8])
    assert [(r.setting, r.method, r.budget) for r in first] == [("sst-2/instruction", "ppo", 8), ("sst-2/instruction", "random", 8)]
    assert "| sst-2/instruction | random search |" in (study.results / "budget.md").read_text(), "the table is redrawn after every stage"
    second = study.run(settings, [1], methods, [8, 16])
    assert [(r.method, r.budget) for r in second] == [("ppo", 16), ("random", 16)], "finished stages are skipped"
    results = study.finished()
    for setting in settings:
        for method in methods:
            small, large = results[(setting, 1, method, 8)], results[(setting, 1, method, 16)]
            assert 8 <= small.evaluations < 16 and small.evaluations < large.evaluations
            assert large.steps > small.steps, "the larger budget resumed the same run"
    run = tmp_path / "work" / "sst-2-instruction-1-ppo"
    config = json.loads((run / "config.json").read_text())
    assert config["min_length"] == 0 and config["max_evaluations"] == 16 and config["algo"] == "ppo"
    history = json.loads((run / "history.json").read_text())
    assert [row["batch"] for row in history] == list(range(1, len(history) + 1)), "one history across both stages"
    with study.csv_path.open() as handle:
        assert len(list(csv.DictReader(handle))) == 4

    markdown = study.write_report().read_text()
    assert (study.results / "budget.png").is_file() and "](budget.png)" in markdown
    ppo_small = results[("sst-2/instruction", 1, "ppo", 8)].test_accuracy
    assert f"| sst-2/instruction | PPO | {100 * ppo_small:.1f} (0.0) n=1 |" in markdown
    assert "| sst-2/instruction | the instruction alone | 80.9 | 80.9 |" in markdown


def test_a_bad_setting_is_a_one_line_error(capsys) -> None:
    with pytest.raises(SystemExit):
        budget.main(["--settings", "sst-2/fancy", "--report-only"])
    assert "setting 'sst-2/fancy' is not TASK/TEMPLATE" in capsys.readouterr().err
