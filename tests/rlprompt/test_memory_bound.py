"""The scoring memory plan: a pass's token bound and the prefix cache's byte bound follow the
model's size and the device's free memory (mocked here), and a model that would not fit says so
in one line before its weights move to the device."""

from __future__ import annotations

import pytest
import torch

import rlprompt.devices
from rlprompt.devices import (
    MEMORY_SAFETY,
    MIN_BATCH_TOKENS,
    PREFIX_CACHE_SHARE,
    kv_bytes_per_token,
    parameter_bytes,
    plan_scoring_memory,
    scoring_bytes_per_token,
    scoring_memory,
)
from rlprompt.errors import RLPromptError

GiB = 2**30
CARD_16GB_FREE = 15.5 * GiB
"""What a 16 GB card reports free before a model loads (the CUDA context takes about 0.5 GiB)."""


@pytest.fixture(scope="module")
def llama_7b():
    """A Llama-2-7B-sized model on the meta device: its real shapes and parameter count, no memory."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32, vocab_size=32000
    )
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) == 6_738_415_616
    return model


def _free_memory(monkeypatch, free: float | None) -> None:
    monkeypatch.setattr(rlprompt.devices, "free_memory_bytes", lambda device: None if free is None else int(free))


def test_a_7b_model_in_bf16_gets_a_bound_that_fits_a_16gb_card(llama_7b, monkeypatch) -> None:
    model = llama_7b.to(torch.bfloat16)
    weights = parameter_bytes(model)
    token_bytes = scoring_bytes_per_token(model.config, 2)
    kv = kv_bytes_per_token(model.config, 2)
    assert (weights, kv, token_bytes) == (13_476_831_488, 524_288, 1_245_696)
    _free_memory(monkeypatch, CARD_16GB_FREE)
    plan = scoring_memory(model, torch.device("cuda:0"), "llama-7b", weights_on_device=False)
    assert plan == plan_scoring_memory(int(CARD_16GB_FREE), weights, token_bytes, 65536)
    assert plan.batch_tokens == 1016 and plan.prefix_cache_bytes == 1_266_466_713
    # It fits: the weights, a full pass and a full prefix cache stay under what is free,
    # with the safety margin (20% of what the weights leave) to spare.
    planned = weights + plan.batch_tokens * token_bytes + plan.prefix_cache_bytes
    assert planned <= CARD_16GB_FREE - (1 - MEMORY_SAFETY) * (CARD_16GB_FREE - weights)
    # The old fixed bound (65,536 tokens on CUDA) needed 32 GiB for the pass's keys/values alone.
    assert 65536 * kv == 32 * GiB > CARD_16GB_FREE - weights


def test_a_7b_model_in_fp32_does_not_fit_a_16gb_card(llama_7b, monkeypatch) -> None:
    model = llama_7b.to(torch.float32)
    _free_memory(monkeypatch, CARD_16GB_FREE)
    with pytest.raises(RLPromptError) as error:
        scoring_memory(model, torch.device("cuda:0"), "llama-7b", weights_on_device=False)
    assert str(error.value) == (
        "model 'llama-7b' on cuda:0 does not fit: its weights take 25.1 GiB and scoring needs about 26.5 GiB in all, "
        "but 15.5 GiB are free; try --dtype bf16, a smaller model, or --device cpu"
    )


def test_the_bound_is_capped_by_the_device_and_unbounded_memory_keeps_the_cap() -> None:
    assert plan_scoring_memory(None, 10**9, 10**5, 16384).batch_tokens == 16384
    assert plan_scoring_memory(None, 10**9, 10**5, 16384).prefix_cache_bytes is None
    assert plan_scoring_memory(80 * GiB, 10**9, 10**5, 65536).batch_tokens == 65536
    # On the CPU (not strict) a tight machine still scores, at the smallest bound.
    assert plan_scoring_memory(10**9, 10**9, 10**5, 16384, strict=False).batch_tokens == MIN_BATCH_TOKENS


def test_a_model_that_would_not_fit_says_so_before_it_moves_to_the_device(tiny_llama_dir, monkeypatch) -> None:
    from rlprompt.models import load_model

    _free_memory(monkeypatch, 2**20)
    moved = []
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *args, **kwargs: moved.append(args))
    with pytest.raises(RLPromptError, match=rf"^model '{tiny_llama_dir}' on cuda:0 does not fit: its weights take 0.0 GiB .* but 0.0 GiB are free; try --dtype bf16"):
        load_model(str(tiny_llama_dir), "fp32", torch.device("cuda:0"))
    assert moved == [], "nothing moved to the device"


def _demo():
    from rlprompt.tasks import load_task

    task = load_task("demo")
    return task, [e.text for e in task.train][:12]


def test_the_scorer_takes_its_bound_from_the_model_and_free_memory(tiny_llama, monkeypatch, tol) -> None:
    from rlprompt.scoring import Scorer

    task, sentences = _demo()
    prompts = ["It was", "the food was", ""]
    _free_memory(monkeypatch, None)
    reference = Scorer(tiny_llama, task.template, task.verbalizers)
    assert reference.max_batch_tokens == 16384 and reference.prefix_cache_bytes is None
    token_bytes = scoring_bytes_per_token(tiny_llama.model.config, tiny_llama.dtype.itemsize)
    # Free memory (beside the weights) for a pass of 300 tokens.
    _free_memory(monkeypatch, (300.5 * token_bytes) / ((1 - PREFIX_CACHE_SHARE) * MEMORY_SAFETY))
    bounded = Scorer(tiny_llama, task.template, task.verbalizers)
    assert bounded.max_batch_tokens == 300
    torch.testing.assert_close(bounded.class_logits(prompts, sentences), reference.class_logits(prompts, sentences), **tol.logits)


def test_cached_prefixes_count_against_the_bound(tiny_llama, monkeypatch, tol) -> None:
    from rlprompt.scoring import Scorer

    task, sentences = _demo()
    prompts = ["It was", "the food was"]
    _free_memory(monkeypatch, None)
    reference = Scorer(tiny_llama, task.template, task.verbalizers, example_block=3, keep_all_prefixes=True)
    expected = reference.class_logits(prompts, sentences)
    assert len(reference._prefix_states) == 4, "unbounded: every block of 3 is kept"
    largest_block = max(state.nbytes for state in reference._prefix_states.values())
    # Room for the cached prefixes of about two blocks of three examples.
    _free_memory(monkeypatch, 2.5 * largest_block / (PREFIX_CACHE_SHARE * MEMORY_SAFETY))
    bounded = Scorer(tiny_llama, task.template, task.verbalizers, example_block=3, keep_all_prefixes=True)
    assert bounded.prefix_cache_bytes == pytest.approx(2.5 * largest_block, abs=2)
    for _ in range(2):
        torch.testing.assert_close(bounded.class_logits(prompts, sentences), expected, **tol.logits)
        held = sum(state.nbytes for state in bounded._prefix_states.values())
        assert 0 < held <= bounded.prefix_cache_bytes
        assert 1 <= len(bounded._prefix_states) <= 2
