"""Soft Q-learning: its loss terms by hand, the target network, save/load, and that it learns."""

from __future__ import annotations

import json
import math
from typing import Sequence

import numpy as np
import pytest
import torch

from rlprompt.config import TrainConfig
from rlprompt.envs.vec_env import PromptVecEnv
from rlprompt.envs.vocab import ActionVocabulary, build_vocabulary
from rlprompt.rewards.base import PromptReward, RewardBatch
from rlprompt.rewards.cache import CachedReward
from rlprompt.search import search_method
from rlprompt.search.base import SearchContext
from rlprompt.search.sql import path_consistency_terms, sql_loss
from rlprompt.selection import PromptSelector
from rlprompt.train import train


def _log_sum_exp(*values: float) -> float:
    return math.log(sum(math.exp(v) for v in values))


def _case():
    # One episode of two steps over two actions, reward 3, and one episode ended after one step.
    q = torch.tensor([[[1.0, 0.0], [0.0, 2.0]], [[0.5, -0.5], [9.0, 9.0]]])
    q_target = torch.tensor([[[0.0, 0.0], [1.0, 1.0]], [[2.0, 0.0], [7.0, 7.0]]])
    actions = torch.tensor([[0, 1], [1, 0]])
    return q, q_target, actions, torch.tensor([3.0, -1.0]), torch.tensor([2, 1])


def test_path_consistency_terms_equal_hand_computed_values() -> None:
    single, multi = path_consistency_terms(*_case())
    # Episode 0: A_t = Q(s_t, a_t) - logsumexp Q(s_t); V'_t = logsumexp of the target's Q.
    a0, a1 = 1.0 - _log_sum_exp(1.0, 0.0), 2.0 - _log_sum_exp(0.0, 2.0)
    v0, v1 = _log_sum_exp(0.0, 0.0), _log_sum_exp(1.0, 1.0)
    expected_single = [(a0 - (v1 - v0)) ** 2, (a1 - (3.0 - v1)) ** 2]
    expected_multi = [(a0 + a1 - (3.0 - v0)) ** 2, (a1 - (3.0 - v1)) ** 2]
    # Episode 1 ends after its first step: the reward is its target there, and step 2 is padding.
    b0, w0 = -0.5 - _log_sum_exp(0.5, -0.5), _log_sum_exp(2.0, 0.0)
    expected_single_1 = [(b0 - (-1.0 - w0)) ** 2, 0.0]
    torch.testing.assert_close(single, torch.tensor([expected_single, expected_single_1]))
    torch.testing.assert_close(multi, torch.tensor([expected_multi, expected_single_1]))
    loss = sql_loss(*_case())
    expected = ((sum(expected_single) + sum(expected_multi)) / 2 + expected_single_1[0]) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_the_loss_trains_the_online_network_only() -> None:
    q, q_target, actions, rewards, lengths = _case()
    q.requires_grad_(True)
    q_target.requires_grad_(True)
    sql_loss(q, q_target.detach(), actions, rewards, lengths).backward()
    assert q.grad is not None and q.grad[0].abs().sum() > 0
    assert torch.equal(q.grad[1, 1], torch.zeros(2)), "a padding step gets no gradient"
    assert q_target.grad is None


def _context(tiny_llama, tmp_path, config: TrainConfig, reward: PromptReward, vocab: ActionVocabulary, dev_score=None) -> SearchContext:
    cached = CachedReward(reward)
    selector = PromptSelector(
        config.top_k, dev_score or (lambda prompts: [float(cached(prompts).metrics["accuracy"][i]) for i in range(len(prompts))]),
        lambda ranked: None, evaluations=lambda: cached.evaluations,
    )
    env = PromptVecEnv(cached, vocab, num_envs=config.num_prompts, prompt_length=config.prompt_length, min_length=config.shortest_prompt)
    return SearchContext(config=config, reward=cached, selector=selector, vocab=vocab, backbone=tiny_llama, make_env=lambda: env, device=torch.device("cpu"), out_dir=tmp_path)


def test_polyak_update_and_save_load_round_trip(tiny_llama, tmp_path) -> None:
    vocab = build_vocabulary(tiny_llama.tokenizer, "words", tiny_llama.model)
    config = TrainConfig(algo="sql", num_prompts=4, prompt_length=2, adapter_hidden=8, seed=1)
    method = search_method("sql")(_context(tiny_llama, tmp_path, config, TokenCountReward(vocab, 0), vocab))
    network = method.network
    before = [p.detach().clone() for p in network.target_adapter.parameters()]
    with torch.no_grad():
        for p in network.adapter.parameters():
            p.add_(1.0)
    network.update_target(0.25)
    for target, old, online in zip(network.target_adapter.parameters(), before, network.adapter.parameters()):
        torch.testing.assert_close(target, 0.75 * old + 0.25 * online)
        assert not target.requires_grad
    assert {id(p) for p in network.trainable_parameters()} == {id(p) for p in network.adapter.parameters()}
    method.save(tmp_path)
    other = search_method("sql")(_context(tiny_llama, tmp_path, TrainConfig(**{**config.__dict__, "seed": 2}), TokenCountReward(vocab, 0), vocab))
    assert not torch.equal(next(other.network.adapter.parameters()), next(network.adapter.parameters()))
    other.load(tmp_path)
    for mine, theirs in zip(network.state_dict().values(), other.network.state_dict().values()):
        assert torch.equal(mine, theirs)
    obs = torch.as_tensor(np.array([[3, 0, 1]]))
    assert torch.equal(network.q_values(obs), other.network.q_values(obs))
    assert len(network.state_dict()) == 8, "two adapters of two linear layers (weight, bias); no LM weights"


