"""The budget study: staged runs that resume, smallest budget first, and its report."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from experiments import budget


@pytest.fixture
def study(tmp_path, demo_split_root, tiny_llama_dir) -> budget.BudgetStudy:
    return budget.BudgetStudy(demo_split_root, tmp_path / "work", tmp_path / "results", target=str(tiny_llama_dir), num_prompts=4)


def test_stages_resume_one_run_per_cell_smallest_budget_first(study, tmp_path) -> None:
    settings, methods = ["sst-2/instruction"], ["ppo", "random"]
    study.results.mkdir(parents=True)
    # Budgets of 4-5 and 8-9 batches: stable-baselines3 logs PPO's entropy from the second batch on.
    first = study.run(settings, [1], methods, [16])
    assert [(r.setting, r.method, r.budget) for r in first] == [("sst-2/instruction", "ppo", 16), ("sst-2/instruction", "random", 16)]
    assert "| sst-2/instruction | random search |" in (study.results / "budget.md").read_text(), "the table is redrawn after every stage"
    second = study.run(settings, [1], methods, [16, 32])
    assert [(r.method, r.budget) for r in second] == [("ppo", 32), ("random", 32)], "finished stages are skipped"
    results = study.finished()
    for setting in settings:
        for method in methods:
            small, large = results[(setting, 1, method, 16)], results[(setting, 1, method, 32)]
            assert 16 <= small.evaluations < 32 and small.evaluations < large.evaluations
            assert large.steps > small.steps, "the larger budget resumed the same run"
    run = tmp_path / "work" / "sst-2-instruction-1-ppo"
    config = json.loads((run / "config.json").read_text())
    assert config["min_length"] == 0 and config["max_evaluations"] == 32 and config["algo"] == "ppo"
    history = json.loads((run / "history.json").read_text())
    assert [row["batch"] for row in history] == list(range(1, len(history) + 1)), "one history across both stages"
    with study.csv_path.open() as handle:
        assert len(list(csv.DictReader(handle))) == 4

    rows = list(csv.DictReader(study.csv_path.open()))
    prompt_file = json.loads((run / "prompt.json").read_text())
    assert {row["dtype"] for row in rows} == {prompt_file["dtype"]}, "each stage records the dtype its scores were computed in"

    markdown = study.write_report().read_text()
    assert (study.results / "budget.png").is_file() and "](budget.png)" in markdown
    curves = list(csv.DictReader((study.results / budget.CURVES_CSV).open()))
    ppo_curve = [row for row in curves if row["method"] == "ppo"]
    assert [int(row["batch"]) for row in ppo_curve] == [row["batch"] for row in history], "one curve row per batch of the run"
    assert [int(row["evaluations"]) for row in ppo_curve] == [row["evaluations"] for row in history]
    assert any(row["entropy"] for row in ppo_curve), "PPO's policy entropy comes from its TensorBoard log"
    assert all(float(row["entropy"]) > 0 for row in ppo_curve if row["entropy"])
    assert not any(row["entropy"] for row in curves if row["method"] == "random"), "random search has no policy"
    state = json.loads((run / "state.json").read_text())
    rewards = [score["reward"] for score in state["reward"]["scores"].values()]
    best = [float(row["best_train_reward"]) for row in ppo_curve]
    assert best == sorted(best) and best[-1] == pytest.approx(max(rewards), abs=1e-4), "the best training reward so far"
    first = int(ppo_curve[0]["evaluations"])
    assert float(ppo_curve[0]["new_prompt_reward"]) == pytest.approx(sum(rewards[:first]) / first, abs=1e-4)
    assert "## Best training reward found" in markdown
    assert "## Policy entropy (nats per token)" in markdown and "| sst-2/instruction | PPO | " in markdown.split("## Policy entropy")[1]
    ppo_small = results[("sst-2/instruction", 1, "ppo", 16)].test_accuracy
    assert f"| sst-2/instruction | PPO | {100 * ppo_small:.1f} (0.0) n=1 |" in markdown
    assert "| sst-2/instruction | the instruction alone | 80.9 | 80.9 |" in markdown


def test_a_bad_setting_is_a_one_line_error(capsys) -> None:
    with pytest.raises(SystemExit):
        budget.main(["--settings", "sst-2/fancy", "--report-only"])
    assert "setting 'sst-2/fancy' is not TASK/TEMPLATE" in capsys.readouterr().err


def test_curves_outlive_the_run_folders(study) -> None:
    """Run folders stay on the machine that ran them; the committed curves CSV keeps each cell's
    curve, so a report redrawn elsewhere still has it."""
    study.results.mkdir(parents=True)
    study.run(["sst-2/paper"], [1], ["random"], [8])
    study.write_report()
    before = (study.results / budget.CURVES_CSV).read_text()
    shutil.rmtree(study.work_dir)
    study.write_report()
    assert (study.results / budget.CURVES_CSV).read_text() == before
    assert before.count("\nsst-2/paper,1,random,") >= 2


def test_method_settings_name_the_run_and_change_the_config(study) -> None:
    config = study.config("sst-2/paper", 1, "ppo-ent", 320)
    assert (config.algo, config.ent_coef, config.run_name) == ("ppo", 0.01, "sst-2-paper-1-ppo-ent")
    assert config.max_evaluations == 320 and config.steps == 3 * 320 // 4 and config.min_length is None
    assert config.patience == 40, "a collapsed policy ends its stage"
    assert study.config("sst-2/instruction", 1, "sql", 320).algo == "sql"


def test_an_interrupted_stage_counts_its_earlier_sessions(tmp_path) -> None:
    """The stage's seconds are the checkpoint's run seconds less those at the end of the previous
    stage; a stage that had not started yet has none."""
    history = [{"batch": b, "seconds": float(10 * b)} for b in range(1, 6)]
    (tmp_path / "state.json").write_text(json.dumps({"seconds": 57.0, "selector": {"history": history}}))
    previous = budget.StageResult("sst-2/paper", 1, "ppo", 8, 9, 32, 2, "a b", 0.5, 0.5, 0.5, False, 1.0, "fp32")
    key = ("sst-2/paper", 1, "ppo", 16)
    assert budget._stage_seconds_so_far(tmp_path, key, {previous.key: previous}) == 57.0 - 20.0
    assert budget._stage_seconds_so_far(tmp_path, ("sst-2/paper", 1, "ppo", 8), {}) == 57.0
    stopped_at_the_previous_stage = {**previous.__dict__, "steps": 5}
    assert budget._stage_seconds_so_far(tmp_path, key, {previous.key: budget.StageResult(**stopped_at_the_previous_stage)}) == 0.0


def test_a_curves_csv_without_the_later_columns_still_reads() -> None:
    row = {"batch": "3", "prompts_sampled": "48", "evaluations": "40", "best_dev_accuracy": "0.5", "entropy": ""}
    parsed = budget._parse_curve_row(row)
    assert parsed == {
        "batch": 3, "prompts_sampled": 48, "evaluations": 40, "best_dev_accuracy": 0.5,
        "best_train_reward": None, "new_prompt_reward": None, "entropy": None, "kl": None, "distinct_in_batch": None,
    }


def test_the_selection_check_scores_the_prompts_other_rules_pick(study) -> None:
    """``--check-selection``: per finished stage, the prompt with the highest training reward among
    the evaluations of that stage, and at the final stage the candidate best on train and dev
    together, are scored on test, once, and the report compares them."""
    study.results.mkdir(parents=True)
    study.run(["sst-2/paper"], [1], ["random"], [8, 16])
    checks = study.check_selection()
    assert [(c.budget, c.rule) for c in checks] == [(8, "train-reward"), (16, "train-reward"), (16, "train+dev")]
    run = study.work_dir / "sst-2-paper-1-random"
    scores = list(json.loads((run / "state.json").read_text())["reward"]["scores"].items())
    for check in checks[:2]:
        evaluations = study.finished()[check.key[:4]].evaluations
        prompt, score = max(scores[:evaluations], key=lambda item: item[1]["reward"])
        assert (check.prompt, check.train_reward) == (prompt, round(score["reward"], 4))
        assert 0.0 <= check.test_accuracy <= 1.0
    candidates = json.loads((run / "prompt.json").read_text())["candidates"]
    pooled = max(c["train_accuracy"] + c["dev_accuracy"] for c in candidates)
    assert checks[2].prompt in {c["prompt"] for c in candidates if c["train_accuracy"] + c["dev_accuracy"] == pooled}
    assert study.check_selection() == [], "a checked stage is not scored again"
    assert set(study.selection_checks()) == {c.key for c in checks}
    markdown = study.write_report().read_text()
    assert "## Selection by `train-reward` instead of dev alone" in markdown
    assert "## Selection by `train+dev` instead of dev alone" in markdown
    gap = 100 * (checks[0].test_accuracy - study.finished()[checks[0].key[:4]].test_accuracy)
    assert f"[{gap:+.1f}] n=1" in markdown


def test_a_prompt_scored_on_test_in_the_csvs_is_not_scored_again(study, monkeypatch) -> None:
    """A stalled run's next stage keeps its prompt: its test score comes from the CSV, not from
    another test pass (minutes; the harness's cache stays on the machine that made it)."""
    study.results.mkdir(parents=True)
    (stage,) = study.run(["sst-2/paper"], [1], ["random"], [8])

    def test_pass(*args, **kwargs):
        raise AssertionError("scored on test again")

    monkeypatch.setattr(study.harness, "test_accuracy", test_pass)
    assert study.test_accuracy("sst-2/paper", 2, stage.prompt) == stage.test_accuracy, "the test set is the same for every split"
    with pytest.raises(AssertionError, match="scored on test again"):
        study.test_accuracy("sst-2/instruction", 1, stage.prompt)


def test_a_selection_csv_from_before_the_rule_column_reads_and_grows_it(tmp_path) -> None:
    path = tmp_path / budget.SELECTION_CSV
    path.write_text("setting,seed,method,budget,prompt,train_reward,test_accuracy\nsst-2/instruction,13,ppo,320,,62.0,0.8\n")
    row = budget.SelectionCheck("sst-2/instruction", 13, "ppo", 320, "a b", 60.0, 0.75, "train+dev")
    budget._append_row(path, row)
    with path.open(newline="") as handle:
        rows = [budget._parse(line, budget.SelectionCheck) for line in csv.DictReader(handle)]
    assert rows == [budget.SelectionCheck("sst-2/instruction", 13, "ppo", 320, "", 62.0, 0.8, "train-reward"), row]


def test_methods_are_compared_with_random_search_split_by_split() -> None:
    def stage(seed: int, method: str, test: float) -> budget.StageResult:
        return budget.StageResult("sst-2/paper", seed, method, 320, 320, 320, 20, "p", 0.5, 0.5, test, False, 1.0, "fp32")

    rows = [stage(13, "random", 0.50), stage(21, "random", 0.60), stage(42, "random", 0.55),
            stage(13, "ppo", 0.70), stage(21, "ppo", 0.72), stage(42, "ppo", 0.74),
            stage(13, "sql", 0.52), stage(21, "sql", 0.58), stage(42, "sql", 0.56),
            stage(13, "ppo-ent", 0.40)]
    lines = budget._versus_random_lines({row.key: row for row in rows})
    table = {line.split(" | ")[1]: line.split(" | ")[2].rstrip(" |") for line in lines if line.startswith("| sst-2/paper")}
    # PPO: paired differences 20, 12, 19 points; the means differ by 17, more than either std (5.0, 2.0).
    assert table["PPO"] == "17.0 (4.4) **beats** n=3"
    assert table["soft Q-learning"] == "0.3 (2.1) within std n=3"
    assert table["PPO, entropy bonus 0.01"] == "-10.0 (0.0) within std n=1", "one split has no std to beat"
    assert not any("random search |" in line for line in lines), "random search is the baseline, not a row"
    assert budget._versus_random_lines({row.key: row for row in rows if row.method != "random"}) == []


def test_the_instruction_writer_is_compared_with_ape_and_opro_by_the_larger_std() -> None:
    def stage(seed: int, method: str, test: float, perplexity: float = 10.0) -> budget.StageResult:
        return budget.StageResult("sst-2/prompt-first", seed, method, 1280, 1280, 1280, 80, "p", 0.5, 0.5, test, False, 1.0, "bf16", perplexity)

    rows = [stage(13, "grpo", 0.86), stage(21, "grpo", 0.88, 30.0), stage(42, "grpo", 0.87),
            stage(13, "ape", 0.80), stage(21, "ape", 0.84), stage(42, "ape", 0.82),
            stage(13, "opro", 0.85), stage(21, "opro", 0.89)]
    lines = budget._rival_lines({row.key: row for row in rows})
    table = {line.split(" | ")[2]: line.split(" | ")[3:] for line in lines if line.startswith("| sst-2/prompt-first")}
    # GRPO 87.0 against APE 82.0: +5.0 > max(std 1.0, 2.0); against OPRO on splits 13 and 21: 87.0 vs 87.0.
    assert table["GRPO instruction writer vs APE"] == ["3", "+5.0", "2.0", "**beats** |"]
    assert table["GRPO instruction writer vs OPRO"] == ["2", "+0.0", "2.8", "within std |"]
    readability = budget._readability_lines({row.key: row for row in rows})
    assert "| sst-2/prompt-first | GRPO instruction writer | 1,280 | 10.0 | 3 |" in readability


def test_the_writers_curves_are_tabled_batch_by_batch_mean_over_seeds() -> None:
    def run(method: str, rewards: list[float], kl: list[float | None]) -> list[dict]:
        return [
            {"batch": i + 1, "new_prompt_reward": r, "kl": k, "distinct_in_batch": 16.0, "entropy": 3.0}
            for i, (r, k) in enumerate(zip(rewards, kl))
        ]

    curves = {
        ("sst-2/prompt-first", 13, "grpo"): run("grpo", [50.0, 60.0, 70.0, 80.0, 90.0], [0.0, 0.1, 0.2, 0.3, 0.4]),
        ("sst-2/prompt-first", 21, "grpo"): run("grpo", [40.0, 50.0, 60.0, 70.0, 80.0], [0.0, 0.3, 0.4, 0.5, 0.6]),
        ("sst-2/prompt-first", 13, "ape"): run("ape", [50.0, 50.0, 50.0, 50.0, 50.0], [None] * 5),
        ("sst-2/paper", 13, "ppo"): run("ppo", [1.0] * 5, [None] * 5),
    }
    text = "\n".join(budget._writer_curve_lines(curves))
    reward_table = text.split("## Instruction writers: Mean train gap reward")[1].split("##")[0]
    assert "| sst-2/prompt-first | GRPO instruction writer | 55.00 n=2 | 85.00 n=2 |" in reward_table  # batches 2 and 5
    assert "| sst-2/prompt-first | APE | 50.00 n=1 | 50.00 n=1 |" in reward_table
    assert "PPO" not in text, "token policies are not instruction writers"
    kl_table = text.split("## Instruction writers: KL")[1].split("##")[0]
    assert "| sst-2/prompt-first | GRPO instruction writer | 0.20 n=2 | 0.50 n=2 |" in kl_table and "APE" not in kl_table


def test_the_transfer_scores_each_pick_and_fixed_row_once_on_another_target(study) -> None:
    """``--transfer``: every finished stage's prompt and the fixed rows on another model's test set;
    the report gives each method's gain over the template alone on both models and the share kept.
    Here the other model is the study's own (by another path), so every score must agree."""
    study.results.mkdir(parents=True)
    (stage,) = study.run(["sst-2/prompt-first"], [1], ["random"], [8])
    other = f"{study.target}/"
    rows = study.transfer(other, ["sst-2/prompt-first"])
    assert [(r.method, r.seed, r.budget) for r in rows] == [("the template alone", 0, 0), ("the hand-written instruction", 0, 0), ("random", 1, 8)]
    fixed = study.fixed_rows()["sst-2/prompt-first"]
    assert [r.test_accuracy for r in rows] == [fixed["the template alone"], fixed["the hand-written instruction"], stage.test_accuracy]
    assert study.transfer(other, ["sst-2/prompt-first"]) == [], "a scored prompt is not scored again"
    markdown = study.write_report().read_text()
    assert f"## Transfer to {other} (`--transfer {other}`), sst-2/prompt-first" in markdown
    gain = 100 * (stage.test_accuracy - fixed["the template alone"])
    kept = "100%" if gain > 0 else "no gain here"
    assert f"| {gain:+.1f} | {gain:+.1f} | {kept} |" in markdown.split("## Transfer to")[1]


def test_the_share_of_a_gain_kept() -> None:
    assert budget._kept(0.10, 0.028) == "28%"
    assert budget._kept(0.05, -0.02) == "-40%"
    assert budget._kept(0.0, 0.03) == "no gain here"
