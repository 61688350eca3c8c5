"""Build a ready :class:`PromptEnv` from model and task names (the registered id's entry point)."""

from __future__ import annotations

from envs.prompt_env import PromptEnv, Vocabulary
from policies.vocab import build_vocabulary
from rewards.classification import GapReward, PromptReward
from rlprompt.models import load_model
from rlprompt.scoring import Scorer
from rlprompt.tasks import load_task


def make_prompt_env(
    reward: PromptReward | None = None,
    vocab: Vocabulary | None = None,
    prompt_length: int = 5,
    target_lm: str = "smollm2-135m",
    policy_lm: str | None = None,
    task: str = "demo",
    data: str | None = None,
    vocabulary: str = "words",
    render_mode: str | None = None,
) -> PromptEnv:
    """A :class:`PromptEnv`; by default the offline one (SmolLM2-135M on the built-in demo task).

    Args:
        reward: Scores prompts; built from ``target_lm`` and ``task`` when not given.
        vocab: The action vocabulary; built from ``policy_lm``'s tokenizer when not given.
        prompt_length: Tokens per prompt.
        target_lm: The frozen LM the reward scores.
        policy_lm: Whose tokenizer the prompts are written with (default: ``target_lm``).
        task: Task name (see :func:`rlprompt.tasks.load_task`).
        data: Task data location.
        vocabulary: Action vocabulary name.
        render_mode: ``"ansi"`` renders the prompt so far.
    """
    target = None
    if reward is None:
        target = load_model(target_lm)
        spec = load_task(task, data)
        spec.require("train")
        reward = GapReward(Scorer(target, spec.template, spec.verbalizers), spec.train)
    if vocab is None:
        if policy_lm is None or policy_lm == target_lm:
            tokenizer = (target or load_model(target_lm)).tokenizer
        else:
            tokenizer = load_model(policy_lm).tokenizer
        vocab = build_vocabulary(tokenizer, vocabulary)
    return PromptEnv(reward, vocab, prompt_length, render_mode=render_mode)
