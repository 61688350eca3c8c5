"""Rewards: the gap reward on a hand-computed case, batching invariance, z-scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlprompt.rewards import AccuracyReward, GapReward, RewardBatch, gap_rewards, zscore
from rlprompt.scoring import Scorer
from rlprompt.tasks import load_task


def test_gap_reward_hand_computed() -> None:
    # One prompt, two examples, two classes.
    # Example 0: logits (0, ln 3) -> p = (0.25, 0.75), gold 1: gap = 0.5, correct -> 200 * 0.5 = 100.
    # Example 1: logits (0, ln 4) -> p = (0.2, 0.8), gold 0: gap = -0.6, wrong -> 180 * -0.6 = -108.
    logits = torch.tensor([[[0.0, math.log(3)], [0.0, math.log(4)]]])
    rewards, accuracy = gap_rewards(logits, torch.tensor([1, 0]))
    assert rewards.tolist() == pytest.approx([(100.0 - 108.0) / 2])
    assert accuracy.tolist() == [0.5]


def test_gap_reward_uses_max_over_other_classes() -> None:
    # p = (0.5, 0.3, 0.2), gold 2: gap = 0.2 - 0.5 = -0.3, wrong -> custom coefficient 10 -> -3.
    logits = torch.log(torch.tensor([[[0.5, 0.3, 0.2]]]))
    rewards, accuracy = gap_rewards(logits, torch.tensor([2]), correct_coef=1.0, incorrect_coef=10.0)
    assert rewards.item() == pytest.approx(-3.0)
    assert accuracy.item() == 0.0


def test_zscore() -> None:
    assert zscore(np.array([1.0, 2.0, 3.0])) == pytest.approx([-1.2247449, 0.0, 1.2247449])
    assert zscore(np.array([5.0])).tolist() == [0.0]
    assert zscore(np.array([2.0, 2.0])).tolist() == [0.0, 0.0]


@pytest.fixture(scope="module")
def demo_scorer(tiny_llama):
    task = load_task("demo")
    return task, Scorer(tiny_llama, task.template, [" terrible", " great"])


def test_batched_reward_equals_per_prompt_reward(demo_scorer, tol) -> None:
    task, scorer = demo_scorer
    reward = GapReward(scorer, task.train[:12])
    prompts = ["It was", "", "great great terrible", "the food", "It"]
    batch = reward(prompts)
    for i, prompt in enumerate(prompts):
        alone = reward([prompt])
        assert alone.rewards[0] == pytest.approx(batch.rewards[i], abs=tol.reward)
        assert alone.metrics["accuracy"][0] == batch.metrics["accuracy"][i]


def test_accuracy_reward_is_percent_accuracy(demo_scorer) -> None:
    task, scorer = demo_scorer
    examples = task.train[:10]
    batch = AccuracyReward(scorer, examples)(["It was"])
    logits = scorer.class_logits(["It was"], [e.text for e in examples])[0]
    expected = (logits.argmax(-1) == torch.tensor([e.label for e in examples])).float().mean().item()
    assert batch.metrics["accuracy"][0] == pytest.approx(expected)
    assert batch.rewards[0] == pytest.approx(100 * expected)


def test_cached_reward_scores_each_distinct_prompt_once() -> None:
    from rlprompt.rewards import CachedReward

    calls: list[list[str]] = []

    def reward(prompts):
        calls.append(list(prompts))
        values = np.array([float(len(p)) for p in prompts])
        return RewardBatch(rewards=values, metrics={"accuracy": values / 10})

    cached = CachedReward(reward)
    first = cached(["ab", "abc", "ab"])
    second = cached(["abc", "abcd"])
    assert calls == [["ab", "abc"], ["abcd"]]
    assert first.rewards.tolist() == [2.0, 3.0, 2.0] and first.metrics["accuracy"].tolist() == [0.2, 0.3, 0.2]
    assert second.rewards.tolist() == [3.0, 4.0]
    assert cached.evaluations == 3 and cached.lookups == 5 and cached.hits == 2
    assert cached.hit_rate == pytest.approx(0.4)


def test_gap_reward_same_with_and_without_prefix_cache(tiny_llama, tol) -> None:
    task = load_task("demo")
    prompts = ["It was", "", "the food was"]
    cached = GapReward(Scorer(tiny_llama, task.template, task.verbalizers), task.train)(prompts)
    plain = GapReward(Scorer(tiny_llama, task.template, task.verbalizers, prefix_cache=False), task.train)(prompts)
    assert cached.rewards == pytest.approx(plain.rewards, abs=tol.reward)
    assert cached.metrics["accuracy"].tolist() == plain.metrics["accuracy"].tolist()
