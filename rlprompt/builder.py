"""Build a run's objects from a :class:`TrainConfig`: the one builder for ``rlprompt train``
and ``gymnasium.make("rlprompt/Prompt-v0")``.

Order: the task, the models (one :class:`ModelPool`, so ``--device``/``--dtype`` are resolved
once and a model the target and the policy share loads once), the task in the target's format
(:meth:`Task.for_target`: a masked LM gets a preset's masked template and verbalizers), the
target's scorer from its backend, the policy backbone and its action vocabulary, the training reward (cached).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlprompt.config import TrainConfig
from rlprompt.defaults import DEFAULT_MODEL
from rlprompt.envs.prompt_env import PromptEnv
from rlprompt.envs.vec_env import PromptVecEnv
from rlprompt.envs.vocab import ActionVocabulary, build_vocabulary, check_vocabulary_name
from rlprompt.errors import RLPromptError
from rlprompt.models import LoadedModel, ModelPool
from rlprompt.rewards.base import PromptReward
from rlprompt.rewards.cache import CachedReward
from rlprompt.rewards.classification import AccuracyReward, GapReward
from rlprompt.rewards.fluency import FluencyReward
from rlprompt.scoring.base import ClassScorer, is_local
from rlprompt.scoring.factory import make_scorer
from rlprompt.tasks import Task, load_task

REWARDS = {"gap": GapReward, "accuracy": AccuracyReward}
"""``--reward`` name -> classification reward."""


@dataclass
class RunObjects:
    """Everything a run is wired from."""

    config: TrainConfig
    task: Task
    models: ModelPool
    scorer: ClassScorer
    """The target's class scores (calibrated when the config says so)."""
    backbone: LoadedModel
    """The policy's frozen causal LM (also the perplexity and fluency LM)."""
    vocab: ActionVocabulary
    reward: CachedReward
    """The training reward on the train split; each distinct prompt is scored once."""

    def vec_env(self) -> PromptVecEnv:
        """``num_prompts`` prompts written in lockstep and scored together."""
        config = self.config
        return PromptVecEnv(
            self.reward, self.vocab, num_envs=config.num_prompts, prompt_length=config.prompt_length, min_length=config.shortest_prompt
        )


def config_task(config: TrainConfig) -> Task:
    """The task a config names, with its overrides."""
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


def target_task(config: TrainConfig, task: Task, models: ModelPool) -> Task:
    """``task`` in the format of the config's target: a local model's kind decides (loading it
    into ``models``); other backends keep the causal format a task loads with."""
    if not is_local(config.target_lm):
        return task
    return task.for_target(models.get(config.target_lm).kind)


def policy_backbone(config: TrainConfig, models: ModelPool) -> LoadedModel:
    """``--policy-lm``, else the target when it is a causal LM loaded here, else the default model."""
    spec = config.policy_lm
    if spec is None:
        spec = config.target_lm if is_local(config.target_lm) else DEFAULT_MODEL
        if spec != DEFAULT_MODEL and models.get(spec).kind != "causal":
            spec = DEFAULT_MODEL
    backbone = models.get(spec)
    if backbone.kind != "causal":
        raise RLPromptError(f"policy backbone '{spec}' is a masked LM; the policy needs a causal LM")
    return backbone


def training_reward(config: TrainConfig, scorer: ClassScorer, task: Task, backbone: LoadedModel) -> PromptReward:
    """The reward of ``config.reward`` on the train split, with the fluency term if weighted."""
    options = dict(correct_coef=config.correct_coef, incorrect_coef=config.incorrect_coef) if config.reward == "gap" else {}
    reward: PromptReward = REWARDS[config.reward](scorer, task.train, **options)
    if config.fluency_weight:
        reward = FluencyReward(reward, backbone.model, backbone.tokenizer, config.fluency_weight)
    return reward


def build(config: TrainConfig, models: ModelPool | None = None) -> RunObjects:
    """Check ``config``, then load and wire everything a run needs (see the module docstring).

    Args:
        config: The run's settings.
        models: Models already loaded (tests, experiments); default: a new pool on
            ``config.device`` in ``config.dtype``.

    Raises:
        RLPromptError: On any bad setting, before a model loads where it can be seen without one.
    """
    config.check()
    check_vocabulary_name(config.vocabulary)
    task = config_task(config)
    task.require("train", "dev")
    models = models or ModelPool(config.device, config.dtype)
    task = target_task(config, task, models)
    scorer = make_scorer(config.target_lm, task, config.calibration, models=models, max_batch_tokens=config.max_batch_tokens)
    backbone = policy_backbone(config, models)
    vocab = build_vocabulary(backbone.tokenizer, config.vocabulary, backbone.model)
    if config.shortest_prompt < config.prompt_length:
        vocab = vocab.with_end_action()
    reward = CachedReward(training_reward(config, scorer, task, backbone))
    return RunObjects(config, task, models, scorer, backbone, vocab, reward)


def make_prompt_env(
    reward: PromptReward | None = None, vocab: ActionVocabulary | None = None, render_mode: str | None = None, **settings: Any
) -> PromptEnv:
    """The registered id's entry point: a :class:`PromptEnv` built like a training run.

    Args:
        reward: Scores prompts; built from the settings when not given.
        vocab: The action vocabulary; built from the settings when not given.
        render_mode: ``"ansi"`` renders the prompt so far.
        **settings: :class:`TrainConfig` fields (``target_lm``, ``task``, ``data``,
            ``prompt_length``, ``vocabulary``, ...); default: the offline demo.
    """
    config = TrainConfig.from_mapping(settings, "rlprompt/Prompt-v0's settings")
    if reward is None or vocab is None:
        objects = build(config)
        reward, vocab = reward or objects.reward, vocab or objects.vocab
    return PromptEnv(reward, vocab, config.prompt_length, render_mode=render_mode, min_length=config.shortest_prompt)
