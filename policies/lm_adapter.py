"""RLPrompt's policy as a stable-baselines3 actor-critic.

A frozen LM backbone reads the prompt written so far; a small trainable MLP (the adapter)
maps its last hidden state to a vector that goes through the backbone's own frozen, tied
output head, restricted to the action vocabulary, giving one logit per action. A small value
head reads the same features. Only the adapter and the value head train.

The adapter starts near zero (as in the paper), so the first prompts are drawn almost
uniformly from the action vocabulary.

Precision: the backbone may run in bf16, but everything trainable (adapter, value head) and
the action head's rows are fp32. The two meet at one cast, the backbone's last hidden state
to fp32 in :class:`BackboneFeatures`; nothing downstream of it sees the backbone's dtype.
"""

from __future__ import annotations

from typing import Sequence

import gymnasium as gym
import torch
from safetensors.torch import load_file, save_file
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from rlprompt.defaults import ADAPTER_HIDDEN
from rlprompt.envs.prompt_env import LengthRule


class BackboneFeatures(BaseFeaturesExtractor):
    """Last hidden state of the frozen backbone after ``[start token] + prompt so far``.

    The observation is ``[a_1, ..., a_L, length]``: action indices padded to ``L`` and the
    number written so far. Features of an observation are memoised, so PPO's epochs over a
    rollout do not re-run the backbone.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        backbone: nn.Module,
        action_token_ids: Sequence[int],
        start_token_id: int,
        memo_size: int = 65536,
    ) -> None:
        hidden = backbone.get_input_embeddings().weight.shape[1]
        super().__init__(observation_space, features_dim=hidden)
        # Kept out of the module tree: its weights are frozen and must not reach the optimizer,
        # the checkpoint, or SB3's train()/eval() switches.
        self.__dict__["backbone"] = backbone
        self.register_buffer("action_token_ids", torch.tensor(list(action_token_ids)), persistent=False)
        self.start_token_id = start_token_id
        self.memo_size = memo_size
        self._memo: dict[bytes, torch.Tensor] = {}

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        # Every SB3 path from an observation to an action distribution runs through here, so the
        # policy reads the observations of the latest call to mask actions (see LengthRule).
        self.last_observations = observations
        obs = observations.long()
        # The memo is keyed on the host: one small copy of the [batch, L + 1] ints per call.
        host = obs.cpu().numpy()
        keys = [row.tobytes() for row in host]
        missing = [i for i, key in enumerate(keys) if key not in self._memo]
        if missing:
            computed = self._run_backbone(obs[missing], width=int(host[missing, -1].max()) + 1)
            if len(self._memo) + len(missing) > self.memo_size:
                self._memo.clear()
            for i, features in zip(missing, computed):
                self._memo[keys[i]] = features
        return torch.stack([self._memo[key] for key in keys])

    @torch.no_grad()
    def _run_backbone(self, obs: torch.Tensor, width: int) -> torch.Tensor:
        """Features of ``obs``; ``width`` is the longest prompt in it plus the start token."""
        lengths = obs[:, -1]
        actions = obs[:, :-1]
        ids = torch.full((obs.shape[0], width), self.start_token_id, dtype=torch.long, device=obs.device)
        positions = torch.arange(width - 1, device=obs.device)
        written = positions[None, :] < lengths[:, None]
        ids[:, 1:] = torch.where(written, self.action_token_ids[actions[:, : width - 1]], self.start_token_id)
        mask = torch.cat([torch.ones_like(lengths)[:, None], written.long()], dim=1)
        hidden = self.backbone.base_model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        # Right-padded: the last written token sits at index ``length``. The one cast to fp32.
        return hidden[torch.arange(obs.shape[0], device=obs.device), lengths].float()


ADAPTER_INIT_STD = 1e-4
"""Std of the adapter's initial weights: near zero, so the first prompts are almost uniform."""


def make_adapter(hidden: int, adapter_hidden: int = ADAPTER_HIDDEN, init_std: float = ADAPTER_INIT_STD) -> nn.Sequential:
    """The trainable MLP from the backbone's last hidden state to a vector for the tied head."""
    adapter = nn.Sequential(nn.Linear(hidden, adapter_hidden), nn.ReLU(), nn.Linear(adapter_hidden, hidden))
    for layer in adapter:
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, std=init_std)
            nn.init.zeros_(layer.bias)
    return adapter


def action_head_rows(backbone: nn.Module, action_token_ids: Sequence[int]) -> torch.Tensor:
    """The frozen output head's rows of the action tokens, in fp32 whatever the backbone's dtype
    (the adapter's fp32 output meets them)."""
    head = backbone.get_output_embeddings().weight
    return head.detach()[torch.tensor(list(action_token_ids), device=head.device)].float()


