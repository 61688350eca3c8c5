"""The prefix KV cache: each example's prefix runs once; its keys/values serve every prompt.

The cache goes to the model under the keyword its ``forward`` takes (transformers renamed
``past_key_values`` to ``cache``), read off the signature.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import torch

from rlprompt.batching import index_tensor, left_pad, positions, token_bounded_chunks


@functools.cache
def cache_keyword(model_class: type) -> str:
    """The keyword a model's ``forward`` takes its KV cache under.

    transformers renamed ``past_key_values`` to ``cache`` (5.2x: the old name warns, and goes
    in 5.40). Reading the signature, not the version, keeps both working.
    """
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def sliding_window(config) -> int | None:
    """The attention window of a model with sliding-window layers (Gemma-3, Mistral), else None."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    window = getattr(text, "sliding_window", None)
    layer_types = getattr(text, "layer_types", None) or []
    if not window or getattr(text, "use_sliding_window", True) is False:
        return None
    if layer_types and not any("sliding" in kind for kind in layer_types):
        return None
    return int(window)


@dataclass
class PrefixState:
    """Keys/values, padding mask and last hidden state of each example's prefix (left-padded)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    mask: torch.Tensor
    lengths: torch.Tensor
    host_lengths: list[int]
    """``lengths`` on the host, for batching decisions."""
    last_hidden: torch.Tensor

    @property
    def nbytes(self) -> int:
        """Device bytes this state holds: what it counts against the scorer's prefix-cache bound."""
        tensors = [*self.keys, *self.values, self.mask, self.lengths, self.last_hidden]
        return sum(t.numel() * t.element_size() for t in tensors)

    @classmethod
    def compute(
        cls, model, prefixes: list[tuple[int, ...]], pad_id: int, max_batch_tokens: int, device: torch.device,
        cache_keyword: str,
    ) -> PrefixState:
        """Run every prefix once, in length-sorted batches, left-padded to a common width."""
        from transformers import DynamicCache

        width = max(len(p) for p in prefixes)
        _, mask = left_pad(prefixes, pad_id, width, device=device)
        order = sorted(range(len(prefixes)), key=lambda i: len(prefixes[i]))
        keys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        last_hidden = None
        for chunk in token_bounded_chunks([len(prefixes[i]) for i in order], max_batch_tokens):
            batch = [order[i] for i in chunk]
            ids, batch_mask = left_pad([prefixes[i] for i in batch], pad_id, device=device)
            cache = DynamicCache(config=model.config)
            out = model.base_model(
                input_ids=ids, attention_mask=batch_mask, position_ids=positions(batch_mask), use_cache=True, **{cache_keyword: cache}
            )
            if last_hidden is None:
                last_hidden = out.last_hidden_state.new_zeros(len(prefixes), out.last_hidden_state.shape[-1])
                for layer in cache.layers:
                    shape = (len(prefixes), *layer.keys.shape[1:2], width, layer.keys.shape[-1])
                    keys.append(layer.keys.new_zeros(shape))
                    values.append(layer.values.new_zeros(shape[:-1] + (layer.values.shape[-1],)))
            rows = index_tensor(batch, device)
            last_hidden[rows] = out.last_hidden_state[:, -1]
            batch_width = ids.shape[1]
            # Masked-out zeros pad each batch on the left to the common width.
            for layer, k, v in zip(cache.layers, keys, values):
                k[rows, :, width - batch_width:] = layer.keys
                v[rows, :, width - batch_width:] = layer.values
        return cls(
            keys=keys, values=values, mask=mask, lengths=mask.sum(dim=1), host_lengths=[len(p) for p in prefixes],
            last_hidden=last_hidden,
        )

    def cache_for(self, rows: torch.Tensor, width: int, config):
        """A fresh cache with the last ``width`` positions of ``rows`` (the forward pass appends to it)."""
        from transformers import DynamicCache

        # Through the cache's own update path, so every layer type keeps its bookkeeping (a
        # sliding-window layer counts the tokens it has seen to build its mask).
        data = [(k[rows, :, -width:], v[rows, :, -width:]) for k, v in zip(self.keys, self.values)]
        return DynamicCache(ddp_cache_data=data, config=config)
