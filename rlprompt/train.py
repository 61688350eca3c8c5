"""Train a prompt: the whole path from a config to a prompt file.

Read top to bottom: load the target LM and the policy backbone, load the task, build the reward
(target LM scored on the train split), the batched env, the LM-adapter policy and the SB3
algorithm; learn, keeping the best prompts on dev as they appear; finally score the empty,
manual and learned prompts on dev and test and write ``runs/<run>/prompt.json``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from envs.vec_env import PromptVecEnv
from policies.lm_adapter import LMAdapterPolicy
from policies.vocab import build_vocabulary, check_vocabulary_name
from rewards.cache import CachedReward
from rewards.classification import AccuracyReward, GapReward
from rewards.fluency import FluencyReward
from rlprompt.artifact import Candidate, PromptFile, TaskSpec, library_versions, write_json_atomic
from rlprompt.callbacks import PromptSelector, TopKPromptCallback
from rlprompt.config import TrainConfig
from rlprompt.errors import RLPromptError
from rlprompt.evaluation import PromptScore, score_prompts, task_scorer
from rlprompt.devices import dtype_name, resolve_device, resolve_dtype
from rlprompt.models import LoadedModel, load_model
from rlprompt.perplexity import perplexity, start_token_id
from rlprompt.tasks import Task, load_task

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a run produced."""

    prompt_file: PromptFile
    path: Path
    """Where the prompt file was written."""
    baselines: dict[str, dict[str, PromptScore]]
    """Split -> {"empty", "manual", "learned"} -> score."""
    interrupted: bool = False


def load_config_task(config: TrainConfig) -> Task:
    return load_task(
        config.task,
        config.data,
        template=config.template,
        verbalizers=config.verbalizers,
        label_names=config.label_names,
        manual_prompt=config.manual_prompt,
        text_column=config.text_column,
        label_column=config.label_column,
    )


def _policy_backbone(config: TrainConfig, target: LoadedModel) -> LoadedModel:
    spec = config.policy_lm or (config.target_lm if target.kind == "causal" else "smollm2-135m")
    backbone = target if spec == target.name else load_model(spec, target.dtype, target.device)
    if backbone.kind != "causal":
        raise RLPromptError(f"policy backbone '{spec}' is a masked LM; the policy needs a causal LM")
    return backbone


def _start_token(tokenizer) -> int:
    token_id = start_token_id(tokenizer)
    if token_id is None:
        token_id = tokenizer.pad_token_id
    if token_id is None:
        raise RLPromptError("the policy tokenizer has no BOS, EOS or PAD token to start a prompt with")
    return token_id


def run_dir(config: TrainConfig) -> Path:
    name = config.run_name or f"{config.task.replace(':', '_').replace('/', '_')}-{Path(config.target_lm).name}-seed{config.seed}"
    return Path(config.runs_dir) / name


