"""GRPO (Shao et al., 2024) for an instruction writer with LoRA adapters.

Each batch is one group: ``num_prompts`` instructions sampled after the same meta-prompt. Their
train rewards, standardised within the group, are the advantages (no value network). The
adapters then take ``n_epochs`` Adam steps on the clipped-ratio objective with a KL penalty to
the untrained LM (the adapters switched off), per token:

    loss = -mean_i mean_t [ min(r_t A_i, clip(r_t, 1 - eps, 1 + eps) A_i) - beta * KL_t ]
    r_t = exp(logp_t - logp_old_t),  KL_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1   (k3)

Why not TRL's ``GRPOTrainer``: it owns the training loop (generation, reward call, optimizer
step inside ``Trainer.train``), while here the run owns it: the budget counts distinct
instructions and stops mid-run, the selector takes every batch, and the checkpoint after every
batch (adapters, Adam state, selector, reward cache) is what ``--resume`` after ``kill -9``
needs. See the note in README (*Instruction writers*).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlprompt.policies.instruction_writer import InstructionWriter, LoraSettings
from rlprompt.search.base import load_optimizer, save_optimizer
from rlprompt.search.opro import SHOWN
from rlprompt.search.text import TextSearch

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "writer-"
"""A checkpoint folder per batch (``writer-<batch>``); the two newest are kept, so a run killed
while writing one resumes from the one its ``state.json`` names."""


def group_advantages(rewards: np.ndarray, epsilon: float = 1e-6) -> np.ndarray:
    """Rewards standardised within the group; all zero when the group's rewards are all equal."""
    rewards = np.asarray(rewards, dtype=np.float64)
    spread = rewards.std()
    return np.zeros_like(rewards) if spread < epsilon else (rewards - rewards.mean()) / spread


