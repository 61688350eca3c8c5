"""The instruction writer: sampling, log-probabilities through the shared meta-prompt cache,
adapters that start as the untrained LM, and the meta-prompt in chat or plain-text form."""

from __future__ import annotations

import copy

import pytest
import torch

from rlprompt.models import LoadedModel
from rlprompt.policies.instruction_writer import InstructionWriter, LoraSettings, instruction_text


@pytest.fixture
def writer_lm(tiny_llama) -> LoadedModel:
    """A private fp32 copy of the tiny Llama: adapters are injected in place."""
    return LoadedModel("tiny-llama", copy.deepcopy(tiny_llama.model).float(), tiny_llama.tokenizer, "causal")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('"Read the review and answer."', "Read the review and answer."),
        ("\n\nInstruction: Say if it is good.\nSecond line", "Say if it is good."),
        ("  Better instruction:  'Tell the topic.'  ", "Tell the topic."),
        ("", ""),
    ],
)
def test_instruction_text_keeps_the_first_line_without_quotes_or_label(raw: str, expected: str) -> None:
    assert instruction_text(raw) == expected


def test_a_tokenizer_without_chat_template_gets_a_plain_text_meta_prompt(writer_lm) -> None:
    writer = InstructionWriter(writer_lm, max_new_tokens=8)
    assert not getattr(writer_lm.tokenizer, "chat_template", None)
    ids = writer.encode_meta_prompt("Tell the sentiment.")
    assert writer_lm.tokenizer.decode(ids, skip_special_tokens=True) == "Tell the sentiment.\n\nInstruction:"


def test_a_tokenizer_with_chat_template_gets_a_user_turn(writer_lm) -> None:
    tokenizer = copy.deepcopy(writer_lm.tokenizer)
    tokenizer.chat_template = "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}{% if add_generation_prompt %}<s>assistant:{% endif %}"
    writer = InstructionWriter(LoadedModel("chat", writer_lm.model, tokenizer, "causal"), max_new_tokens=8)
    text = tokenizer.decode(writer.encode_meta_prompt("Tell the sentiment."))
    assert text == "<s>user: Tell the sentiment.</s><s>assistant:"


def test_samples_are_reproducible_stop_at_the_end_token_and_respect_the_length(writer_lm) -> None:
    writer = InstructionWriter(writer_lm, max_new_tokens=6, temperature=1.0)
    meta = writer.encode_meta_prompt("Write an instruction.")
    first = writer.sample(meta, 8, torch.Generator().manual_seed(5))
    again = writer.sample(meta, 8, torch.Generator().manual_seed(5))
    assert first.token_ids == again.token_ids and len(first.texts) == 8
    for ids in first.token_ids:
        assert 1 <= len(ids) <= 6
        assert all(token not in writer.stop_ids for token in ids[:-1]), "a sample goes on past its end token"
    greedy = writer.sample(meta, 3, greedy=True)
    assert len(set(greedy.token_ids)) == 1, "greedy decoding gives one text"


def test_log_probs_through_the_shared_meta_prompt_cache_equal_a_full_forward(writer_lm) -> None:
    writer = InstructionWriter(writer_lm, max_new_tokens=6)
    meta = writer.encode_meta_prompt("Write an instruction.")
    samples = [(5, 9, 11), (7,), (12, 13, 14, 15)]
    log_probs, mask = writer.log_probs(meta, samples)
    assert mask.tolist() == [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]]
    for row, sample in enumerate(samples):
        ids = torch.tensor([meta + list(sample)])
        full = torch.log_softmax(writer_lm.model(input_ids=ids).logits.float(), dim=-1)[0]
        expected = [full[len(meta) - 1 + t, token].item() for t, token in enumerate(sample)]
        assert log_probs[row, : len(sample)].tolist() == pytest.approx(expected, abs=1e-5)
        assert log_probs[row, len(sample):].abs().sum().item() == 0.0


def test_fresh_adapters_are_the_untrained_lm_and_learn_only_themselves(writer_lm) -> None:
    frozen = {name: p.detach().clone() for name, p in writer_lm.model.named_parameters()}
    writer = InstructionWriter(writer_lm, max_new_tokens=6, lora=LoraSettings(rank=4, alpha=8))
    meta = writer.encode_meta_prompt("Write an instruction.")
    samples = [(5, 9, 11), (7, 8)]
    with_adapters, _ = writer.log_probs(meta, samples)
    without, _ = writer.log_probs(meta, samples, adapters=False)
    assert torch.equal(with_adapters, without), "LoRA starts at zero: step 0 samples what the plain LM samples"
    trainable = writer.trainable_parameters()
    assert trainable and all("lora_" in name for name, p in writer.model.named_parameters() if p.requires_grad)
    (-with_adapters.sum()).backward()
    torch.optim.SGD(trainable, lr=1.0).step()
    moved, _ = writer.log_probs(meta, samples)
    untrained, _ = writer.log_probs(meta, samples, adapters=False)
    assert not torch.allclose(moved, untrained) and torch.equal(untrained, without)
    for name, parameter in writer.model.get_base_model().named_parameters():
        if "lora_" not in name:
            assert torch.equal(parameter, frozen[name.replace(".base_layer", "")]), f"{name} changed"


def test_adapters_round_trip_through_the_peft_layout(writer_lm, tmp_path, tiny_llama) -> None:
    writer = InstructionWriter(writer_lm, max_new_tokens=6, lora=LoraSettings(rank=4, alpha=8))
    for parameter in writer.trainable_parameters():
        torch.nn.init.normal_(parameter)
    writer.save_adapter(tmp_path)
    assert (tmp_path / "adapter_config.json").is_file() and (tmp_path / "adapter_model.safetensors").is_file()
    other = InstructionWriter(LoadedModel("t", copy.deepcopy(tiny_llama.model).float(), tiny_llama.tokenizer, "causal"), 6, lora=LoraSettings(4, 8))
    other.load_adapter(tmp_path)
    for mine, theirs in zip(writer.trainable_parameters(), other.trainable_parameters()):
        assert torch.equal(mine, theirs)
