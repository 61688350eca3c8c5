"""Variable-length prompts in the search methods, the selector and a whole run."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from rlprompt.config import TrainConfig
from rlprompt.envs.vocab import ActionVocabulary, build_vocabulary
from rlprompt.errors import RLPromptError
from rlprompt.search import search_method
from rlprompt.search.sql import episode_lengths
from rlprompt.selection import PromptSelector
from rlprompt.train import train
from tests.envs.test_variable_length import LengthReward
from tests.rlprompt.test_sql import _context


def _small_vocab(tiny_llama, size: int = 20) -> ActionVocabulary:
    full = build_vocabulary(tiny_llama.tokenizer, "words", tiny_llama.model)
    return ActionVocabulary(full.token_ids[:size], tiny_llama.tokenizer).with_end_action()


def test_sql_episode_lengths_stop_at_the_first_end_action() -> None:
    actions = np.array([[9, 9, 9], [1, 9, 9], [1, 2, 3], [1, 2, 9]])
    assert episode_lengths(actions, 9).tolist() == [1, 2, 3, 3]
    assert episode_lengths(actions, None).tolist() == [3, 3, 3, 3]


def test_random_search_draws_lengths_uniformly(tiny_llama, tmp_path) -> None:
    vocab = _small_vocab(tiny_llama)
    config = TrainConfig(algo="random", num_prompts=16, prompt_length=3, min_length=1, steps=50, top_k=4, seed=0)
    context = _context(tiny_llama, tmp_path, config, LengthReward(), vocab)
    seen: list[str] = []
    original = context.selector.add
    context.selector.add = lambda infos: seen.extend(i["prompt"] for i in infos) or original(infos)
    search_method("random")(context).run(50, progress_bar=False)
    lengths = Counter(len(prompt.split()) for prompt in seen)
    assert sorted(lengths) == [1, 2, 3] and sum(lengths.values()) == 800
    assert all(abs(count - 800 / 3) < 60 for count in lengths.values()), lengths


@pytest.mark.parametrize("algo", ["ppo", "sql", "random"])
def test_every_method_can_find_the_empty_prompt(tiny_llama, tmp_path, algo) -> None:
    vocab = _small_vocab(tiny_llama)
    settings = {"ppo": dict(learning_rate=3e-2), "sql": dict(learning_rate=1e-1), "random": {}}[algo]
    config = TrainConfig(algo=algo, num_prompts=16, prompt_length=3, min_length=0, adapter_hidden=64, steps=40, top_k=4, seed=0, **settings)
    context = _context(tiny_llama, tmp_path, config, LengthReward(), vocab)
    method = search_method(algo)(context)
    method.run(40, progress_bar=False)
    assert context.selector.best.prompt == "" and context.selector.best.token_ids == []
    if algo != "random":
        assert method.decode_greedy() == [vocab.end_action] * 3, "the policy learned to end at once"


def test_the_selector_can_return_the_empty_prompt() -> None:
    selector = PromptSelector(2, lambda prompts: [0.9 if p == "" else 0.5 for p in prompts], lambda ranked: None)
    info = {"prompt": "", "token_ids": [], "raw_reward": -5.0, "metrics": {"accuracy": 0.4}}
    selector.add_candidate(info)
    selector.add([{"prompt": word, "token_ids": [i], "raw_reward": 1.0, "metrics": {"accuracy": 0.6}} for i, word in enumerate("abc")])
    assert selector.best.prompt == "" and selector.best.dev_accuracy == 0.9
    assert selector.ranked()[0].prompt == ""


def test_a_run_with_min_length_zero_scores_the_empty_prompt_first(tiny_llama_dir, tmp_path) -> None:
    config = TrainConfig(
        target_lm="fake", policy_lm=str(tiny_llama_dir), steps=2, num_prompts=4, prompt_length=3, min_length=0,
        adapter_hidden=16, runs_dir=str(tmp_path), run_name="r",
    )
    result = train(config, progress_bar=False)
    saved = json.loads((tmp_path / "r" / "prompt.json").read_text())
    empty = [c for c in saved["candidates"] if c["prompt"] == ""]
    assert len(empty) == 1 and empty[0]["token_ids"] == [] and empty[0]["perplexity"] == 1.0
    assert empty[0]["dev_accuracy"] == result.baselines["dev"]["empty"].accuracy
    assert result.prompt_file.accuracy["dev"] >= result.baselines["dev"]["empty"].accuracy
    assert saved["budget"]["prompt_evaluations"] >= 1


def test_min_length_above_the_prompt_length_is_an_error() -> None:
    with pytest.raises(RLPromptError, match=r"--min-length must be at most the prompt length \(5\), got 6"):
        TrainConfig(min_length=6).check()
    with pytest.raises(RLPromptError, match="--min-length must be >= 0"):
        TrainConfig(min_length=-1).check()
