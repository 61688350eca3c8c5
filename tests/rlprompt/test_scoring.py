"""Scoring: piecewise encoding, prefix-cache equivalence, and read-outs equal to direct model calls."""

from __future__ import annotations

import pytest
import torch

from rlprompt.errors import RLPromptError
from rlprompt.scoring import CalibratedScorer, Scorer, TemplateEncoder, calibrated, calibration_splits, verbalizer_token_ids
from rlprompt.template import Template

SENTENCES = [
    "The app is fast and the design is lovely.",
    "Cold food and a rude waiter.",
    "Great.",
    "I would not stay at this hotel again, the room was dirty and the staff ignored every request.",
]
PROMPTS = ["It was", "", "overall the film felt", "great great", "It"]
VERBALIZERS = [" terrible", " great"]


@pytest.mark.parametrize("model_fixture", ["tiny_llama", "tiny_gpt2"])
@pytest.mark.parametrize(
    "template", ["{sentence} {prompt} {mask}", "Review: {sentence} {prompt}\nSentiment: {mask}", "{prompt} {sentence} It was {mask}"]
)
def test_prefix_cache_matches_plain_path(model_fixture: str, template: str, request: pytest.FixtureRequest, tol) -> None:
    lm = request.getfixturevalue(model_fixture)
    cached = Scorer(lm, Template(template), VERBALIZERS, prefix_cache=True)
    plain = Scorer(lm, Template(template), VERBALIZERS, prefix_cache=False)
    a = cached.class_logits(PROMPTS, SENTENCES)
    b = plain.class_logits(PROMPTS, SENTENCES)
    assert a.shape == (len(PROMPTS), len(SENTENCES), 2)
    torch.testing.assert_close(a, b, **tol.logits)


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_prefix_cache_independent_of_chunking_and_tokenizer_padding_side(tiny_llama, padding_side: str, tol) -> None:
    tiny_llama.tokenizer.padding_side = padding_side
    template = Template("{sentence} {prompt} {mask}")
    one_pass = Scorer(tiny_llama, template, VERBALIZERS).class_logits(PROMPTS, SENTENCES)
    # A tiny token budget forces one pair (or prefix) per forward pass.
    chunked = Scorer(tiny_llama, template, VERBALIZERS, max_batch_tokens=1).class_logits(PROMPTS, SENTENCES)
    torch.testing.assert_close(one_pass, chunked, **tol.logits)
    tiny_llama.tokenizer.padding_side = "right"


@pytest.mark.parametrize("model_fixture", ["tiny_llama", "tiny_gpt2"])
def test_causal_logits_equal_direct_model_call(model_fixture: str, request: pytest.FixtureRequest, tol) -> None:
    lm = request.getfixturevalue(model_fixture)
    template = Template("{sentence} {prompt} {mask}")
    scorer = Scorer(lm, template, VERBALIZERS)
    logits = scorer.class_logits(["It was"], [SENTENCES[0]])
    pair = TemplateEncoder(lm.tokenizer, "causal", template).encode(SENTENCES[0], "It was")
    ids = torch.tensor([pair.prefix + pair.suffix])
    with torch.no_grad():
        direct = lm.model(input_ids=ids).logits[0, -1, verbalizer_token_ids(lm.tokenizer, VERBALIZERS)].float()
    torch.testing.assert_close(logits[0, 0], direct, **tol.logits)


def test_piecewise_encoding_keeps_prompt_ids(tiny_llama) -> None:
    tokenizer = tiny_llama.tokenizer
    encoder = TemplateEncoder(tokenizer, "causal", Template("{sentence} {prompt} {mask}"))
    pair = encoder.encode("Great.", "It was")
    assert pair.prefix == tuple(tokenizer("Great.", add_special_tokens=False).input_ids)
    assert pair.suffix == tuple(tokenizer(" It was", add_special_tokens=False).input_ids)
    assert tokenizer.convert_ids_to_tokens(list(pair.suffix)) == ["ĠIt", "Ġwas"]
    empty = encoder.encode("Great.", "")
    assert empty.prefix == pair.prefix and empty.suffix == ()


