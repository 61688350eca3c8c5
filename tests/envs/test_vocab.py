"""The unigram prior behind ``top-K`` vocabularies: positions right whatever shares a batch, and
full-vocabulary logits built in bounded chunks."""

from __future__ import annotations

import pytest
import torch

from rlprompt.envs.vocab import unigram_prior
from rlprompt.models import load_model
from rlprompt.tasks import load_task


class ShapeRecorder(torch.nn.Module):
    """Wraps a causal LM and records the ``[rows, width]`` of every forward pass."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        self.shapes: list[tuple[int, int]] = []

    def get_output_embeddings(self):
        return self.model.get_output_embeddings()

    def forward(self, input_ids, **kwargs):
        self.shapes.append(tuple(input_ids.shape))
        return self.model(input_ids=input_ids, **kwargs)


@pytest.fixture(scope="module")
def gpt2_fp32(tiny_gpt2_dir):
    """GPT-2 learns absolute positions: a token read at a shifted position gets other logits."""
    return load_model(str(tiny_gpt2_dir), "fp32", "cpu")


def _prior_one_text_at_a_time(model, tokenizer, texts: list[str]) -> torch.Tensor:
    total, count = 0.0, 0
    with torch.inference_mode():
        for text in texts:
            ids = tokenizer(text, add_special_tokens=False).input_ids
            probs = model(input_ids=torch.tensor([ids])).logits[0].float().softmax(-1)
            total, count = total + probs.sum(0), count + len(ids)
    return total / count


def test_unigram_prior_of_a_batch_equals_each_text_alone(gpt2_fp32) -> None:
    task = load_task("demo")
    texts = [e.text for e in task.train][:8]
    assert len({len(gpt2_fp32.tokenizer(t).input_ids) for t in texts}) > 1, "texts of different lengths share a batch (padding)"
    expected = _prior_one_text_at_a_time(gpt2_fp32.model, gpt2_fp32.tokenizer, texts)
    torch.testing.assert_close(unigram_prior(gpt2_fp32.model, gpt2_fp32.tokenizer, max_texts=8), expected, atol=1e-7, rtol=1e-5)


def test_unigram_prior_builds_full_vocabulary_logits_in_bounded_chunks(gpt2_fp32) -> None:
    vocab = gpt2_fp32.model.get_output_embeddings().weight.shape[0]
    budget = 40 * vocab * 4  # fp32 logits of 40 tokens
    recorder = ShapeRecorder(gpt2_fp32.model)
    chunked = unigram_prior(recorder, gpt2_fp32.tokenizer, max_texts=24, max_logit_bytes=budget)
    assert len(recorder.shapes) > 1
    assert all(rows * width * vocab * 4 <= budget or rows == 1 for rows, width in recorder.shapes)
    assert sum(rows for rows, _ in recorder.shapes) == 24
    whole = unigram_prior(gpt2_fp32.model, gpt2_fp32.tokenizer, max_texts=24)
    torch.testing.assert_close(chunked, whole, atol=1e-7, rtol=1e-5)
