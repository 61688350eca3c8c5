"""Padding and batching of token-id sequences: shared by the scorer, perplexity and vocabularies."""

from __future__ import annotations

from typing import Sequence

import torch


def pad_token_id(tokenizer) -> int:
    """The id padding uses; any id works where the attention mask hides it, so 0 without a pad token."""
    pad = tokenizer.pad_token_id
    return pad if pad is not None else 0


def copies_asynchronously(device: torch.device | str) -> bool:
    """Whether a host-to-``device`` copy of a temporary host tensor may be ``non_blocking``.

    Only on CUDA: from pageable host memory its copy is staged before the call returns, so the
    temporary may be freed at once. On MPS a non-blocking copy really is asynchronous and can
    read the temporary after it was freed or reused (PyTorch issues 139550 and 189690), which
    would corrupt token ids, masks and indices. On the CPU there is nothing to overlap.
    """
    return torch.device(device).type == "cuda"


def to_device(host: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``host`` (a temporary built on the host) copied to ``device``, asynchronously only where that is safe."""
    return host.to(device, non_blocking=copies_asynchronously(device))


def index_tensor(values: Sequence[int], device: torch.device) -> torch.Tensor:
    """An index tensor on ``device``, built on the host and copied once."""
    return to_device(torch.tensor(values, dtype=torch.long), device)


def token_bounded_chunks(lengths: Sequence[int], max_tokens: int) -> list[range]:
    """Consecutive index ranges whose padded size (longest x count) stays under ``max_tokens``."""
    chunks, start, longest = [], 0, 0
    for index, length in enumerate(lengths):
        longest_if_added = max(longest, length)
        if index > start and longest_if_added * (index - start + 1) > max_tokens:
            chunks.append(range(start, index))
            start, longest_if_added = index, length
        longest = longest_if_added
    chunks.append(range(start, len(lengths)))
    return chunks


FULL_VOCAB_LOGIT_BYTES = 512 * 2**20
"""Most bytes of fp32 full-vocabulary logits one forward pass may build (perplexity, the unigram
prior). Unchunked, 32 texts of 60 tokens on Gemma-3's 262,144-token vocabulary took about 2 GB
for the fp32 logits alone, plus the model-dtype logits and the softmax."""


def full_vocab_chunks(lengths: Sequence[int], vocab_size: int, max_bytes: int = FULL_VOCAB_LOGIT_BYTES) -> list[range]:
    """Consecutive index ranges whose padded fp32 logits over the whole vocabulary stay under ``max_bytes``
    (a single sequence is never split)."""
    return token_bounded_chunks(lengths, max(1, max_bytes // (4 * vocab_size)))


def vocab_size(model) -> int:
    """Rows of the model's output head: the width of its full-vocabulary logits."""
    return int(model.get_output_embeddings().weight.shape[0])


def positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(dim=1) - 1).clamp(min=0)


def left_pad(
    sequences: Sequence[Sequence[int]], pad_id: int, width: int | None = None, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids and attention mask, padded on the left so every row ends at its last token."""
    width = width or max(len(s) for s in sequences)
    rows = [[pad_id] * (width - len(s)) + list(s) for s in sequences]
    masks = [[0] * (width - len(s)) + [1] * len(s) for s in sequences]
    return _to(rows, device), _to(masks, device)


def right_pad(sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Ids and attention mask, padded on the right."""
    width = max(len(s) for s in sequences)
    rows = [list(s) + [pad_id] * (width - len(s)) for s in sequences]
    masks = [[1] * len(s) + [0] * (width - len(s)) for s in sequences]
    return _to(rows, device), _to(masks, device)


def _to(rows: list[list[int]], device: torch.device | str) -> torch.Tensor:
    # Built on the host in one go, then one copy: no per-row writes into device memory.
    return to_device(torch.tensor(rows, dtype=torch.long), device)