def test_masked_logits_equal_direct_model_call(tiny_bert, tol) -> None:
    template = Template("{sentence} {prompt} {mask} .")
    verbalizers = ["terrible", "great"]
    scorer = Scorer(tiny_bert, template, verbalizers)
    logits = scorer.class_logits(PROMPTS[:3], SENTENCES[:3])
    tokenizer = tiny_bert.tokenizer
    for p, prompt in enumerate(PROMPTS[:3]):
        for e, sentence in enumerate(SENTENCES[:3]):
            pair = TemplateEncoder(tokenizer, "masked", template).encode(sentence, prompt)
            ids = list(pair.prefix + pair.suffix)
            assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
            assert ids.count(tokenizer.mask_token_id) == 1
            with torch.no_grad():
                full = tiny_bert.model(input_ids=torch.tensor([ids])).logits[0]
            expected = full[ids.index(tokenizer.mask_token_id), verbalizer_token_ids(tokenizer, verbalizers)].float()
            torch.testing.assert_close(logits[p, e], expected, **tol.logits)


def test_multi_token_verbalizer_is_a_clear_error(tiny_llama) -> None:
    with pytest.raises(RLPromptError, match=r"verbalizer ' xqzzy' is \d tokens .* must be a single token"):
        Scorer(tiny_llama, Template("{sentence} {prompt} {mask}"), [" xqzzy", " great"])


def test_duplicate_verbalizer_token_is_an_error(tiny_llama) -> None:
    with pytest.raises(RLPromptError, match="map to the same token"):
        Scorer(tiny_llama, Template("{sentence} {prompt} {mask}"), [" great", " great"])


def test_causal_template_with_text_after_mask_is_an_error(tiny_llama) -> None:
    with pytest.raises(RLPromptError, match="nothing may follow"):
        Scorer(tiny_llama, Template("{sentence} {prompt} {mask} ."), VERBALIZERS)


def test_empty_inputs_give_empty_logits(tiny_llama) -> None:
    scorer = Scorer(tiny_llama, Template("{sentence} {prompt} {mask}"), VERBALIZERS)
    assert scorer.class_logits([], SENTENCES).shape == (0, 4, 2)


def test_example_blocks_do_not_change_logits(tiny_llama, tol) -> None:
    template = Template("{sentence} {prompt} {mask}")
    whole = Scorer(tiny_llama, template, VERBALIZERS).class_logits(PROMPTS, SENTENCES)
    blocked = Scorer(tiny_llama, template, VERBALIZERS, example_block=3).class_logits(PROMPTS, SENTENCES)
    torch.testing.assert_close(whole, blocked, **tol.logits)


def test_kept_prefixes_of_every_block_are_reused_across_calls(tiny_llama, tol) -> None:
    template = Template("{sentence} {prompt} {mask}")
    whole = Scorer(tiny_llama, template, VERBALIZERS).class_logits(PROMPTS, SENTENCES)
    scorer = Scorer(tiny_llama, template, VERBALIZERS, example_block=1, keep_all_prefixes=True)
    first = scorer.class_logits(PROMPTS[:1], SENTENCES)
    assert len(scorer._prefix_states) == len(SENTENCES), "one kept prefix state per block"
    kept = list(scorer._prefix_states.values())
    rest = scorer.class_logits(PROMPTS[1:], SENTENCES)
    assert list(scorer._prefix_states.values()) == kept, "the second call reuses them"
    torch.testing.assert_close(torch.cat([first, rest]), whole, **tol.logits)


