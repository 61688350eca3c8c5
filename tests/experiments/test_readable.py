"""The readable-prompts experiment, end to end on two tiny models and the built-in demo data."""

from __future__ import annotations

import shutil
from pathlib import Path

from experiments import fewshot, readable

DEMO = Path(__file__).resolve().parents[2] / "rlprompt" / "data" / "demo_sentiment"


def test_learns_every_setting_scores_it_on_the_other_model_and_reports(tmp_path, tiny_llama_dir, tiny_gpt2_dir) -> None:
    split = tmp_path / "data" / "sst-2" / "16-1"
    split.mkdir(parents=True)
    for name in ("train", "dev", "test"):
        shutil.copy(DEMO / f"{name}.tsv", split / f"{name}.tsv")
    source, other = str(tiny_llama_dir), str(tiny_gpt2_dir)
    results_dir = tmp_path / "results"
    first = fewshot.Experiment(tmp_path / "data", tmp_path / "work", results_dir, budget=8, num_prompts=4)
    first.run([(source, "sst-2", 1, "paper", "rl")])
    experiment = fewshot.Experiment(
        tmp_path / "data", tmp_path / "work", results_dir, budget=8, num_prompts=4, name="readable", shared=[first.csv_path]
    )
    ran = experiment.run(readable.plan([1], source, other))
    plain_runs = [cell.method for cell in ran if cell.target == source and cell.template == "paper"]
    assert "rl" not in plain_runs, "the few-shot experiment's cell is reused"
    assert (results_dir / "readable.csv").is_file()
    results = experiment.finished()

    assert {key[3] for key in results} == {"paper", "paper+calibrated"}
    calibrated = results[(source, "sst-2", 1, "paper+calibrated", "rl-fluency")]
    assert '"calibration": "train-mean"' in (experiment.work_dir / calibrated.run_dir / "config.json").read_text()
    assert results[(other, "sst-2", 1, "paper+calibrated", f"rl-fluency@{source}")].prompt == calibrated.prompt
    learned = {method: results[(source, "sst-2", 1, "paper", method)] for method in readable.SETTINGS}
    for method, cell in learned.items():
        moved = results[(other, "sst-2", 1, "paper", f"{method}@{source}")]
        assert moved.prompt == cell.prompt and moved.perplexity == cell.perplexity > 1.0
    configs = {m: (experiment.work_dir / c.run_dir / "config.json").read_text() for m, c in learned.items()}
    assert '"vocabulary": "all"' in configs["rl-all"] and '"fluency_weight": 5.0' in configs["rl-all-fluency"]
    assert '"vocabulary": "words"' in configs["rl"] and '"fluency_weight": 0.0' in configs["rl"]

    markdown = readable.report(results, [1], experiment.results, 8, source, other).read_text()
    assert (experiment.results / "readable_transfer.png").is_file()
    assert (experiment.results / "readable_transfer_calibrated.png").is_file()
    assert (experiment.results / "readable_tradeoff.png").read_bytes()[:4] == b"\x89PNG"
    words = learned["rl"]
    empty = results[(source, "sst-2", 1, "paper", "empty")]
    assert f"| plain | words | {words.perplexity:,.0f} | {100 * words.test_accuracy:.1f} (0.0) |" in markdown
    assert f"| plain | words | 1 | `{words.prompt!r}` |" in markdown
    assert f"- plain: {source} {100 * empty.test_accuracy:.1f} (0.0)" in markdown
    assert f"| calibrated | words + fluency | 1 | `{calibrated.prompt!r}` |" in markdown
