"""How natural a prompt reads: its log-likelihood and perplexity under a causal LM."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from rlprompt.batching import FULL_VOCAB_LOGIT_BYTES, full_vocab_chunks, pad_token_id, right_pad, vocab_size


def start_token_id(tokenizer) -> int | None:
    """The token a text starts after: BOS, else EOS (GPT-2 style), else none."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return token_id
    return None


def mean_log_likelihood(model, tokenizer, prompts: Sequence[str], max_logit_bytes: int = FULL_VOCAB_LOGIT_BYTES) -> np.ndarray:
    """Mean per-token log-probability of each prompt (natural log), read after the start token.

    An empty prompt has no tokens and gets 0.0 (perplexity 1). Prompts are run in chunks whose
    fp32 full-vocabulary logits stay under ``max_logit_bytes``.
    """
    start = start_token_id(tokenizer)
    sequences = []
    for prompt in prompts:
        ids = tokenizer(prompt.strip(), add_special_tokens=False).input_ids
        sequences.append(([start] if start is not None else []) + ids)
    result = np.zeros(len(prompts))
    scored = [i for i, s in enumerate(sequences) if len(s) >= 2]
    if not scored:
        return result
    device = next(model.parameters()).device
    # Chunked: the logits span the whole vocabulary (262,144 columns on Gemma-3).
    for chunk in full_vocab_chunks([len(sequences[i]) for i in scored], vocab_size(model), max_logit_bytes):
        rows = [scored[i] for i in chunk]
        ids, mask = right_pad([sequences[i] for i in rows], pad_token_id(tokenizer), device=device)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            log_probs = logits.log_softmax(dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
        target_mask = mask[:, 1:].float()
        means = (log_probs * target_mask).sum(dim=1) / target_mask.sum(dim=1)
        result[rows] = means.cpu().numpy()
    return result


def perplexity(model, tokenizer, prompts: Sequence[str]) -> np.ndarray:
    """``exp(-mean log-likelihood)`` per prompt."""
    return np.exp(-mean_log_likelihood(model, tokenizer, prompts))
