"""Prompt construction as a Gymnasium environment.

An episode writes a prompt of up to ``prompt_length`` tokens, one action (an index into the
action vocabulary) per step. The reward comes at the last step: the reward module scores the
finished prompt on the task. The observation is the actions so far, padded with zeros to
``prompt_length``, followed by how many there are.

Variable length: when ``min_length < prompt_length`` the vocabulary has an end-of-prompt action
(:meth:`ActionVocabulary.with_end_action`), allowed once ``min_length`` tokens are written. It
ends the prompt (an empty prompt, if it comes first). :class:`LengthRule` says which actions
are allowed after a prefix; an env's ``action_masks()`` reports it (sb3-contrib's convention)
and the policies apply it to their logits.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class LengthRule:
    """Which actions may follow a prefix when prompts can end before ``prompt_length`` tokens.

    Before ``min_length`` tokens the end action is not allowed; once it is taken, it is the only
    action allowed (the batched env writes all prompts in lockstep, so a prompt that ended early
    waits, with probability-1 end actions that carry no policy gradient, for the others).
    """

    end_action: int
    """Index of the end-of-prompt action in the vocabulary."""
    min_length: int
    """Fewest tokens a prompt may have (0: the empty prompt is allowed)."""
    vocab_size: int
    """Actions in the vocabulary, the end action included."""

    def allowed(self, observations: np.ndarray) -> np.ndarray:
        """``[B, vocab_size]`` booleans: the actions allowed after each observation ``[B, L + 1]``."""
        observations = np.asarray(observations)
        written = observations[:, -1]
        last = observations[np.arange(len(observations)), np.maximum(written - 1, 0)]
        ended = (written > 0) & (last == self.end_action)
        allowed = np.ones((len(observations), self.vocab_size), dtype=bool)
        allowed[written < self.min_length, self.end_action] = False
        allowed[ended] = False
        allowed[ended, self.end_action] = True
        return allowed

    def check(self, observations: np.ndarray, actions: np.ndarray) -> None:
        """Raise on an action the rule does not allow (naming the prompt and the step)."""
        ok = self.allowed(observations)[np.arange(len(actions)), actions]
        if not ok.all():
            row = int(np.flatnonzero(~ok)[0])
            written = int(observations[row, -1])
            what = "only the end action may follow it" if written >= self.min_length else f"it may end only after {self.min_length} tokens"
            raise ValueError(f"action {int(actions[row])} is not allowed after {written} tokens of prompt {row}: {what}")


def length_rule(vocab: ActionVocabulary, min_length: int, prompt_length: int) -> LengthRule | None:
    """The rule for prompts of ``min_length``..``prompt_length`` tokens; None for a vocabulary
    without an end action (fixed length).

    Raises:
        RLPromptError: ``min_length`` is outside 0..``prompt_length``, or it is shorter than the
            prompt length and the vocabulary has no end action.
    """
    if not isinstance(min_length, (int, np.integer)) or not 0 <= min_length <= prompt_length:
        raise RLPromptError(f"--min-length must be an integer from 0 to the prompt length ({prompt_length}), got {min_length!r}")
    if vocab.end_action is None:
        if min_length < prompt_length:
            raise RLPromptError("a --min-length below the prompt length needs an action vocabulary with an end action")
        return None
    return LengthRule(vocab.end_action, int(min_length), vocab.size)


def scored_info(prompt: str, token_ids: Sequence[int], batch: RewardBatch, index: int) -> dict[str, Any]:
    """What every finished prompt reports to the selector: ``prompt`` (with its policy token ids),
    scored as prompt ``index`` of ``batch``. Token episodes and whole-text methods alike."""
    return {"prompt": prompt, "token_ids": [int(t) for t in token_ids], "raw_reward": float(batch.rewards[index]), "metrics": batch.row(index)}


def finished_info(vocab: ActionVocabulary, actions: Sequence[int], batch: RewardBatch, index: int) -> dict[str, Any]:
    """What every finished episode reports in ``info``: prompt ``index`` of ``batch``."""
    return scored_info(vocab.decode(actions), vocab.ids(actions), batch, index)


class PromptEnv(gym.Env):
    """Write a prompt token by token; get the task reward when it is finished.

    Args:
        reward: Scores prompt texts (e.g. :class:`rewards.GapReward`).
        vocab: The action vocabulary.
        prompt_length: Tokens per prompt (``L``), the most when ``min_length`` is smaller.
        min_length: Fewest tokens per prompt; below ``prompt_length`` the vocabulary's end action
            ends an episode early. Default: ``prompt_length`` (fixed length).
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        reward: PromptReward,
        vocab: ActionVocabulary,
        prompt_length: int = PROMPT_LENGTH,
        render_mode: str | None = None,
        min_length: int | None = None,
    ) -> None:
        check_prompt_length(prompt_length)
        self.reward_fn = reward
        self.vocab = vocab
        self.prompt_length = int(prompt_length)
        self.length_rule = length_rule(vocab, prompt_length if min_length is None else min_length, prompt_length)
        self.render_mode = render_mode
        self.action_space = gym.spaces.Discrete(vocab.size)
        self.observation_space = observation_space(self.prompt_length, vocab.size)
        self._actions: list[int] = []

    def _obs(self) -> np.ndarray:
        return prompt_observation(self._actions, self.prompt_length)

    @property
    def _finished(self) -> bool:
        ended = bool(self._actions) and self._actions[-1] == self.vocab.end_action
        return ended or len(self._actions) >= self.prompt_length

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._actions = []
        return self._obs(), {}

    def action_masks(self) -> np.ndarray:
        """The actions allowed now (all of them for a fixed-length prompt)."""
        if self.length_rule is None:
            return np.ones(self.vocab.size, dtype=bool)
        return self.length_rule.allowed(self._obs()[None])[0]

    def step(self, action) -> tuple[np.ndarray, float, bool, bool, dict]:
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is outside the action space Discrete({self.vocab.size})")
        if self._finished:
            raise RuntimeError("the prompt is finished; call reset() first")
        if self.length_rule is not None:
            self.length_rule.check(self._obs()[None], np.array([int(action)]))
        self._actions.append(int(action))
        if not self._finished:
            return self._obs(), 0.0, False, False, {}
        batch = self.reward_fn([self.vocab.decode(self._actions)])
        info = finished_info(self.vocab, self._actions, batch, 0)
        return self._obs(), float(batch.rewards[0]), True, False, info

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self.vocab.decode(self._actions)
        return None
