"""N prompts written in lockstep, scored together: one reward call per batch.

All episodes take ``prompt_length`` steps, so the N prompts finish on the same step; the reward
module then scores all N at once (the target LM runs on batches, not one prompt at a time), and
the rewards are z-scored across the batch, as in RLPrompt. With variable length
(:class:`~rlprompt.envs.prompt_env.LengthRule`), a prompt that took the end action early
takes only end actions for its remaining steps.
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from rlprompt.defaults import PROMPT_LENGTH
from rlprompt.envs.prompt_env import check_prompt_length, finished_info, length_rule, observation_space
from rlprompt.envs.vocab import ActionVocabulary
from rlprompt.rewards.base import PromptReward
from rlprompt.rewards.normalize import zscore


class PromptVecEnv(VecEnv):
    """A stable-baselines3 VecEnv of ``num_envs`` prompts built and scored together.

    Args:
        reward: Scores prompt texts.
        vocab: The action vocabulary.
        num_envs: Prompts per batch (N).
        prompt_length: Tokens per prompt (L), the most when ``min_length`` is smaller.
        normalize: Z-score the rewards across each batch (the paper's setting).
        min_length: Fewest tokens per prompt (needs a vocabulary with an end action when below
            ``prompt_length``); default: ``prompt_length``.
    """

    def __init__(
        self,
        reward: PromptReward,
        vocab: ActionVocabulary,
        num_envs: int = 16,
        prompt_length: int = PROMPT_LENGTH,
        normalize: bool = True,
        min_length: int | None = None,
    ) -> None:
        check_prompt_length(prompt_length)
        self.reward_fn = reward
        self.vocab = vocab
        self.prompt_length = int(prompt_length)
        self.length_rule = length_rule(vocab, self.prompt_length if min_length is None else min_length, self.prompt_length)
        self.normalize = normalize
        self.render_mode = None
        super().__init__(num_envs, observation_space(self.prompt_length, vocab.size), gym.spaces.Discrete(vocab.size))
        self._tokens = np.zeros((num_envs, self.prompt_length), dtype=np.int64)
        self._length = 0
        self._pending: np.ndarray | None = None

    def _obs(self) -> np.ndarray:
        obs = np.zeros((self.num_envs, self.prompt_length + 1), dtype=np.int64)
        obs[:, : self._length] = self._tokens[:, : self._length]
        obs[:, -1] = self._length
        return obs

    def reset(self) -> np.ndarray:
        self._length = 0
        self._tokens[:] = 0
        return self._obs()

    def step_async(self, actions: np.ndarray) -> None:
        self._pending = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def action_masks(self) -> np.ndarray:
        """``[num_envs, vocab size]``: the actions allowed now (all, for a fixed length)."""
        if self.length_rule is None:
            return np.ones((self.num_envs, self.vocab.size), dtype=bool)
        return self.length_rule.allowed(self._obs())

    def step_wait(self):
        assert self._pending is not None, "step_async must come before step_wait"
        if self.length_rule is not None:
            self.length_rule.check(self._obs(), self._pending)
        self._tokens[:, self._length] = self._pending
        self._length += 1
        self._pending = None
        if self._length < self.prompt_length:
            infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
            return self._obs(), np.zeros(self.num_envs, dtype=np.float32), np.zeros(self.num_envs, dtype=bool), infos
        terminal = self._obs()
        prompts = [self.vocab.decode(row) for row in self._tokens]
        batch = self.reward_fn(prompts)
        rewards = zscore(batch.rewards) if self.normalize else batch.rewards
        infos = []
        for i, row in enumerate(self._tokens):
            info = finished_info(self.vocab, row, batch, i)
            info["terminal_observation"] = terminal[i]
            info["TimeLimit.truncated"] = False
            infos.append(info)
        return self.reset(), rewards.astype(np.float32), np.ones(self.num_envs, dtype=bool), infos

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self, attr_name) for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        return [getattr(self, method_name)(*method_args, **method_kwargs) for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._indices(indices)]

    def _indices(self, indices) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        return [indices] if isinstance(indices, int) else indices