def grpo_loss(
    log_probs: torch.Tensor, old_log_probs: torch.Tensor, ref_log_probs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
    clip_range: float, kl_coef: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The GRPO loss of one group (see the module docstring) and its statistics.

    Args:
        log_probs: ``[G, T]`` log-probabilities of the sampled tokens under the policy now (with gradients).
        old_log_probs: ``[G, T]`` the same under the policy that sampled them.
        ref_log_probs: ``[G, T]`` the same under the untrained LM.
        advantages: ``[G]`` one per sample.
        mask: ``[G, T]`` 1 for a real token, 0 for padding.
        clip_range: eps.
        kl_coef: beta.

    Returns:
        The loss, and its mean KL per token, clipped fraction and policy objective.
    """
    ratio = torch.exp(log_probs - old_log_probs)
    unclipped = ratio * advantages[:, None]
    clipped = torch.clamp(ratio, 1 - clip_range, 1 + clip_range) * advantages[:, None]
    objective = torch.minimum(unclipped, clipped)
    gap = ref_log_probs - log_probs
    kl = torch.exp(gap) - gap - 1
    per_token = -(objective - kl_coef * kl)
    tokens = mask.sum(dim=1).clamp(min=1)
    loss = ((per_token * mask).sum(dim=1) / tokens).mean()
    real = mask.bool()
    ratio, kl, objective = ratio.detach(), kl.detach(), objective.detach()
    stats = {
        "kl": float(kl[real].mean()) if real.any() else 0.0,
        "clipped_fraction": float(((ratio[real] - 1).abs() > clip_range).float().mean()) if real.any() else 0.0,
        "objective": float(((objective * mask).sum(dim=1) / tokens).mean()),
    }
    return loss, stats


class GRPOSearch(TextSearch):
    """GRPO on the instruction writer's LoRA adapters (its own copy of the policy LM)."""

    name = "grpo"
    default_learning_rate = 3e-4

    def __init__(self, context) -> None:
        super().__init__(context)
        self.optimizer = torch.optim.Adam(self.writer.trainable_parameters(), lr=self.learning_rate)

    def make_writer(self) -> InstructionWriter:
        from rlprompt.models import load_model

        config, backbone = self.context.config, self.context.backbone
        torch.manual_seed(config.seed)
        # Its own copy: the adapters go into the modules in place, and the run's copy (maybe the
        # target itself) must stay untouched.
        copy = load_model(backbone.name, backbone.dtype, backbone.device)
        return InstructionWriter(copy, config.prompt_length, config.temperature, LoraSettings(rank=config.lora_rank, alpha=2 * config.lora_rank))

    def step(self) -> tuple[list[dict[str, Any]], dict[str, float | None]]:
        config = self.context.config
        meta_prompt = self.batch_meta_prompt()
        samples = self.writer.sample(meta_prompt, config.num_prompts, self.generator())
        infos, stats = self.score(samples)
        stats.update(self.update(meta_prompt, samples.token_ids, np.array([info["raw_reward"] for info in infos])))
        return infos, stats

    def update(self, meta_prompt: list[int], samples: list[tuple[int, ...]], rewards: np.ndarray) -> dict[str, float]:
        """``n_epochs`` steps on one group written after ``meta_prompt``; the last epoch's loss
        statistics (KL, clipped fraction, objective) and the samples' entropy (their mean negative
        log-probability per token)."""
        config, writer = self.context.config, self.writer
        advantages = torch.tensor(group_advantages(rewards), dtype=torch.float32, device=writer.device)
        with torch.no_grad():
            old, mask = writer.log_probs(meta_prompt, samples)
            ref, _ = writer.log_probs(meta_prompt, samples, adapters=False)
        entropy = {"entropy": float(-(old.sum() / mask.sum()))}
        if not advantages.abs().any():
            # Equal rewards carry no signal: no step (Adam's momentum would still move the adapters).
            return {**entropy, **grpo_loss(old, old, ref, advantages, mask, config.clip_range, config.kl_coef)[1]}
        for _ in range(config.n_epochs):
            log_probs, _ = writer.log_probs(meta_prompt, samples)
            loss, stats = grpo_loss(log_probs, old, ref, advantages, mask, config.clip_range, config.kl_coef)
            self.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(writer.trainable_parameters(), 1.0)
            self.optimizer.step()
        return {**entropy, **stats}

    def greedy_prompt(self) -> tuple[str, list[int]]:
        samples = self.writer.sample(self.batch_meta_prompt(), 1, greedy=True)
        return samples.texts[0], list(samples.token_ids[0])

    # -- checkpoints --------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """The adapters (PEFT's layout) and Adam's state in ``writer-<batch>``, written aside and
        renamed; the two newest checkpoint folders are kept."""
        batches = self.context.selector.batches
        target = folder / f"{CHECKPOINT_PREFIX}{batches}"
        staging = folder / f".{CHECKPOINT_PREFIX}{batches}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        self.writer.save_adapter(staging)
        save_optimizer(self.optimizer, staging / "optimizer.pt")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        for old in sorted(checkpoints(folder), key=lambda path: int(path.name[len(CHECKPOINT_PREFIX):]))[:-2]:
            shutil.rmtree(old, ignore_errors=True)

    def load(self, folder: Path) -> None:
        from rlprompt.errors import RLPromptError

        path = folder / f"{CHECKPOINT_PREFIX}{self.context.selector.batches}"
        if not (path / "adapter_model.safetensors").is_file():
            raise RLPromptError(f"cannot resume: {path} (the adapters of the checkpoint's batch) does not exist")
        self.writer.load_adapter(path)
        load_optimizer(self.optimizer, path / "optimizer.pt")

    @property
    def adapter_path(self) -> str:
        """Where the newest adapters are, relative to the run folder (recorded in the prompt file)."""
        return f"{CHECKPOINT_PREFIX}{self.context.selector.batches}"


class GRPOHistorySearch(GRPOSearch):
    """GRPO on OPRO's meta-prompt: the writer sees the best instructions scored so far, as OPRO's
    does, and its adapters learn from each group as GRPO's do (both levers at once)."""

    name = "grpo-opro"
    shown_history = SHOWN


def checkpoints(folder: Path) -> list[Path]:
    """The ``writer-<batch>`` folders in a run folder."""
    return [path for path in folder.glob(f"{CHECKPOINT_PREFIX}*") if path.is_dir() and path.name[len(CHECKPOINT_PREFIX):].isdigit()]
