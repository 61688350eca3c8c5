"""The ``rlprompt`` command, run as a subprocess: one-line errors with exit code 2, and the
train -> eval -> export path on the tiny Llama."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlprompt.artifact import PromptFile

TIMEOUT = 120


def cli_command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "rlprompt.cli", *map(str, args)]


def cli_env() -> dict[str, str]:
    """Offline; one torch thread, as the tiny models gain nothing from more and the training run
    shares the CPU with the other tests' subprocesses."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


def run_cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m rlprompt.cli ARGS`` offline, in ``cwd``."""
    return subprocess.run(cli_command(*args), cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT)


def assert_bad_input(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit code 2 and exactly one stderr line, ``rlprompt: error: ...``, containing ``fragments``."""
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rlprompt: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The rows of the last table printed, keyed by their first column."""
    lines = stdout.splitlines()
    rule = max(i for i, line in enumerate(lines) if line.startswith("---"))
    rows = {}
    for line in lines[rule + 1:]:
        if not line.strip():
            break
        rows[line.split()[0]] = line.split()
    return rows


# --- models and bad input ---------------------------------------------------------------------


def test_models_lists_offline_aliases(tmp_path: Path) -> None:
    result = run_cli("models", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    aliases = [line.split()[0] for line in result.stdout.splitlines() if line and not line[0].isspace()]
    assert aliases[:2] == ["smollm2-135m", "gemma3-270m"]
    assert "SmolLM2-135M-Instruct" in result.stdout
    assert "Gemma-3-270M" in result.stdout


def test_unknown_model_names_aliases(tmp_path: Path) -> None:
    result = run_cli("train", "--target-lm", "no-such-model", "--no-progress", cwd=tmp_path)
    assert_bad_input(result, "unknown model 'no-such-model'", "smollm2-135m, gemma3-270m", "offline")


def test_missing_data_folder(tmp_path: Path) -> None:
    result = run_cli("train", "--data", "nowhere", "--no-progress", cwd=tmp_path)
    assert_bad_input(result, "data path 'nowhere' does not exist")


def test_malformed_data_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.tsv").write_text("sentence\tlabel\nGood.\t1\nBroken row\n", encoding="utf-8")
    result = run_cli("train", "--data", data, "--no-progress", cwd=tmp_path)
    assert_bad_input(result, f"{data / 'train.tsv'} line 3: expected 2 columns (sentence, label), found 1")


def test_multi_token_verbalizer(tmp_path: Path, tiny_llama_dir: Path) -> None:
    result = run_cli(
        "train", "--target-lm", tiny_llama_dir, "--verbalizers", " xqzzy", " great", "--no-progress", cwd=tmp_path
    )
    assert_bad_input(result, "verbalizer ' xqzzy' is", "each verbalizer must be a single token")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--prompt-length", "0"], "--prompt-length must be >= 1, got 0"),
        (["--adapter-hidden", "0"], "--adapter-hidden must be >= 1, got 0"),
        (["--learning-rate", "-1"], "--learning-rate must be a positive number, got -1.0"),
        (["--max-batch-tokens", "0"], "--max-batch-tokens must be >= 1, got 0"),
        (["--device", "tpu"], "unknown device 'tpu'; valid: auto, cpu, cuda, cuda:N, mps"),
        (["--vocabulary", "top-0"], "action vocabulary 'top-0': K must be a positive integer, as in top-2000"),
    ],
)
def test_invalid_settings_fail_in_one_line_before_any_model_loads(tmp_path: Path, flags: list[str], message: str) -> None:
    # The target does not exist: reaching the model loader would give another message.
    result = run_cli("train", "--target-lm", str(tmp_path / "no-model.gguf"), *flags, cwd=tmp_path)
    line = assert_bad_input(result)
    assert line == f"rlprompt: error: {message}"


def test_eval_invalid_prompt_file(tmp_path: Path, tiny_llama_dir: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema_version": 1, "task": {"name": "demo"}}), encoding="utf-8")
    result = run_cli("eval", "--prompt", bad, "--target-lm", tiny_llama_dir, cwd=tmp_path)
    line = assert_bad_input(result)
    assert line == f"rlprompt: error: {bad}: missing field 'task.template'"


def test_export_missing_file(tmp_path: Path) -> None:
    result = run_cli("export", "missing.json", cwd=tmp_path)
    line = assert_bad_input(result)
    assert line == "rlprompt: error: prompt file 'missing.json' does not exist"


def test_config_value_of_wrong_type(tmp_path: Path) -> None:
    (tmp_path / "run.toml").write_text('steps = "2"\n', encoding="utf-8")
    result = run_cli("train", "--config", "run.toml", cwd=tmp_path)
    assert_bad_input(result, "steps")


# --- train -> eval -> export on the tiny Llama ------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def training(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One short training run shared by the happy-path tests, started before the first test of
    this module so it runs beside the error-case subprocesses: (process, runs dir)."""
    runs = tmp_path_factory.mktemp("runs")
    args = [
        "train", "--target-lm", tiny_llama_dir, "--steps", "2", "--num-prompts", "4", "--top-k", "3",
        "--runs-dir", runs, "--run-name", "r", "--no-progress",
    ]
    with open(runs / "stdout.txt", "w") as out, open(runs / "stderr.txt", "w") as err:
        process = subprocess.Popen(cli_command(*args), cwd=runs, env=cli_env(), stdout=out, stderr=err, text=True)
    yield process, runs
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def trained(training) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The finished training run: (its result, the runs dir)."""
    process, runs = training
    returncode = process.wait(timeout=TIMEOUT)
    stdout = (runs / "stdout.txt").read_text()
    stderr = (runs / "stderr.txt").read_text()
    return subprocess.CompletedProcess(process.args, returncode, stdout, stderr), runs


def test_train_writes_prompt_file_and_table(trained: tuple[subprocess.CompletedProcess[str], Path], tiny_llama_dir: Path) -> None:
    result, runs = trained
    assert result.returncode == 0, result.stderr
    prompt_file = PromptFile.load(runs / "r" / "prompt.json")
    assert prompt_file.target_lm == str(tiny_llama_dir)
    assert prompt_file.task.name == "demo"
    assert 1 <= len(prompt_file.candidates) <= 4  # the top 3 by training reward, plus the best on dev if it left them
    assert prompt_file.prompt == prompt_file.candidates[0].prompt
    assert prompt_file.budget["steps"] == 2
    assert prompt_file.budget["prompts_sampled"] == 8
    assert 1 <= prompt_file.budget["prompt_evaluations"] <= 8
    assert f"learned prompt: {prompt_file.prompt!r}" in result.stdout
    rows = table_rows(result.stdout)
    assert list(rows) == ["empty", "manual", "learned"]
    header = next(line for line in result.stdout.splitlines() if line.startswith("prompt "))
    assert header.split() == ["prompt", "text", "dev", "acc", "test", "acc"]
    for row in rows.values():
        assert all(cell.endswith("%") for cell in row[-2:])
    assert f"prompt file: {runs / 'r' / 'prompt.json'}" in result.stdout


def test_eval_on_run_folder(trained: tuple[subprocess.CompletedProcess[str], Path], tiny_llama_dir: Path) -> None:
    _, runs = trained
    result = run_cli("eval", "--prompt", runs / "r", "--target-lm", tiny_llama_dir, cwd=runs)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"demo test (240 examples) on {tiny_llama_dir}")
    rows = table_rows(result.stdout)
    assert list(rows) == ["empty", "manual", "learned"]
    assert rows["manual"][1:3] == ["'It", "was'"]
    header = next(line for line in result.stdout.splitlines() if line.startswith("prompt "))
    assert header.split() == ["prompt", "text", "accuracy", "acc[negative]", "acc[positive]"]
    for row in rows.values():
        assert all(cell.endswith("%") for cell in row[-3:])


def test_eval_applies_the_prompt_files_calibration(trained: tuple[subprocess.CompletedProcess[str], Path], tiny_llama_dir: Path, tmp_path: Path) -> None:
    from rlprompt.evaluation import score_prompts
    from rlprompt.models import ModelPool
    from rlprompt.scoring import make_scorer
    from rlprompt.tasks import load_task

    _, runs = trained
    prompt_file = PromptFile.load(runs / "r" / "prompt.json")
    prompt_file.task.calibration = "train-mean"
    prompt_file.save(tmp_path / "calibrated.json")
    result = run_cli("eval", "--prompt", tmp_path / "calibrated.json", "--target-lm", tiny_llama_dir, cwd=runs)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].endswith(", calibration train-mean")
    task = load_task("demo")
    expected = score_prompts(make_scorer(str(tiny_llama_dir), task, "train-mean", models=ModelPool()), [prompt_file.prompt], task.test)[0]
    assert table_rows(result.stdout)["learned"][-3] == f"{100 * expected.accuracy:.1f}%"
    test_only = tmp_path / "test.tsv"
    test_only.write_text("sentence\tlabel\ngood\t1\n", encoding="utf-8")
    result = run_cli("eval", "--prompt", tmp_path / "calibrated.json", "--target-lm", tiny_llama_dir, "--data", test_only, cwd=runs)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("has no train examples; provide a train file")


def test_exported_json_scores_the_same(trained: tuple[subprocess.CompletedProcess[str], Path], tiny_llama_dir: Path, tmp_path: Path) -> None:
    _, runs = trained
    original = PromptFile.load(runs / "r" / "prompt.json")
    result = run_cli("export", runs / "r", "--format", "json", "--top-k", "1", cwd=runs)
    assert result.returncode == 0, result.stderr
    exported = tmp_path / "exported.json"
    exported.write_text(result.stdout, encoding="utf-8")
    assert PromptFile.load(exported).prompt == original.prompt
    result = run_cli("eval", "--prompt", exported, "--target-lm", tiny_llama_dir, cwd=runs)
    assert result.returncode == 0, result.stderr
    assert table_rows(result.stdout)["learned"][-3] == f"{100 * original.accuracy['test']:.1f}%"


def test_export_csv(trained: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, runs = trained
    result = run_cli("export", runs / "r", "--format", "csv", cwd=runs)
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["rank", "prompt", "train_reward", "train_accuracy", "dev_accuracy", "test_accuracy", "perplexity", "target_lm"]
    assert 1 <= len(rows) - 1 <= 4  # the top 3 by training reward, plus the best on dev if it left them
    assert [row[0] for row in rows[1:]] == [str(i) for i in range(1, len(rows))]
    assert rows[1][1] == PromptFile.load(runs / "r" / "prompt.json").prompt


def _env_rows(stdout: str) -> dict[str, str]:
    return {line[:20].strip(): line[20:].strip() for line in stdout.splitlines()}


def test_env_reports_versions_and_what_auto_resolves_to_offline(tmp_path: Path) -> None:
    import torch

    from rlprompt.devices import cpu_has_fast_bf16

    env = {k: v for k, v in cli_env().items() if k not in ("RLPROMPT_DTYPE", "RLPROMPT_DEVICE")}
    result = subprocess.run(cli_command("env"), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    rows = _env_rows(result.stdout)
    assert rows["torch"] == torch.__version__
    assert rows["hugging face hub"] == "offline (HF_HUB_OFFLINE=1)"
    expected_device = "cuda" if torch.cuda.is_available() else "cpu"
    assert rows["--device auto"] == expected_device
    if expected_device == "cpu":
        assert rows["--dtype auto"] == ("bf16" if cpu_has_fast_bf16() else "fp32")
    assert rows["overrides"] == "none (RLPROMPT_DEVICE, RLPROMPT_DTYPE unset)"
    assert {"model smollm2-135m", "model gemma3-270m", "model cache", "cpu bf16 flags", "gymnasium", "stable-baselines3"} <= set(rows)

    forced = subprocess.run(
        cli_command("env"), cwd=tmp_path, env={**env, "RLPROMPT_DTYPE": "fp32", "RLPROMPT_DEVICE": "cpu"},
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    rows = _env_rows(forced.stdout)
    assert (rows["--device auto"], rows["--dtype auto"]) == ("cpu", "fp32")
    assert rows["overrides"] == "RLPROMPT_DEVICE=cpu, RLPROMPT_DTYPE=fp32"


def test_train_help_does_not_import_torch(tmp_path: Path) -> None:
    """Settings are read and checked before anything heavy loads: --help is instant."""
    code = (
        "import sys\nfrom rlprompt.cli import main\ntry:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'transformers', 'stable_baselines3', 'gymnasium') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    from rlprompt.search import SEARCH_METHODS

    assert "--resume RUN" in result.stdout and "{" + ",".join(SEARCH_METHODS) + "}" in result.stdout
    assert result.stdout.splitlines()[-1] == "[]"
