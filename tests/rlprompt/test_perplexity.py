"""Prompt log-likelihood and perplexity under a causal LM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlprompt.perplexity import mean_log_likelihood, perplexity


def test_mean_log_likelihood_matches_a_direct_computation(tiny_llama, tol) -> None:
    tokenizer, model = tiny_llama.tokenizer, tiny_llama.model
    prompt = "the food was great"
    ids = [tokenizer.bos_token_id] + tokenizer(prompt, add_special_tokens=False).input_ids
    with torch.no_grad():
        log_probs = model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
    expected = np.mean([log_probs[i - 1, ids[i]].item() for i in range(1, len(ids))])
    got = mean_log_likelihood(model, tokenizer, [prompt, "It was", ""])
    assert got[0] == pytest.approx(expected, abs=tol.log_likelihood)
    assert got[2] == 0.0, "the empty prompt has no tokens"
    alone = mean_log_likelihood(model, tokenizer, ["It was"])
    assert alone[0] == pytest.approx(got[1], abs=tol.log_likelihood), "padding in a batch does not change a prompt's score"
    assert perplexity(model, tokenizer, [prompt])[0] == pytest.approx(math.exp(-got[0]), rel=1e-6)


def test_fluency_reward_adds_weighted_log_likelihood(tiny_llama) -> None:
    from rlprompt.rewards import FluencyReward, RewardBatch

    def task_reward(prompts):
        return RewardBatch(rewards=np.array([1.0] * len(prompts)), metrics={"accuracy": np.array([0.5] * len(prompts))})

    prompts = ["the food was great", "It was"]
    reward = FluencyReward(task_reward, tiny_llama.model, tiny_llama.tokenizer, weight=2.0)
    batch = reward(prompts)
    expected = 1.0 + 2.0 * mean_log_likelihood(tiny_llama.model, tiny_llama.tokenizer, prompts)
    assert batch.rewards == pytest.approx(expected)
    assert batch.metrics == {"accuracy": pytest.approx([0.5, 0.5])}


def test_log_likelihood_builds_full_vocabulary_logits_in_bounded_chunks(tiny_gpt2_dir) -> None:
    from rlprompt.models import load_model
    from tests.envs.test_vocab import ShapeRecorder

    lm = load_model(str(tiny_gpt2_dir), "fp32", "cpu")
    vocab = lm.model.get_output_embeddings().weight.shape[0]
    prompts = ["the food was great", "It was", "", "overall it was okay", "bad", "It was good. It was bad."]
    budget = 8 * vocab * 4  # fp32 logits of 8 tokens
    recorder = ShapeRecorder(lm.model)
    chunked = mean_log_likelihood(recorder, lm.tokenizer, prompts, max_logit_bytes=budget)
    assert len(recorder.shapes) > 1
    assert all(rows * width * vocab * 4 <= budget or rows == 1 for rows, width in recorder.shapes)
    assert sum(rows for rows, _ in recorder.shapes) == 5, "every prompt but the empty one, once"
    assert chunked[2] == 0.0
    np.testing.assert_allclose(chunked, mean_log_likelihood(lm.model, lm.tokenizer, prompts), atol=1e-6)
