"""Variable-length prompts: the end action in the envs and the policies' action masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlprompt.envs import PromptEnv, PromptVecEnv, build_vocabulary
from rlprompt.envs.prompt_env import LengthRule, length_rule
from rlprompt.errors import RLPromptError
from rlprompt.rewards import RewardBatch


class LengthReward:
    """Reward = minus the number of words (the empty prompt is best); records every call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, prompts):
        self.calls.append(list(prompts))
        rewards = np.array([-float(len(p.split())) for p in prompts])
        return RewardBatch(rewards=rewards, metrics={"accuracy": np.full(len(prompts), 0.5)})


@pytest.fixture(scope="module")
def vocab(bpe_tokenizer):
    return build_vocabulary(bpe_tokenizer, "words").with_end_action()


def test_the_end_action_is_the_eos_token_and_ends_the_prompt_text(vocab, bpe_tokenizer) -> None:
    end = vocab.end_action
    assert end == vocab.size - 1 and vocab.token_ids[end] == bpe_tokenizer.eos_token_id
    assert vocab.with_end_action() is vocab
    assert vocab.ids([4, end, end]) == [vocab.token_ids[4]] and vocab.decode([4, end, end]) == vocab.decode([4])
    assert vocab.ids([end, end]) == [] and vocab.decode([end]) == ""


def test_the_env_ends_an_episode_on_the_end_action_with_a_zero_token_prompt(vocab) -> None:
    reward = LengthReward()
    env = PromptEnv(reward, vocab, prompt_length=3, min_length=0)
    env.reset(seed=0)
    assert env.action_masks().all()
    obs, value, terminated, truncated, info = env.step(vocab.end_action)
    assert terminated and not truncated
    assert obs.tolist() == [vocab.end_action, 0, 0, 1]
    assert info["prompt"] == "" and info["token_ids"] == [] and value == 0.0
    assert reward.calls == [[""]]
    with pytest.raises(RuntimeError, match="the prompt is finished"):
        env.step(3)


def test_the_env_ends_early_only_after_min_length_tokens(vocab) -> None:
    env = PromptEnv(LengthReward(), vocab, prompt_length=3, min_length=2)
    env.reset(seed=0)
    assert not env.action_masks()[vocab.end_action] and env.action_masks()[:-1].all()
    with pytest.raises(ValueError, match="is not allowed after 0 tokens of prompt 0: it may end only after 2 tokens"):
        env.step(vocab.end_action)
    env.step(4)
    env.step(5)
    assert env.action_masks()[vocab.end_action]
    obs, value, terminated, _, info = env.step(vocab.end_action)
    assert terminated and obs.tolist() == [4, 5, vocab.end_action, 3]
    assert info["prompt"] == vocab.decode([4, 5]) and value == -2.0


def test_the_vec_env_keeps_lockstep_with_forced_end_actions(vocab) -> None:
    reward = LengthReward()
    env = PromptVecEnv(reward, vocab, num_envs=3, prompt_length=3, min_length=0, normalize=False)
    end = vocab.end_action
    env.reset()
    env.step(np.array([end, 4, 4]))
    masks = env.action_masks()
    assert masks[0].tolist() == [False] * end + [True], "an ended prompt may only take the end action"
    assert masks[1].all() and masks[2].all()
    with pytest.raises(ValueError, match="is not allowed after 1 tokens of prompt 0: only the end action may follow it"):
        env.step(np.array([4, 4, 4]))
    env.step(np.array([end, end, 5]))
    _, rewards, dones, infos = env.step(np.array([end, end, 6]))
    assert dones.all() and len(reward.calls) == 1, "one reward call per batch, whatever the lengths"
    assert [info["prompt"] for info in infos] == ["", vocab.decode([4]), vocab.decode([4, 5, 6])]
    assert infos[0]["token_ids"] == [] and rewards.tolist() == [0.0, -1.0, -3.0]
    assert infos[0]["terminal_observation"].tolist() == [end, end, end, 3]


def test_min_length_is_checked(vocab, bpe_tokenizer) -> None:
    fixed = build_vocabulary(bpe_tokenizer, "words")
    assert length_rule(fixed, 3, 3) is None
    assert length_rule(vocab, 1, 3) == LengthRule(vocab.end_action, 1, vocab.size)
    with pytest.raises(RLPromptError, match="needs an action vocabulary with an end action"):
        PromptVecEnv(LengthReward(), fixed, num_envs=2, prompt_length=3, min_length=1)
    with pytest.raises(RLPromptError, match=r"--min-length must be an integer from 0 to the prompt length \(3\), got 4"):
        PromptEnv(LengthReward(), vocab, prompt_length=3, min_length=4)


def test_the_policy_masks_the_end_action_by_the_rule(tiny_llama) -> None:
    from tests.policies.test_policies import _policy

    vocab = build_vocabulary(tiny_llama.tokenizer, "words").with_end_action()
    end = vocab.end_action
    policy = _policy(tiny_llama, vocab, length_rule=LengthRule(end, 1, vocab.size))
    obs = torch.tensor([[0, 0, 0, 0], [3, 0, 0, 1], [3, end, 0, 2]], dtype=torch.float32)
    probs = policy.get_distribution(obs).distribution.probs.detach()
    assert probs[0, end] == 0 and probs[0].sum() == pytest.approx(1.0)
    assert probs[1, end] > 0
    assert probs[2, end] == pytest.approx(1.0), "after the end action the rest is forced"
    actions, _ = policy.predict(obs.numpy(), deterministic=True)
    assert actions[0] != end and actions[2] == end
    _, log_prob, entropy = policy.evaluate_actions(obs, torch.tensor([3, 3, end]))
    assert log_prob[2].item() == pytest.approx(0.0, abs=1e-6) and entropy[2].item() == pytest.approx(0.0, abs=1e-5)
