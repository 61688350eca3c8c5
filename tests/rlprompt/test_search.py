"""The seams: a search method and a scorer backend are each one module plus one registry line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlprompt.config import TrainConfig
from rlprompt.errors import RLPromptError
from rlprompt.scoring import SCORER_BACKENDS, ClassScorer, make_scorer
from rlprompt.scoring.base import split_target_spec
from rlprompt.scoring.fake import FakeScorer
from rlprompt.search import SEARCH_METHODS, search_method
from rlprompt.search.base import SearchMethod
from rlprompt.tasks import load_task
from rlprompt.train import train


class FirstTokensSearch(SearchMethod):
    """A method written for this test: always the first tokens of the vocabulary."""

    name = "first"

    def run(self, steps: int, progress_bar: bool) -> None:
        env = self.context.env
        env.reset()
        for step in range(steps):
            for _ in range(env.prompt_length):
                _, _, _, infos = env.step(np.full(env.num_envs, step % env.vocab.size))
            self.context.selector.add(infos)


def const_backend(spec: str, task, *, models, max_batch_tokens=None) -> FakeScorer:
    """A backend written for this test: every pair gets the logits named in the spec."""
    values = [float(v) for v in spec.split(",")]
    return FakeScorer(task.num_classes, lambda prompt, text: values)


def _config(tmp_path, **overrides) -> TrainConfig:
    return TrainConfig(**{**dict(steps=3, num_prompts=4, prompt_length=2, adapter_hidden=16, runs_dir=str(tmp_path), run_name="r"), **overrides})


def test_cli_choices_and_check_come_from_the_registry() -> None:
    from rlprompt.cli import _parser

    train_parser = next(a for a in _parser()._subparsers._group_actions[0].choices.values() if a.prog.endswith("train"))
    algo = next(a for a in train_parser._actions if a.dest == "algo")
    assert algo.choices == list(SEARCH_METHODS) == ["ppo", "a2c", "sql", "random", "grpo", "ape", "opro", "grpo-opro"]
    with pytest.raises(RLPromptError, match="unknown algo 'dqn'; valid: ppo, a2c, sql, random"):
        TrainConfig(algo="dqn").check()
    assert issubclass(search_method("random"), SearchMethod)


def test_a_new_search_method_is_one_registry_line(tiny_llama_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(SEARCH_METHODS, "first", "tests.rlprompt.test_search:FirstTokensSearch")
    result = train(_config(tmp_path, target_lm=str(tiny_llama_dir), algo="first"), progress_bar=False)
    assert result.prompt_file.budget["steps"] == 3 and result.prompt_file.budget["prompt_evaluations"] == 3
    assert all(len(set(c.token_ids)) == 1 for c in result.prompt_file.candidates), "each prompt repeats one token"
    assert not (tmp_path / "r" / "policy.safetensors").exists(), "a method without state saves nothing"


def test_a_new_scorer_backend_is_one_registry_line(tiny_llama_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(SCORER_BACKENDS, "const", "tests.rlprompt.test_search:const_backend")
    assert split_target_spec("const:0,1") == ("const", "0,1")
    result = train(_config(tmp_path, target_lm="const:0,1", policy_lm=str(tiny_llama_dir)), progress_bar=False)
    # Every pair says "class 1": accuracy is the share of class-1 examples, whatever the prompt.
    task = load_task("demo")
    positive = sum(e.label == 1 for e in task.test) / len(task.test)
    assert result.baselines["test"]["learned"].accuracy == pytest.approx(positive)
    assert result.prompt_file.target_lm == "const:0,1" and result.prompt_file.tokenizer == str(tiny_llama_dir)


def test_specs_pick_their_backend() -> None:
    assert split_target_spec("fake") == ("fake", "")
    assert split_target_spec("smollm2-135m") == ("local", "smollm2-135m")
    assert split_target_spec("C:/models/x.gguf") == ("local", "C:/models/x.gguf")
    assert split_target_spec("hf-org/fake") == ("local", "hf-org/fake")


def test_fake_scorer_is_deterministic_and_records_calls() -> None:
    task = load_task("demo")
    scorer = make_scorer("fake", task, models=None)
    assert isinstance(scorer, ClassScorer) and scorer.num_classes == 2
    first = scorer.class_logits(["a", "b", "c"], ["x", "y"])
    assert first.shape == (3, 2, 2) and first.dtype == torch.float32
    assert torch.equal(first, make_scorer("fake", task, models=None).class_logits(["a", "b", "c"], ["x", "y"]))
    assert not torch.equal(first[0], first[1])
    assert scorer.calls == [(["a", "b", "c"], ["x", "y"])]
    calibrated = make_scorer("fake", task, "train-mean", models=None)
    reference = [e.text for e in task.train]
    assert calibrated.class_logits(["a"], reference).mean(dim=1).abs().max() < 1e-6


def test_training_against_the_fake_target(tiny_llama_dir, tmp_path) -> None:
    result = train(_config(tmp_path, target_lm="fake", policy_lm=str(tiny_llama_dir), algo="random"), progress_bar=False)
    assert result.prompt_file.target_lm == "fake" and 0.0 <= result.prompt_file.accuracy["dev"] <= 1.0
