"""Envs: both checkers, the registered id, the batched VecEnv's single reward call."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rlprompt.envs import ENV_ID, PromptEnv, PromptVecEnv
from rlprompt.envs.vocab import build_vocabulary
from rlprompt.errors import RLPromptError
from rlprompt.rewards import GapReward, RewardBatch
from rlprompt.scoring import Scorer
from rlprompt.tasks import load_task


class CountingReward:
    """Reward = number of characters; records every call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, prompts):
        self.calls.append(list(prompts))
        rewards = np.array([float(len(p)) for p in prompts])
        return RewardBatch(rewards=rewards, metrics={"accuracy": np.full(len(prompts), 0.5)})


@pytest.fixture(scope="module")
def vocab(bpe_tokenizer):
    return build_vocabulary(bpe_tokenizer, "words")


def test_gymnasium_check_env(vocab) -> None:
    from gymnasium.utils.env_checker import check_env

    env = PromptEnv(CountingReward(), vocab, prompt_length=3)
    check_env(env, skip_render_check=True)


def test_sb3_check_env(vocab) -> None:
    from stable_baselines3.common.env_checker import check_env

    check_env(PromptEnv(CountingReward(), vocab, prompt_length=3), warn=False)


def test_registered_id_makes_a_prompt_env(vocab) -> None:
    env = gym.make(ENV_ID, reward=CountingReward(), vocab=vocab, prompt_length=2)
    obs, _ = env.reset(seed=0)
    assert obs.tolist() == [0, 0, 0]
    obs, reward, terminated, _, info = env.step(4)
    assert obs.tolist() == [4, 0, 1] and reward == 0.0 and not terminated
    obs, reward, terminated, _, info = env.step(7)
    assert terminated and obs.tolist() == [4, 7, 2]
    assert info["prompt"] == vocab.decode([4, 7])
    assert info["token_ids"] == [vocab.token_ids[4], vocab.token_ids[7]]
    assert reward == float(len(info["prompt"]))


def test_episode_reward_from_gap_reward(tiny_llama) -> None:
    task = load_task("demo")
    reward = GapReward(Scorer(tiny_llama, task.template, task.verbalizers), task.train[:8])
    vocab = build_vocabulary(tiny_llama.tokenizer, "words")
    env = PromptEnv(reward, vocab, prompt_length=2)
    env.reset(seed=0)
    env.step(1)
    _, r, terminated, _, info = env.step(2)
    expected = reward([vocab.decode([1, 2])])
    assert terminated and r == pytest.approx(expected.rewards[0]) and info["metrics"] == {"accuracy": expected.metrics["accuracy"][0]}


def test_vec_env_scores_all_prompts_in_one_call_and_zscores(vocab) -> None:
    reward = CountingReward()
    env = PromptVecEnv(reward, vocab, num_envs=4, prompt_length=3)
    obs = env.reset()
    assert obs.shape == (4, 4)
    actions = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]])
    for step in range(3):
        obs, rewards, dones, infos = env.step(actions[step])
    assert len(reward.calls) == 1 and len(reward.calls[0]) == 4
    raw = np.array([info["raw_reward"] for info in infos])
    assert rewards == pytest.approx((raw - raw.mean()) / raw.std(), abs=1e-5)
    assert dones.all()
    assert obs.tolist() == [[0, 0, 0, 0]] * 4, "finished envs come back reset"
    assert infos[0]["terminal_observation"].tolist() == [1, 5, 9, 3]
    assert infos[0]["prompt"] == vocab.decode([1, 5, 9])


def test_vec_env_raw_rewards_equal_single_env_rewards(tiny_llama, tol) -> None:
    task = load_task("demo")
    reward = GapReward(Scorer(tiny_llama, task.template, task.verbalizers), task.train[:8])
    vocab = build_vocabulary(tiny_llama.tokenizer, "words")
    vec = PromptVecEnv(reward, vocab, num_envs=3, prompt_length=2)
    vec.reset()
    vec.step(np.array([1, 2, 3]))
    _, _, _, infos = vec.step(np.array([4, 5, 6]))
    for i, info in enumerate(infos):
        single = PromptEnv(reward, vocab, prompt_length=2)
        single.reset()
        single.step([1, 2, 3][i])
        _, r, _, _, _ = single.step([4, 5, 6][i])
        assert info["raw_reward"] == pytest.approx(r, abs=tol.reward)


@pytest.mark.parametrize("length", [0, -1])
def test_prompt_length_below_one_is_rejected(vocab, length: int) -> None:
    with pytest.raises(RLPromptError, match="prompt length must be an integer >= 1"):
        PromptEnv(CountingReward(), vocab, prompt_length=length)
    with pytest.raises(RLPromptError, match="prompt length must be an integer >= 1"):
        PromptVecEnv(CountingReward(), vocab, num_envs=2, prompt_length=length)


def test_step_outside_action_space_is_rejected(vocab) -> None:
    env = PromptEnv(CountingReward(), vocab, prompt_length=2)
    env.reset()
    with pytest.raises(ValueError, match="outside the action space"):
        env.step(vocab.size)


def test_registered_id_names_an_unknown_setting() -> None:
    with pytest.raises(RLPromptError, match=r"rlprompt/Prompt-v0's settings has unknown keys \['prompt_len'\]; valid keys: "):
        gym.make(ENV_ID, prompt_len=3)
