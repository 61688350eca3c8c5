"""The interface every search method implements.

A method gets a :class:`SearchContext` (the reward with its cache and budget, the selector, the
action vocabulary, the policy backbone, the batched env) and proposes prompts until its step
count or the evaluation budget runs out. It need not use the token-by-token env: a method that
samples whole texts calls ``context.reward`` and ``context.selector`` itself.
"""

from __future__ import annotations

import functools
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

if TYPE_CHECKING:
    import numpy as np
    import torch

    from rlprompt.config import TrainConfig
    from rlprompt.envs.vec_env import PromptVecEnv
    from rlprompt.envs.vocab import ActionVocabulary
    from rlprompt.models import LoadedModel
    from rlprompt.rewards.cache import CachedReward
    from rlprompt.selection import PromptSelector
    from rlprompt.tasks import Task


@dataclass
class SearchContext:
    """What a search method runs on; the same objects for every method."""

    config: TrainConfig
    reward: CachedReward
    """The training reward; it scores each distinct prompt once and counts evaluations."""
    selector: PromptSelector
    """Every finished batch goes here (``selector.add(infos)``)."""
    vocab: ActionVocabulary
    backbone: LoadedModel
    """The policy's frozen causal LM."""
    make_env: Callable[[], PromptVecEnv]
    """Builds the token-by-token env (:attr:`env`); a method that writes whole texts never calls it."""
    device: torch.device
    out_dir: Path
    task: Task | None = None
    """The task in the target's format (an instruction writer's meta-prompt reads it)."""

    @functools.cached_property
    def env(self) -> PromptVecEnv:
        """``num_prompts`` prompts written token by token and scored together, built on first use."""
        return self.make_env()


class SearchMethod(ABC):
    """One way of proposing prompts.

    Args:
        context: What it runs on.
    """

    name: ClassVar[str]
    """Its ``--algo`` name."""
    default_learning_rate: ClassVar[float | None] = None
    """``--learning-rate`` when the config leaves it unset (None: the method learns nothing)."""
    default_sample_top_k: ClassVar[int] = 0
    """``--sample-top-k`` when the config leaves it unset (0: the full distribution)."""

    def __init__(self, context: SearchContext) -> None:
        self.context = context

    @property
    def learning_rate(self) -> float:
        """The config's learning rate, else this method's default."""
        value = self.context.config.learning_rate
        return value if value is not None else self.default_learning_rate

    @property
    def sample_top_k(self) -> int | None:
        """How many of the likeliest actions each token is sampled from; None: all of them."""
        value = self.context.config.sample_top_k
        value = value if value is not None else self.default_sample_top_k
        return value or None

    def greedy_prompt(self) -> tuple[str, list[int]] | None:
        """The policy's most likely prompt, as its text and token ids; None for a method without a
        policy. The run scores it on train and dev every ``greedy_every`` steps."""
        return None

    def writer_record(self) -> dict[str, str | None] | None:
        """What the prompt file records of an instruction writer (:attr:`PromptFile.writer`); None otherwise."""
        return None

    @abstractmethod
    def run(self, steps: int, progress_bar: bool) -> None:
        """Propose ``steps`` batches of prompts (fewer once ``config.max_evaluations`` is spent),
        feeding every finished batch to ``context.selector``."""

    def save(self, folder: Path) -> None:  # noqa: B027 (an optional hook: random search keeps no state)
        """Write what :meth:`load` needs to continue (default: nothing to keep)."""

    def load(self, folder: Path) -> None:  # noqa: B027 (an optional hook, like save)
        """Continue from what :meth:`save` wrote in ``folder``."""


POLICY_FILE = "policy.safetensors"
"""A policy method's trainable weights in a run folder, for ``--resume``."""
OPTIMIZER_FILE = "optimizer.pt"
"""A policy method's optimizer state (Adam's moments) in a run folder, for ``--resume``."""


