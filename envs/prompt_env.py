"""Prompt construction as a Gymnasium environment.

An episode writes a prompt of ``prompt_length`` tokens, one action (an index into the action
vocabulary) per step. The reward comes at the last step: the reward module scores the finished
prompt on the task. The observation is the prompt's action indices so far, padded with zeros
to ``prompt_length``, followed by its length.
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from rlprompt.defaults import PROMPT_LENGTH
from rlprompt.envs.vocab import ActionVocabulary
from rlprompt.errors import RLPromptError
from rlprompt.rewards.base import PromptReward, RewardBatch


def observation_space(prompt_length: int, vocab_size: int) -> gym.spaces.Box:
    """``[a_1, ..., a_L, length]`` as integers."""
    return gym.spaces.Box(low=0, high=max(vocab_size - 1, prompt_length), shape=(prompt_length + 1,), dtype=np.int64)


def prompt_observation(actions: Sequence[int], prompt_length: int) -> np.ndarray:
    """The observation of a prompt whose first tokens are ``actions``: ``[a_1, ..., a_L, length]``."""
    obs = np.zeros(prompt_length + 1, dtype=np.int64)
    obs[: len(actions)] = actions
    obs[-1] = len(actions)
    return obs


def check_prompt_length(prompt_length: int) -> None:
    if not isinstance(prompt_length, (int, np.integer)) or prompt_length < 1:
        raise RLPromptError(f"prompt length must be an integer >= 1, got {prompt_length!r}")


def finished_info(vocab: ActionVocabulary, actions: Sequence[int], batch: RewardBatch, index: int) -> dict[str, Any]:
    """What every finished episode reports in ``info``: prompt ``index`` of ``batch``."""
    return {
        "prompt": vocab.decode(actions),
        "token_ids": vocab.ids(actions),
        "raw_reward": float(batch.rewards[index]),
        "metrics": batch.row(index),
    }


class PromptEnv(gym.Env):
    """Write a prompt token by token; get the task reward when it is finished.

    Args:
        reward: Scores prompt texts (e.g. :class:`rewards.GapReward`).
        vocab: The action vocabulary.
        prompt_length: Tokens per prompt (``L``).
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, reward: PromptReward, vocab: ActionVocabulary, prompt_length: int = PROMPT_LENGTH, render_mode: str | None = None) -> None:
        check_prompt_length(prompt_length)
        self.reward_fn = reward
        self.vocab = vocab
        self.prompt_length = int(prompt_length)
        self.render_mode = render_mode
        self.action_space = gym.spaces.Discrete(vocab.size)
        self.observation_space = observation_space(self.prompt_length, vocab.size)
        self._actions: list[int] = []

    def _obs(self) -> np.ndarray:
        return prompt_observation(self._actions, self.prompt_length)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._actions = []
        return self._obs(), {}

    def step(self, action) -> tuple[np.ndarray, float, bool, bool, dict]:
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is outside the action space Discrete({self.vocab.size})")
        if len(self._actions) >= self.prompt_length:
            raise RuntimeError("the prompt is finished; call reset() first")
        self._actions.append(int(action))
        if len(self._actions) < self.prompt_length:
            return self._obs(), 0.0, False, False, {}
        batch = self.reward_fn([self.vocab.decode(self._actions)])
        info = finished_info(self.vocab, self._actions, batch, 0)
        return self._obs(), float(batch.rewards[0]), True, False, info

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self.vocab.decode(self._actions)
        return None
