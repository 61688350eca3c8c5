"""End-to-end training on a tiny model: prompt file contents, determinism, Ctrl-C safety."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlprompt.artifact import PromptFile
from rlprompt.config import TrainConfig
from rlprompt.errors import RLPromptError
from rlprompt.train import train


def _config(tiny_llama_dir, tmp_path, **overrides) -> TrainConfig:
    values = dict(
        target_lm=str(tiny_llama_dir), steps=3, num_prompts=4, prompt_length=3, top_k=3, adapter_hidden=64,
        runs_dir=str(tmp_path), run_name="run", seed=7,
    )
    values.update(overrides)
    return TrainConfig(**values)


def test_train_writes_a_complete_prompt_file(tiny_llama_dir, tmp_path) -> None:
    result = train(_config(tiny_llama_dir, tmp_path), progress_bar=False)
    path = tmp_path / "run" / "prompt.json"
    assert result.path == path
    loaded = PromptFile.load(path)
    assert loaded == result.prompt_file
    assert loaded.prompt == loaded.candidates[0].prompt
    assert len(loaded.candidates) in (3, 4), "the top 3 by training reward, plus the best on dev if it left them"
    assert loaded.candidates[0].dev_accuracy == max(c.dev_accuracy for c in loaded.candidates)
    assert loaded.budget["steps"] == 3 and loaded.budget["prompts_sampled"] == 12
    assert 1 <= loaded.budget["prompt_evaluations"] <= 12
    assert set(loaded.accuracy) == {"train", "dev", "test"}
    assert loaded.accuracy["test"] == result.baselines["test"]["learned"].accuracy
    assert loaded.task.template == "{sentence} {prompt} {mask}" and loaded.task.verbalizers == [" terrible", " great"]
    assert len(loaded.token_ids) == 3 and loaded.seed == 7
    assert {"rlprompt", "torch", "transformers", "stable-baselines3", "gymnasium"} <= set(loaded.versions)
    assert set(result.baselines) == {"dev", "test"}
    assert result.baselines["dev"]["manual"].prompt == "It was"
    assert (tmp_path / "run" / "policy.safetensors").is_file()
    assert loaded.perplexity_lm == str(tiny_llama_dir) and loaded.perplexity == loaded.candidates[0].perplexity > 1.0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["seed"] == 7


def test_same_seed_gives_the_same_prompt(tiny_llama_dir, tmp_path) -> None:
    first = train(_config(tiny_llama_dir, tmp_path, run_name="a"), progress_bar=False).prompt_file
    second = train(_config(tiny_llama_dir, tmp_path, run_name="b"), progress_bar=False).prompt_file
    assert first.prompt == second.prompt
    assert [c.prompt for c in first.candidates] == [c.prompt for c in second.candidates]
    third = train(_config(tiny_llama_dir, tmp_path, run_name="c", seed=8), progress_bar=False).prompt_file
    assert [c.prompt for c in third.candidates] != [c.prompt for c in first.candidates]


def test_ctrl_c_keeps_the_best_prompt_so_far(tiny_llama_dir, tmp_path, monkeypatch) -> None:
    from rlprompt.search import sb3

    original = sb3.TopKPromptCallback._on_step
    calls = {"n": 0}

    def interrupt_on_second_batch(self):
        keep_going = original(self)
        if any("prompt" in info for info in self.locals["infos"]):
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
        return keep_going

    monkeypatch.setattr(sb3.TopKPromptCallback, "_on_step", interrupt_on_second_batch)
    result = train(_config(tiny_llama_dir, tmp_path, steps=50), progress_bar=False)
    assert result.interrupted
    saved = PromptFile.load(tmp_path / "run" / "prompt.json")
    assert saved.prompt == result.prompt_file.prompt
    assert saved.budget["prompts_sampled"] == 8
    assert set(result.baselines) == {"dev"}
    assert (tmp_path / "run" / "policy.safetensors").is_file(), "the policy is saved after Ctrl-C too"


@pytest.mark.parametrize("algo", ["ppo", "random"])
def test_training_stops_at_the_evaluation_budget_and_writes_its_history(tiny_llama_dir, tmp_path, algo) -> None:
    result = train(_config(tiny_llama_dir, tmp_path, algo=algo, steps=20, max_evaluations=6, evaluate_test=False), progress_bar=False)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    spent = result.prompt_file.budget["prompt_evaluations"]
    assert 6 <= spent < 6 + 4, "stops after the batch that reaches the budget"
    assert history[-1]["evaluations"] == spent and len(history) == result.prompt_file.budget["steps"] < 20
    assert history[-1]["best_dev_accuracy"] == result.prompt_file.accuracy["dev"]
    assert [row["batch"] for row in history] == list(range(1, len(history) + 1))


def test_random_search_is_seeded_and_draws_from_the_action_vocabulary(tiny_llama_dir, tmp_path) -> None:
    first = train(_config(tiny_llama_dir, tmp_path, algo="random", run_name="a", evaluate_test=False), progress_bar=False).prompt_file
    second = train(_config(tiny_llama_dir, tmp_path, algo="random", run_name="b", evaluate_test=False), progress_bar=False).prompt_file
    assert [c.prompt for c in first.candidates] == [c.prompt for c in second.candidates]
    assert not (tmp_path / "a" / "policy.safetensors").exists(), "random search has no policy to save"
    from rlprompt.envs.vocab import build_vocabulary
    from rlprompt.models import load_model

    vocab = build_vocabulary(load_model(str(tiny_llama_dir)).tokenizer, "words")
    assert all(set(c.token_ids) <= set(vocab.token_ids) for c in first.candidates)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(prompt_length=0), "--prompt-length must be >= 1, got 0"),
        (dict(num_prompts=1), "--num-prompts must be >= 2"),
        (dict(algo="dqn"), "unknown algo 'dqn'; valid: ppo, a2c, sql, random"),
        (dict(max_evaluations=0), "--max-evaluations must be >= 1, got 0"),
        (dict(patience=0), "--patience must be >= 1, got 0"),
        (dict(learning_rate=-1.0), r"--learning-rate must be a positive number, got -1\.0"),
        (dict(learning_rate=float("nan")), "--learning-rate must be a positive number, got nan"),
        (dict(adapter_hidden=0), "--adapter-hidden must be >= 1, got 0"),
        (dict(max_batch_tokens=0), "--max-batch-tokens must be >= 1, got 0"),
        (dict(n_epochs=0), "--n-epochs must be >= 1, got 0"),
        (dict(top_k=0), "--top-k must be >= 1, got 0"),
        (dict(ent_coef=-0.1), "--ent-coef must be >= 0, got -0.1"),
        (dict(fluency_weight=-5.0), "--fluency-weight must be >= 0 \\(a negative weight"),
        (dict(seed=-1), "--seed must be >= 0, got -1"),
        (dict(device="gpu"), "unknown device 'gpu'; valid: auto, cpu, cuda, cuda:N, mps"),
        (dict(device="cuda:7"), "device 'cuda:7' is not available"),
        (dict(dtype="fp16"), "unknown dtype 'fp16'; valid: auto, fp32, bf16"),
        (dict(vocabulary="top-x"), "action vocabulary 'top-x': K must be a positive integer"),
        (dict(vocabulary="nosuchfile.txt"), "unknown action vocabulary 'nosuchfile.txt'"),
        (dict(reward="bleu"), "unknown reward 'bleu'; valid: gap, accuracy"),
        (dict(calibration="platt"), "unknown calibration 'platt'; valid: none, train-mean"),
    ],
)
def test_bad_config_is_rejected_before_any_work(tiny_llama_dir, tmp_path, overrides, message) -> None:
    with pytest.raises(RLPromptError, match=message):
        train(_config(tiny_llama_dir, tmp_path, **overrides), progress_bar=False)
    assert not (tmp_path / "run").exists()


def test_fluency_weight_enters_the_training_reward(tiny_llama_dir, tmp_path) -> None:
    from rlprompt.models import load_model
    from rlprompt.perplexity import mean_log_likelihood
    from rlprompt.rewards import GapReward
    from rlprompt.scoring import Scorer
    from rlprompt.tasks import load_task

    result = train(_config(tiny_llama_dir, tmp_path, fluency_weight=5.0, evaluate_test=False), progress_bar=False)
    best = result.prompt_file.candidates[0]
    lm = load_model(str(tiny_llama_dir))
    task = load_task("demo")
    gap = GapReward(Scorer(lm, task.template, task.verbalizers), task.train)([best.prompt]).rewards[0]
    fluency = mean_log_likelihood(lm.model, lm.tokenizer, [best.prompt])[0]
    assert best.train_reward == pytest.approx(gap + 5.0 * fluency, abs=1e-3)
    assert best.perplexity == pytest.approx(float(np.exp(-fluency)), rel=1e-3)


def test_calibrated_training_rewards_and_records_calibrated_scores(tiny_llama_dir, tmp_path) -> None:
    from rlprompt.evaluation import score_prompts
    from rlprompt.models import ModelPool
    from rlprompt.rewards import GapReward
    from rlprompt.scoring import make_scorer
    from rlprompt.tasks import load_task

    result = train(_config(tiny_llama_dir, tmp_path, calibration="train-mean"), progress_bar=False)
    best = result.prompt_file.candidates[0]
    assert result.prompt_file.task.calibration == "train-mean"
    assert PromptFile.load(result.path).task.calibration == "train-mean"
    task = load_task("demo")
    scorer = make_scorer(str(tiny_llama_dir), task, "train-mean", models=ModelPool())
    assert best.train_reward == pytest.approx(GapReward(scorer, task.train)([best.prompt]).rewards[0], abs=1e-3)
    assert result.baselines["test"]["learned"].accuracy == score_prompts(scorer, [best.prompt], task.test)[0].accuracy
    assert train(_config(tiny_llama_dir, tmp_path, run_name="plain"), progress_bar=False).prompt_file.task.calibration == "none"


@pytest.mark.parametrize("algo", ["ppo", "sql", "random"])
def test_training_stops_when_patience_steps_in_a_row_scored_no_new_prompt(tiny_llama_dir, tmp_path, algo) -> None:
    # Two words and 1-token prompts: every prompt has been scored after a few steps.
    words = tmp_path / "words.txt"
    words.write_text("great\nterrible\n", encoding="utf-8")
    config = _config(tiny_llama_dir, tmp_path, algo=algo, vocabulary=str(words), prompt_length=1, steps=30, patience=3, evaluate_test=False)
    train(config, progress_bar=False)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    evaluations = [row["evaluations"] for row in history]
    assert evaluations[-1] == 2
    assert len(history) == evaluations.index(2) + 1 + 3, "the run ends 3 steps after its last new prompt"