def save_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` a temporary file beside ``path``, then rename it: a run killed mid-write keeps the previous file."""
    temporary = path.parent / f".{path.name}.tmp"
    write(temporary)
    os.replace(temporary, path)


def save_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    import torch

    save_atomically(path, lambda temporary: torch.save(optimizer.state_dict(), temporary))


def load_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Restore what :func:`save_optimizer` wrote; a run folder from before optimizer checkpoints
    has none, and then the optimizer starts fresh."""
    import torch

    if path.is_file():
        optimizer.load_state_dict(torch.load(path, weights_only=True))


class PolicySearchMethod(SearchMethod):
    """A search method with a trainable policy over the token-by-token env: its greedy prompt,
    and its weights checkpointed in ``policy.safetensors``."""

    @abstractmethod
    def greedy_action(self, observation: np.ndarray) -> int:
        """The policy's most likely action after one observation (``[a_1, ..., a_L, length]``)."""

    @abstractmethod
    def write_policy(self, path: Path) -> None:
        """Write the trainable weights (never the frozen LM) to ``path``."""

    @abstractmethod
    def read_policy(self, path: Path) -> None:
        """Load what :meth:`write_policy` wrote."""

    optimizer: torch.optim.Optimizer
    """The optimizer of the trainable weights (its state is checkpointed with them)."""

    def decode_greedy(self) -> list[int]:
        """The policy's most likely prompt, token by token (argmax), as actions."""
        from rlprompt.envs.prompt_env import prompt_observation

        actions: list[int] = []
        for _ in range(self.context.env.prompt_length):
            actions.append(self.greedy_action(prompt_observation(actions, self.context.env.prompt_length)))
        return actions

    def greedy_prompt(self) -> tuple[str, list[int]]:
        vocab = self.context.vocab
        actions = self.decode_greedy()
        return vocab.decode(actions), vocab.ids(actions)

    def save(self, folder: Path) -> None:
        """The trainable weights and the optimizer's state, each replaced atomically."""
        save_atomically(folder / POLICY_FILE, self.write_policy)
        save_optimizer(self.optimizer, folder / OPTIMIZER_FILE)

    def load(self, folder: Path) -> None:
        from rlprompt.errors import RLPromptError

        path = folder / POLICY_FILE
        if not path.is_file():
            raise RLPromptError(f"cannot resume: {path} does not exist")
        self.read_policy(path)
        load_optimizer(self.optimizer, folder / OPTIMIZER_FILE)


def start_token(tokenizer) -> int:
    """The token the policy backbone reads before the first prompt token."""
    from rlprompt.errors import RLPromptError
    from rlprompt.perplexity import start_token_id

    token_id = start_token_id(tokenizer)
    if token_id is None:
        token_id = tokenizer.pad_token_id
    if token_id is None:
        raise RLPromptError("the policy tokenizer has no BOS, EOS or PAD token to start a prompt with")
    return token_id


def record_batch(logger: Any, selector: PromptSelector, finished: list[dict[str, Any]]) -> None:
    """Record a finished batch's reward and metric statistics and the best prompt so far on a
    stable-baselines3 logger (TensorBoard); nothing for an unfinished batch."""
    import numpy as np

    if not finished:
        return
    raw = np.array([info["raw_reward"] for info in finished])
    logger.record("prompts/train_reward_mean", float(raw.mean()))
    logger.record("prompts/train_reward_max", float(raw.max()))
    for name in finished[0]["metrics"]:
        logger.record(f"prompts/train_{name}_mean", float(np.mean([info["metrics"][name] for info in finished])))
    logger.record("prompts/distinct_in_batch", len({info["prompt"] for info in finished}))
    best = selector.best
    if best is not None:
        logger.record(f"prompts/best_dev_{selector.metric}", float(best.dev_accuracy or 0.0))
        logger.record("prompts/best_train_reward", float(best.train_reward))