def train(config: TrainConfig, progress_bar: bool = True) -> TrainResult:
    """Learn a prompt for ``config``; see the module docstring for the steps.

    Returns:
        The prompt file (also written to ``runs/<run>/prompt.json``) and the baseline scores.
        A Ctrl-C stops training early; the best prompt so far is still written and returned.
    """
    config.check()
    check_vocabulary_name(config.vocabulary)
    started = time.monotonic()
    out_dir = run_dir(config)
    task = load_config_task(config)
    task.require("train", "dev")
    device = resolve_device(config.device)
    target = load_model(config.target_lm, resolve_dtype(config.dtype, device), device)
    scorer = task_scorer(target, task, config.calibration, max_batch_tokens=config.max_batch_tokens)
    backbone = _policy_backbone(config, target)
    vocab = build_vocabulary(backbone.tokenizer, config.vocabulary, backbone.model)

    reward_class = GapReward if config.reward == "gap" else AccuracyReward
    reward_kwargs = dict(correct_coef=config.correct_coef, incorrect_coef=config.incorrect_coef) if config.reward == "gap" else {}
    task_reward = reward_class(scorer, task.train, **reward_kwargs)
    if config.fluency_weight:
        task_reward = FluencyReward(task_reward, backbone.model, backbone.tokenizer, config.fluency_weight)
    reward = CachedReward(task_reward)
    env = PromptVecEnv(reward, vocab, num_envs=config.num_prompts, prompt_length=config.prompt_length)

    def dev_accuracy(prompts: list[str]) -> list[float]:
        return [score.accuracy for score in score_prompts(scorer, prompts, task.dev)]

    def prompt_file(ranked: list[Candidate], budget_steps: int, test_accuracy: float | None = None) -> PromptFile:
        best = ranked[0]
        # Each candidate's perplexity is computed once, when it first reaches the file.
        unmeasured = [c for c in ranked if c.perplexity is None]
        for candidate, value in zip(unmeasured, perplexity(backbone.model, backbone.tokenizer, [c.prompt for c in unmeasured])):
            candidate.perplexity = round(float(value), 3)
        return PromptFile(
            prompt=best.prompt,
            token_ids=best.token_ids,
            tokenizer=backbone.name,
            target_lm=target.name,
            task=TaskSpec(task.name, task.template.text, task.verbalizers, task.label_names, task.manual_prompt, config.calibration),
            accuracy={"train": best.train_accuracy, "dev": best.dev_accuracy, "test": test_accuracy},
            budget={
                "steps": budget_steps,
                "prompts_sampled": selector.prompts_sampled,
                "prompt_evaluations": reward.evaluations,
                "seconds": round(time.monotonic() - started, 1),
            },
            seed=config.seed,
            versions=library_versions(),
            candidates=ranked,
            perplexity=best.perplexity,
            perplexity_lm=backbone.name,
            dtype=dtype_name(target.dtype),
        )

    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "config.json", asdict(config))
    path = out_dir / "prompt.json"
    selector = PromptSelector(
        config.top_k,
        dev_accuracy,
        lambda ranked: prompt_file(ranked, env_steps()).save(path),
        evaluations=lambda: reward.evaluations,
    )
    env_steps = lambda: selector.batches  # noqa: E731
    interrupted = False
    algorithm = None if config.algo == "random" else _algorithm(config, env, backbone, vocab, out_dir, device)
    try:
        if algorithm is None:
            _random_search(config, env, selector, progress_bar)
        else:
            algorithm.learn(
                total_timesteps=config.steps * config.num_prompts * config.prompt_length,
                callback=TopKPromptCallback(selector, config.max_evaluations),
                progress_bar=progress_bar,
            )
    except KeyboardInterrupt:
        interrupted = True
        logger.warning("interrupted: keeping the best prompt so far")
    if algorithm is not None:
        algorithm.policy.save_trainable(str(out_dir / "policy.safetensors"))
    write_json_atomic(out_dir / "history.json", selector.history)
    logger.info(
        "reward cache: %d of %d sampled prompts were repeats (hit rate %.1f%%)",
        reward.hits, reward.lookups, 100 * reward.hit_rate,
    )
    ranked = selector.ranked()
    if not ranked:
        raise RLPromptError("training stopped before any prompt was finished; nothing to save")

    baselines: dict[str, dict[str, PromptScore]] = {}
    learned = ranked[0].prompt
    splits = ["dev", "test"] if config.evaluate_test and task.test and not interrupted else ["dev"]
    for split in splits:
        scores = score_prompts(scorer, ["", task.manual_prompt, learned], task.split(split))
        baselines[split] = dict(zip(["empty", "manual", "learned"], scores))
    result_file = prompt_file(ranked, env_steps(), baselines["test"]["learned"].accuracy if "test" in baselines else None)
    result_file.save(path)
    write_json_atomic(
        out_dir / "baselines.json",
        {split: {name: asdict(score) for name, score in scores.items()} for split, scores in baselines.items()},
    )
    return TrainResult(result_file, path, baselines, interrupted)


def _random_search(config: TrainConfig, env: PromptVecEnv, selector: PromptSelector, progress_bar: bool) -> None:
    """The baseline RL must beat: every token drawn uniformly from the same action vocabulary,
    prompts scored and chosen exactly as in RL (same env, reward, cache and selector)."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(config.seed)
    env.reset()
    for _ in tqdm(range(config.steps), desc="random search", unit="step", disable=not progress_bar):
        for _ in range(config.prompt_length):
            _, _, _, infos = env.step(rng.integers(env.vocab.size, size=env.num_envs))
        selector.add(infos)
        if selector.budget_spent(config.max_evaluations):
            return


def _algorithm(config: TrainConfig, env: PromptVecEnv, backbone: LoadedModel, vocab, out_dir: Path, device: torch.device):
    from stable_baselines3 import A2C, PPO

    policy_kwargs = dict(
        backbone=backbone.model,
        action_token_ids=vocab.token_ids,
        start_token_id=_start_token(backbone.tokenizer),
        adapter_hidden=config.adapter_hidden,
    )
    rollout = config.num_prompts * config.prompt_length
    common = dict(
        policy=LMAdapterPolicy,
        env=env,
        learning_rate=config.learning_rate,
        n_steps=config.prompt_length,
        gamma=1.0,
        ent_coef=config.ent_coef,
        policy_kwargs=policy_kwargs,
        seed=config.seed,
        device=device,
        tensorboard_log=str(out_dir / "tensorboard"),
        verbose=0,
    )
    torch.manual_seed(config.seed)
    if config.algo == "ppo":
        return PPO(batch_size=rollout, n_epochs=config.n_epochs, gae_lambda=0.95, **common)
    return A2C(gae_lambda=1.0, **common)
