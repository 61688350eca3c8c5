"""``rlprompt train --resume``: a run killed with SIGKILL continues from its checkpoint and never
re-scores a prompt its reward cache already holds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from rlprompt.artifact import PromptFile
from rlprompt.errors import RLPromptError
from rlprompt.scoring.local import Scorer
from rlprompt.tasks import load_task
from rlprompt.train import STATE_FILE, resume_config, train
from tests.rlprompt.test_cli import assert_bad_input, cli_command, cli_env, run_cli


def _kill_after(command: list[str], state: Path, batches: int, timeout: float = 240.0) -> dict:
    """Run ``command`` until its checkpoint records ``batches`` batches, then SIGKILL it."""
    process = subprocess.Popen(command, cwd=state.parent.parent.parent, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if state.exists():
                seen = json.loads(state.read_text(encoding="utf-8"))
                if seen["selector"]["batches"] >= batches:
                    break
            assert process.poll() is None, f"the run ended before it was killed: {process.stderr.read().decode()}"
            time.sleep(0.05)
        else:
            pytest.fail(f"no checkpoint with {batches} batches within {timeout} s")
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    return json.loads(state.read_text(encoding="utf-8"))


def record_train_scoring(monkeypatch) -> list[str]:
    """Every prompt the target LM scores on the demo task's train set from now on (a list that grows)."""
    train_sentences = [example.text for example in load_task("demo").train]
    on_train: list[str] = []
    original = Scorer.class_logits

    def recording(self, prompts, sentences):
        if list(sentences) == train_sentences:
            on_train.extend(prompts)
        return original(self, prompts, sentences)

    monkeypatch.setattr(Scorer, "class_logits", recording)
    return on_train


def test_resume_after_sigkill_skips_scored_prompts(tiny_llama_dir, tmp_path, monkeypatch) -> None:
    run = tmp_path / "runs" / "killed"
    command = cli_command(
        "train", "--target-lm", tiny_llama_dir, "--steps", "500", "--num-prompts", "4", "--prompt-length", "2",
        "--adapter-hidden", "16", "--runs-dir", tmp_path / "runs", "--run-name", "killed", "--no-progress", "--seed", "3",
    )
    state = _kill_after(command, run / STATE_FILE, batches=3)
    done = state["selector"]["batches"]
    scored = set(state["reward"]["scores"])
    assert done >= 3 and len(scored) == state["reward"]["lookups"] - state["reward"]["hits"] > 0
    assert (run / "policy.safetensors").is_file() and not (run / "prompt.json").with_suffix(".tmp").exists()

    # Resume in this process, recording every prompt the target LM scores on the train set.
    on_train = record_train_scoring(monkeypatch)
    config = resume_config(run, steps=done + 4)
    assert config.seed == 3 and config.num_prompts == 4 and config.runs_dir == str(run.parent)
    result = train(config, progress_bar=False, resume=True)

    assert on_train and not set(on_train) & scored, "a prompt in the reward cache was scored again"
    history = json.loads((run / "history.json").read_text(encoding="utf-8"))
    assert [row["batch"] for row in history] == list(range(1, done + 5)), "the history goes on where it stopped"
    assert result.prompt_file.budget["steps"] == done + 4
    assert result.prompt_file.budget["prompts_sampled"] == 4 * (done + 4)
    assert result.prompt_file.budget["prompt_evaluations"] == len(scored) + len(set(on_train))
    fresh = train(replace(config, run_name="fresh", steps=2), progress_bar=False)
    assert set(PromptFile.load(result.path).to_dict()) == set(fresh.prompt_file.to_dict())
    assert set(json.loads(result.path.read_text())["candidates"][0]) == set(json.loads(fresh.path.read_text())["candidates"][0])


def test_resume_errors_are_one_line(tiny_llama_dir, tmp_path) -> None:
    assert_bad_input(run_cli("train", "--resume", tmp_path / "nothing", cwd=tmp_path), "cannot resume", "config.json does not exist")
    assert_bad_input(
        run_cli("train", "--resume", tmp_path, "--seed", "2", cwd=tmp_path),
        "--resume continues a run with its own settings; drop --seed (only --steps may change)",
    )
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text(json.dumps({"target_lm": str(tiny_llama_dir), "steps": 2}), encoding="utf-8")
    with pytest.raises(RLPromptError, match="cannot resume: .*state.json does not exist"):
        train(resume_config(tmp_path / "r"), progress_bar=False, resume=True)