class TokenCountReward(PromptReward):
    """A toy reward with a known best prompt: how many of its tokens are one chosen action."""

    metric_names = ("accuracy",)

    def __init__(self, vocab: ActionVocabulary, action: int) -> None:
        self.token = vocab.decode([action])
        self.vocab = vocab

    def __call__(self, prompts: Sequence[str]) -> RewardBatch:
        counts = np.array([prompt.split().count(self.token) for prompt in prompts], dtype=np.float64)
        return RewardBatch(rewards=counts, metrics={"accuracy": counts / 5})


TOY_STEPS = 60
TOY_SETTINGS = {
    # Tiny backbone (hidden 32): larger learning rates than the 135M-parameter defaults.
    "ppo": dict(learning_rate=3e-2),
    "sql": dict(learning_rate=1e-1),
    "random": {},
}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("algo", ["ppo", "sql", "random"])
def test_rl_finds_the_known_best_prompt_where_random_search_does_not(tiny_llama, tmp_path, algo, seed) -> None:
    full = build_vocabulary(tiny_llama.tokenizer, "words", tiny_llama.model)
    # 40 distinct single-token words: 40^5 prompts, so random search cannot hit the best one.
    words, seen = [], set()
    for token_id in full.token_ids:
        text = tiny_llama.tokenizer.decode([token_id]).strip()
        if text and text not in seen and len(tiny_llama.tokenizer.encode(" " + text, add_special_tokens=False)) == 1:
            words.append(token_id)
            seen.add(text)
    vocab = ActionVocabulary(tuple(words[:40]), tiny_llama.tokenizer)
    reward = TokenCountReward(vocab, action=7)
    config = TrainConfig(algo=algo, num_prompts=16, prompt_length=5, adapter_hidden=64, seed=seed, steps=TOY_STEPS, top_k=4, **TOY_SETTINGS[algo])
    context = _context(tiny_llama, tmp_path, config, reward, vocab)
    method = search_method(algo)(context)
    method.run(TOY_STEPS, progress_bar=False)
    best = context.selector.best
    best_prompt = " ".join([reward.token] * 5)
    if algo == "random":
        assert best.train_reward <= 3, "random search got lucky: 4+ of 5 tokens right"
        assert method.greedy_prompt() is None
    else:
        # Found: sampled as the best prompt, or the policy's greedy prompt (which training scores too).
        greedy = vocab.decode(method.decode_greedy())
        assert best_prompt in (best.prompt, greedy), f"{algo} did not find it: best {best.prompt!r} ({best.train_reward}), greedy {greedy!r}"
    assert context.reward.evaluations <= TOY_STEPS * 16


def test_sql_trains_end_to_end_with_greedy_candidates(tiny_llama_dir, tmp_path) -> None:
    config = TrainConfig(
        target_lm="fake", policy_lm=str(tiny_llama_dir), algo="sql", steps=4, num_prompts=4, prompt_length=2,
        adapter_hidden=16, greedy_every=2, runs_dir=str(tmp_path), run_name="r",
    )
    result = train(config, progress_bar=False)
    history = json.loads((tmp_path / "r" / "history.json").read_text())
    greedy_rows = [row for row in history if "greedy_prompt" in row]
    assert [row["batch"] for row in greedy_rows] == [2, 4]
    assert all(set(row) >= {"greedy_train_reward", "greedy_dev_accuracy"} for row in greedy_rows)
    greedy = [c for c in result.prompt_file.candidates if c.greedy]
    assert greedy and greedy[0].dev_accuracy is not None
    assert (tmp_path / "r" / "policy.safetensors").is_file()
    assert result.prompt_file.budget["steps"] == 4


@pytest.mark.parametrize("algo", ["sql", "ppo"])
def test_resume_restores_the_optimizer_state(tiny_llama, tmp_path, algo: str) -> None:
    """Adam's moments and step count survive save/load: a resumed run takes the step the unbroken run would."""
    vocab = build_vocabulary(tiny_llama.tokenizer, "words", tiny_llama.model)
    config = TrainConfig(algo=algo, num_prompts=4, prompt_length=2, adapter_hidden=8, seed=1, steps=2, n_epochs=1)
    method = search_method(algo)(_context(tiny_llama, tmp_path / "a", config, TokenCountReward(vocab, 0), vocab))
    method.run(2, progress_bar=False)
    saved = method.optimizer.state_dict()["state"]
    assert saved and all(int(s["step"]) >= 2 for s in saved.values())
    (tmp_path / "run").mkdir()
    method.save(tmp_path / "run")
    other = search_method(algo)(_context(tiny_llama, tmp_path / "b", config, TokenCountReward(vocab, 0), vocab))
    assert not other.optimizer.state_dict()["state"]
    other.load(tmp_path / "run")
    restored = other.optimizer.state_dict()["state"]
    assert restored.keys() == saved.keys()
    for key in saved:
        for name, value in saved[key].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(restored[key][name])), f"{name} of parameter {key}"
