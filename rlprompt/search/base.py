"""The interface every search method implements.

A method gets a :class:`SearchContext` (the reward with its cache and budget, the selector, the
action vocabulary, the policy backbone, the batched env) and proposes prompts until its step
count or the evaluation budget runs out. It need not use the token-by-token env: a method that
samples whole texts calls ``context.reward`` and ``context.selector`` itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import torch

    from rlprompt.config import TrainConfig
    from rlprompt.envs.vec_env import PromptVecEnv
    from rlprompt.envs.vocab import ActionVocabulary
    from rlprompt.models import LoadedModel
    from rlprompt.rewards.cache import CachedReward
    from rlprompt.selection import PromptSelector


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
    env: PromptVecEnv
    """``num_prompts`` prompts written token by token and scored together."""
    device: torch.device
    out_dir: Path


class SearchMethod(ABC):
    """One way of proposing prompts.

    Args:
        context: What it runs on.
    """

    name: ClassVar[str]
    """Its ``--algo`` name."""

    def __init__(self, context: SearchContext) -> None:
        self.context = context

    @abstractmethod
    def run(self, steps: int, progress_bar: bool) -> None:
        """Propose ``steps`` batches of prompts (fewer once ``config.max_evaluations`` is spent),
        feeding every finished batch to ``context.selector``."""

    def save(self, folder: Path) -> None:  # noqa: B027 (an optional hook: random search keeps no state)
        """Write what :meth:`load` needs to continue (default: nothing to keep)."""

    def load(self, folder: Path) -> None:  # noqa: B027 (an optional hook, like save)
        """Continue from what :meth:`save` wrote in ``folder``."""
