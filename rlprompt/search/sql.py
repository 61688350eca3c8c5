"""Soft Q-learning (SQL), RLPrompt's own algorithm, read top to bottom.

Each step:

1. **Collect.** ``num_prompts`` prompts are written in lockstep, each token sampled from
   ``softmax(Q)`` restricted to the ``sample_top_k`` likeliest actions (the paper's 256). The
   finished prompts are scored by the env's reward (cached: a repeated prompt costs nothing),
   z-scored across the batch by the env and multiplied by :data:`REWARD_SCALE` (the paper's
   reward shaping of [0, 1] to [0, 5] applied to z-scores).
2. **Move the target.** The target adapter moves towards the online one by Polyak averaging
   (:data:`TARGET_RATE`, the paper's 1e-3), before the loss, as the paper's ``_pre_steps`` does.
3. **Learn.** The loss averages two path-consistency terms of the sparse-reward episode
   (the paper's ``v2_v2r_v3_v3r`` with no reversed terms), each summed over the prompt's steps
   and averaged over the batch (see :func:`path_consistency_terms`); Adam, gradients clipped at
   :data:`MAX_GRAD_NORM`.

The Q-values are the policy network's logits over the action vocabulary
(:class:`rlprompt.policies.q_network.LMAdapterQNetwork`), ``V = logsumexp Q``. Written from the
paper (Deng et al., 2022, section 2 and appendix A) and its repository's SQL module and losses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rlprompt.policies.lm_adapter import top_k_logits
from rlprompt.policies.q_network import LMAdapterQNetwork
from rlprompt.search.base import PolicySearchMethod, SearchContext, record_batch, start_token

REWARD_SCALE = 5.0
"""Multiplies the batch-z-scored reward (the paper's reward shaping to [0, 5])."""
TARGET_RATE = 1e-3
"""Polyak rate of the target adapter per step (the paper's ``target_learning_rate``)."""
MAX_GRAD_NORM = 5.0
"""Gradient norm clip (the paper's)."""


def path_consistency_terms(
    q: torch.Tensor, q_target: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The single-step and multi-step soft path-consistency errors of each step of each episode.

    With ``A_t = Q(s_t, a_t) - V(s_t)`` from the online network and ``V'`` from the target, and
    the reward ``r`` arriving only after the last token (step ``T = length - 1``):

    * single-step: ``(A_t - (V'(s_{t+1}) - V'(s_t)))^2`` for ``t < T``, ``(A_T - (r - V'(s_T)))^2``;
    * multi-step: ``(sum_{u >= t} A_u - (r - V'(s_t)))^2``.

    Args:
        q: Online Q-values, ``[N, L, A]`` (with gradients).
        q_target: Target Q-values, ``[N, L, A]``.
        actions: The action taken at each step, ``[N, L]``.
        rewards: Each episode's (shaped) reward, ``[N]``.
        lengths: Each episode's number of steps, ``[N]``, 1..L; later steps are padding.

    Returns:
        ``(single, multi)``, each ``[N, L]``, zero on padding steps.
    """
    steps = q.shape[1]
    valid = torch.arange(steps, device=q.device)[None, :] < lengths[:, None]
    advantage = q.gather(-1, actions[..., None]).squeeze(-1) - q.logsumexp(-1)
    target_value = q_target.logsumexp(-1)
    rows, last = torch.arange(q.shape[0], device=q.device), lengths - 1
    next_value = torch.zeros_like(target_value)
    next_value[:, :-1] = target_value[:, 1:]
    next_value[rows, last] = rewards.to(next_value.dtype)
    single = (advantage - (next_value - target_value)) ** 2
    advantage_to_go = (advantage * valid).flip(1).cumsum(1).flip(1)
    multi = (advantage_to_go - (rewards[:, None] - target_value)) ** 2
    return single * valid, multi * valid


def sql_loss(q: torch.Tensor, q_target: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The mean of the two path-consistency terms, summed over steps, averaged over episodes."""
    single, multi = path_consistency_terms(q, q_target, actions, rewards, lengths)
    return ((single + multi) / 2).sum(1).mean()


def episode_lengths(actions: np.ndarray, end_action: int | None) -> np.ndarray:
    """Steps of each episode ``[N]`` from its actions ``[N, L]``: up to and including the first end
    action (the steps after it are forced and carry no decision), else all ``L``."""
    steps = actions.shape[1]
    if end_action is None:
        return np.full(len(actions), steps)
    ended = actions == end_action
    return np.where(ended.any(1), ended.argmax(1) + 1, steps)


class SQLSearch(PolicySearchMethod):
    """Soft Q-learning on the LM-adapter Q-network (see the module docstring)."""

    name = "sql"
    default_learning_rate = 5e-5
    default_sample_top_k = 256

    def __init__(self, context: SearchContext) -> None:
        super().__init__(context)
        config, backbone, env = context.config, context.backbone, context.env
        torch.manual_seed(config.seed)
        self.network = LMAdapterQNetwork(
            env.observation_space, backbone.model, context.vocab.token_ids, start_token(backbone.tokenizer), config.adapter_hidden,
            length_rule=env.length_rule,
        ).to(context.device)
        self.optimizer = torch.optim.Adam(self.network.trainable_parameters(), lr=self.learning_rate)
        self.logger = None

    def _observations(self, obs: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(obs, device=self.context.device)

    def collect(self, generator: torch.Generator) -> tuple[np.ndarray, torch.Tensor, np.ndarray, list[dict]]:
        """One batch of prompts sampled from top-k ``softmax(Q)``: observations ``[N, L, L+1]``,
        actions ``[N, L]``, the env's (z-scored) rewards ``[N]`` and the finished prompts' infos."""
        env = self.context.env
        obs = env.reset()
        observations, actions = [], []
        for _ in range(env.prompt_length):
            with torch.no_grad():
                logits = top_k_logits(self.network.q_values(self._observations(obs)), self.sample_top_k)
            action = torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)
            observations.append(obs)
            actions.append(action)
            obs, rewards, _, infos = env.step(action.cpu().numpy())
        return np.stack(observations, axis=1), torch.stack(actions, dim=1), rewards, infos

    def update(self, observations: np.ndarray, actions: torch.Tensor, rewards: np.ndarray) -> dict[str, float]:
        """One SQL step on a collected batch; returns what is logged."""
        self.network.update_target(TARGET_RATE)
        episodes, steps = actions.shape
        flat = self._observations(observations.reshape(episodes * steps, -1))
        q = self.network.q_values(flat).view(episodes, steps, -1)
        q_target = self.network.target_q_values(flat).view(episodes, steps, -1)
        shaped = REWARD_SCALE * torch.as_tensor(rewards, dtype=torch.float32, device=q.device)
        lengths = torch.as_tensor(episode_lengths(actions.cpu().numpy(), self.context.vocab.end_action), device=q.device)
        loss = sql_loss(q, q_target, actions, shaped, lengths)
        self.optimizer.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.network.trainable_parameters(), MAX_GRAD_NORM)
        self.optimizer.step()
        probabilities = q.detach().softmax(-1)
        entropy = -(probabilities * q.detach().log_softmax(-1)).sum(-1).mean()
        return {"sql/loss": float(loss.detach()), "sql/grad_norm": float(grad_norm), "sql/entropy": float(entropy), "sql/v_mean": float(q.detach().logsumexp(-1).mean())}

    def run(self, steps: int, progress_bar: bool) -> None:
        from stable_baselines3.common.logger import configure
        from tqdm.auto import tqdm

        context = self.context
        selector, config = context.selector, context.config
        self.logger = self.logger or configure(str(context.out_dir / "tensorboard" / "SQL_1"), ["tensorboard"])
        # A resumed run is seeded by the batches already done too, so it does not redraw them.
        generator = torch.Generator(device=context.device).manual_seed(config.seed * 1_000_003 + selector.batches)
        for _ in tqdm(range(steps), desc="soft Q-learning", unit="step", disable=not progress_bar):
            observations, actions, rewards, infos = self.collect(generator)
            logged = self.update(observations, actions, rewards)
            finished = selector.add(infos)
            for key, value in logged.items():
                self.logger.record(key, value)
            record_batch(self.logger, selector, finished)
            self.logger.dump(selector.batches)
            if selector.should_stop(config.max_evaluations, config.patience):
                return

    @torch.no_grad()
    def greedy_action(self, observation: np.ndarray) -> int:
        return int(self.network.q_values(self._observations(observation[None])).argmax(-1)[0])

    def write_policy(self, path: Path) -> None:
        """Both adapters (never the frozen LM)."""
        self.network.save(str(path))

    def read_policy(self, path: Path) -> None:
        self.network.load(str(path))
