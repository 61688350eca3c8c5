"""RLPrompt's policy as a soft Q-network, for soft Q-learning (:mod:`rlprompt.search.sql`).

The same architecture as :mod:`rlprompt.policies.lm_adapter`, read differently: the frozen
backbone's last hidden state goes through the trainable adapter and the frozen tied output
head, and the resulting logits over the action vocabulary *are* the Q-values of the next token;
the soft value is ``V = logsumexp Q`` and the policy is ``softmax(Q)``.

Soft Q-learning bootstraps from a slowly moving target network. Only the adapter has a target
copy: the backbone and the head are frozen, so the target shares them (and the memo of
backbone features) instead of holding a second copy of the LM.
"""

from __future__ import annotations

import copy
from typing import Sequence

import gymnasium as gym
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from rlprompt.defaults import ADAPTER_HIDDEN
from rlprompt.envs.prompt_env import LengthRule
from rlprompt.policies.lm_adapter import BackboneFeatures, action_head_rows, make_adapter, mask_actions


class LMAdapterQNetwork(nn.Module):
    """Q-values of every action after a prompt prefix, with a Polyak-averaged target adapter.

    Args:
        observation_space: The env's observation space (``[a_1, ..., a_L, length]``).
        backbone: The frozen causal LM.
        action_token_ids: Token id of each action.
        start_token_id: Token the backbone reads before the first prompt token.
        adapter_hidden: Width of the adapter MLP (2048 in the paper).
        length_rule: Which actions may follow a prefix (variable-length prompts): a forbidden
            action's Q-value is the dtype's minimum, so it is never sampled and adds nothing to V.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        backbone: nn.Module,
        action_token_ids: Sequence[int],
        start_token_id: int,
        adapter_hidden: int = ADAPTER_HIDDEN,
        length_rule: LengthRule | None = None,
    ) -> None:
        super().__init__()
        self.length_rule = length_rule
        self.features = BackboneFeatures(observation_space, backbone, action_token_ids, start_token_id)
        self.adapter = make_adapter(self.features.features_dim, adapter_hidden)
        self.target_adapter = copy.deepcopy(self.adapter).requires_grad_(False)
        self.register_buffer("head_rows", action_head_rows(backbone, action_token_ids), persistent=False)

    def q_values(self, observations: torch.Tensor) -> torch.Tensor:
        """Q of each action, ``[B, A]``, from the online adapter (with gradients)."""
        return mask_actions(self.adapter(self.features(observations)) @ self.head_rows.T, observations, self.length_rule)

    @torch.no_grad()
    def target_q_values(self, observations: torch.Tensor) -> torch.Tensor:
        """Q of each action, ``[B, A]``, from the target adapter (no gradients)."""
        return mask_actions(self.target_adapter(self.features(observations)) @ self.head_rows.T, observations, self.length_rule)

    @torch.no_grad()
    def update_target(self, rate: float) -> None:
        """Polyak averaging: ``target <- (1 - rate) * target + rate * online``."""
        for target, online in zip(self.target_adapter.parameters(), self.adapter.parameters()):
            target.lerp_(online, rate)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.adapter.parameters())

    def save(self, path: str) -> None:
        """The online and target adapters (never the frozen LM), as safetensors."""
        tensors = {f"adapter.{k}": v for k, v in self.adapter.state_dict().items()}
        tensors.update({f"target_adapter.{k}": v for k, v in self.target_adapter.state_dict().items()})
        save_file({k: v.detach().contiguous() for k, v in tensors.items()}, path)

    def load(self, path: str) -> None:
        tensors = load_file(path)
        expected = {f"{part}.{k}" for part in ("adapter", "target_adapter") for k in self.adapter.state_dict()}
        if set(tensors) != expected:
            raise ValueError(f"checkpoint {path} does not match this Q-network (missing {sorted(expected - set(tensors))}, unexpected {sorted(set(tensors) - expected)})")
        for part in ("adapter", "target_adapter"):
            getattr(self, part).load_state_dict({k[len(part) + 1:]: v for k, v in tensors.items() if k.startswith(part + ".")})