def test_calibration_subtracts_each_prompts_mean_over_the_reference_inputs(tiny_llama) -> None:
    scorer = Scorer(tiny_llama, Template("{sentence} {prompt} {mask}"), VERBALIZERS)
    reference, other = SENTENCES[:2], SENTENCES[2:]
    calibrated_scorer = CalibratedScorer(scorer, reference)
    raw_reference = scorer.class_logits(PROMPTS, reference)
    expected = scorer.class_logits(PROMPTS, other) - raw_reference.mean(dim=1)[:, None, :]
    torch.testing.assert_close(calibrated_scorer.class_logits(PROMPTS, other), expected)
    # On the reference inputs themselves every class averages to zero: no prompt-wide bias is left.
    on_reference = calibrated_scorer.class_logits(PROMPTS, reference)
    torch.testing.assert_close(on_reference.mean(dim=1), torch.zeros(len(PROMPTS), 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(calibrated_scorer.offsets(PROMPTS[::-1]), raw_reference.mean(dim=1).flip(0))


def test_calibration_choices(tiny_llama) -> None:
    scorer = Scorer(tiny_llama, Template("{sentence} {prompt} {mask}"), VERBALIZERS)
    assert calibrated(scorer, "none", []) is scorer
    assert isinstance(calibrated(scorer, "train-mean", SENTENCES), CalibratedScorer)
    with pytest.raises(RLPromptError, match="unknown calibration 'platt'; valid: none, train-mean"):
        calibrated(scorer, "platt", SENTENCES)
    with pytest.raises(RLPromptError, match="calibration needs at least one reference input"):
        calibrated(scorer, "train-mean", [])
    assert calibration_splits("none") == () and calibration_splits("train-mean") == ("train",)
    with pytest.raises(RLPromptError, match="unknown calibration 'platt'"):
        calibration_splits("platt")


def test_masked_readout_on_a_roberta_style_head(bpe_tokenizer, tol) -> None:
    """RoBERTa's LM head (dense, gelu, layer norm, decoder) reads out like a direct call, and is restored."""
    from transformers import RobertaConfig, RobertaForMaskedLM

    from rlprompt.models import LoadedModel

    torch.manual_seed(3)
    config = RobertaConfig(
        vocab_size=len(bpe_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=300, pad_token_id=bpe_tokenizer.pad_token_id,
    )
    model = RobertaForMaskedLM(config).eval().requires_grad_(False)
    lm = LoadedModel("tiny-roberta", model, bpe_tokenizer, "masked")
    template = Template("{sentence} {prompt} {mask} .")
    head = model.get_output_embeddings()
    logits = Scorer(lm, template, VERBALIZERS).class_logits(["It was"], SENTENCES[:2])
    assert model.get_output_embeddings() is head
    for e, sentence in enumerate(SENTENCES[:2]):
        pair = TemplateEncoder(bpe_tokenizer, "masked", template).encode(sentence, "It was")
        ids = list(pair.prefix + pair.suffix)
        with torch.no_grad():
            full = model(input_ids=torch.tensor([ids])).logits[0, pair.mask_index]
        torch.testing.assert_close(logits[0, e], full[verbalizer_token_ids(bpe_tokenizer, VERBALIZERS)], **tol.logits)


def test_prefix_cache_matches_plain_path_with_sliding_window_layers(bpe_tokenizer, tiny_llama, tol) -> None:
    """Gemma-3 mixes sliding-window and global layers; prefixes longer than the window must
    still be read through the cache exactly as the plain path reads them."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from rlprompt.models import LoadedModel

    torch.manual_seed(4)
    config = Gemma3TextConfig(
        vocab_size=len(bpe_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, sliding_window=4, layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=256, pad_token_id=bpe_tokenizer.pad_token_id, bos_token_id=bpe_tokenizer.bos_token_id,
        eos_token_id=bpe_tokenizer.eos_token_id,
    )
    model = Gemma3ForCausalLM(config).eval().requires_grad_(False).to(tiny_llama.dtype)  # this run's dtype
    lm = LoadedModel("tiny-gemma3", model, bpe_tokenizer, "causal")
    template = Template("{sentence} {prompt} {mask}")
    cached = Scorer(lm, template, VERBALIZERS).class_logits(PROMPTS, SENTENCES)
    plain = Scorer(lm, template, VERBALIZERS, prefix_cache=False).class_logits(PROMPTS, SENTENCES)
    torch.testing.assert_close(cached, plain, **tol.logits)
    assert cached.shape == (len(PROMPTS), len(SENTENCES), 2)
    config.sliding_window = 512
    wide = Scorer(lm, template, VERBALIZERS)
    assert wide._fits_window(PROMPTS, SENTENCES), "short pairs inside a wide window use the cache"
    torch.testing.assert_close(wide.class_logits(PROMPTS, SENTENCES), Scorer(lm, template, VERBALIZERS, prefix_cache=False).class_logits(PROMPTS, SENTENCES), **tol.logits)


def test_cache_keyword_is_read_from_the_forward_signature(tiny_llama) -> None:
    """transformers renamed past_key_values to cache; both spellings are passed the way the model takes them."""
    from rlprompt.scoring.prefix_cache import cache_keyword as _cache_keyword

    class Before(torch.nn.Module):
        def forward(self, input_ids=None, attention_mask=None, past_key_values=None, use_cache=None): ...

    class After(torch.nn.Module):
        def forward(self, input_ids=None, attention_mask=None, cache=None, use_cache=None, **kwargs): ...

    assert _cache_keyword(Before) == "past_key_values"
    assert _cache_keyword(After) == "cache"
    import inspect

    expected = "cache" if "cache" in inspect.signature(type(tiny_llama.model.base_model).forward).parameters else "past_key_values"
    assert _cache_keyword(type(tiny_llama.model.base_model)) == expected