def top_k_logits(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """``logits`` with all but the ``k`` largest of each row at the dtype's minimum (a
    probability of 0 that keeps entropy and log-probabilities finite); None: unchanged."""
    if k is None or k >= logits.shape[-1]:
        return logits
    # By index, not by value: exactly k survive even when logits tie (an untrained adapter's are near-equal).
    dropped = torch.ones_like(logits, dtype=torch.bool).scatter_(-1, logits.topk(k, dim=-1).indices, False)
    return logits.masked_fill(dropped, torch.finfo(logits.dtype).min)


def mask_actions(logits: torch.Tensor, observations: torch.Tensor, rule: LengthRule | None) -> torch.Tensor:
    """``logits`` with the actions ``rule`` forbids after each observation at the dtype's minimum
    (probability 0, finite log-probabilities); unchanged for a fixed-length prompt (None)."""
    if rule is None:
        return logits
    allowed = torch.as_tensor(rule.allowed(observations.long().cpu().numpy()), device=logits.device)
    return logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)


class AdapterAndValue(nn.Module):
    """The trainable part: the adapter MLP (actor) and a small MLP for the critic."""

    def __init__(self, hidden: int, adapter_hidden: int = ADAPTER_HIDDEN, value_hidden: int = 64, init_std: float = ADAPTER_INIT_STD) -> None:
        super().__init__()
        self.latent_dim_pi = hidden
        self.latent_dim_vf = value_hidden
        self.adapter = make_adapter(hidden, adapter_hidden, init_std)
        self.critic = nn.Sequential(nn.Linear(hidden, value_hidden), nn.Tanh())

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return self.adapter(features)

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return self.critic(features)


class LMAdapterPolicy(ActorCriticPolicy):
    """Frozen backbone -> trainable adapter -> frozen tied output head over the action vocabulary.

    Args:
        observation_space: The env's observation space.
        action_space: ``Discrete(len(action_token_ids))``.
        lr_schedule: Learning-rate schedule (SB3).
        backbone: The frozen causal LM.
        action_token_ids: Token id of each action.
        start_token_id: Token the backbone reads before the first prompt token.
        adapter_hidden: Width of the adapter MLP (2048 in the paper).
        sample_top_k: Sample each token from the ``k`` likeliest actions only (the paper's 256);
            the truncated distribution is the policy's own, so PPO's ratios and entropy use it
            too; None: the full distribution. The greedy action is the same either way.
        length_rule: Which actions may follow a prefix (variable-length prompts); None: all.
        **kwargs: Passed to :class:`ActorCriticPolicy` (``ortho_init`` is always off: SB3's
            orthogonal init would overwrite the backbone's pretrained head).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Discrete,
        lr_schedule,
        backbone: nn.Module,
        action_token_ids: Sequence[int],
        start_token_id: int,
        adapter_hidden: int = ADAPTER_HIDDEN,
        sample_top_k: int | None = None,
        length_rule: LengthRule | None = None,
        **kwargs,
    ) -> None:
        self.backbone_hidden = backbone.get_input_embeddings().weight.shape[1]
        self.adapter_hidden = adapter_hidden
        self.sample_top_k = sample_top_k
        self.length_rule = length_rule
        self._head_rows = action_head_rows(backbone, action_token_ids)
        kwargs["ortho_init"] = False
        kwargs["features_extractor_class"] = BackboneFeatures
        kwargs["features_extractor_kwargs"] = dict(
            backbone=backbone, action_token_ids=action_token_ids, start_token_id=start_token_id
        )
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = AdapterAndValue(self.backbone_hidden, self.adapter_hidden)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        head_rows = self.__dict__.pop("_head_rows")
        head = nn.Linear(self.backbone_hidden, head_rows.shape[0], bias=False)
        # The rows become the head's weight as they are (a fresh fp32 copy of the backbone's
        # rows, frozen): one copy in memory, not two (264 MB each for Gemma-3's vocabulary).
        head.weight = nn.Parameter(head_rows, requires_grad=False)
        self.action_net = head
        self.optimizer = self.optimizer_class(self.trainable_parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_action_dist_from_latent(self, latent_pi: torch.Tensor):
        logits = mask_actions(self.action_net(latent_pi), self.features_extractor.last_observations, self.length_rule)
        return self.action_dist.proba_distribution(action_logits=top_k_logits(logits, self.sample_top_k))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The adapter and value head only: never the frozen LM."""
        names = {id(p) for p in self.trainable_parameters()}
        return {k: v.detach().contiguous() for k, v in self.named_parameters() if id(v) in names}

    def save_trainable(self, path: str) -> None:
        save_file(self.trainable_state_dict(), path)

    def load_trainable(self, path: str) -> None:
        missing, unexpected = self.load_state_dict(load_file(path), strict=False)
        trainable = set(self.trainable_state_dict())
        if unexpected or trainable & set(missing):
            raise ValueError(f"checkpoint {path} does not match this policy (missing {sorted(trainable & set(missing))}, unexpected {unexpected})")
