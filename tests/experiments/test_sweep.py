"""Cells on Ray: the same CSV rows as a serial run (skips where Ray is not installed)."""

from __future__ import annotations

import csv

import pytest

from experiments import fewshot
from experiments.sweep import Resources, run_cells


def test_serial_cells_wait_for_what_they_need() -> None:
    order: list[str] = []
    run_cells(["a", "b"], lambda key, finished: order.append(key) or key.upper(), lambda key, result: None, needs=lambda key: ["a"] if key == "b" else [])
    assert order == ["a", "b"]
    with pytest.raises(SystemExit, match=r"cell b needs \['c'\] first"):
        run_cells(["b"], lambda key, finished: key, lambda key, result: None, needs=lambda key: ["c"])


def _rows(path) -> list[dict]:
    with path.open(newline="") as handle:
        # Wall time differs run to run; everything else must not.
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def test_a_sweep_on_local_ray_with_two_workers_writes_the_serial_rows(tmp_path, demo_split_root, tiny_llama_dir) -> None:
    ray = pytest.importorskip("ray", reason='Ray is an optional extra: pip install "rlprompt[ray]"')
    target = str(tiny_llama_dir)
    # A fixed-prompt cell, an RL cell, and random search, which waits for the RL cell's budget.
    cells = [c for c in fewshot.plan([target], ["sst-2"], [1], {}) if c[3] == "paper" and c[4] in ("empty", "rl", "random")]
    serial = fewshot.Experiment(demo_split_root, tmp_path / "serial", tmp_path / "serial-results", budget=8, num_prompts=4)
    serial.run(cells)
    on_ray = fewshot.Experiment(demo_split_root, tmp_path / "ray", tmp_path / "ray-results", budget=8, num_prompts=4)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
    try:
        ran = on_ray.run(cells, ray_address="local", resources=Resources(num_cpus=1))
    finally:
        ray.shutdown()
    assert len(ran) == len(cells) == 3
    serial_rows = sorted(_rows(serial.csv_path), key=lambda row: row["method"])
    ray_rows = sorted(_rows(on_ray.csv_path), key=lambda row: row["method"])
    assert ray_rows == serial_rows
    assert on_ray.run(cells, ray_address="local") == [], "finished cells are skipped, as in a serial run"
