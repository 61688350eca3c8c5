"""Class scores of a frozen LM for (prompt x example) pairs.

The scorer fills the template with every pair, runs the frozen target LM, and reads the logits
of the verbalizer tokens at the read-out position: for a causal LM the next-token logits
after everything before ``{mask}``, for a masked LM the logits at the mask token.

Causal LMs use a prefix KV cache: everything before ``{prompt}`` (the sentence, in the usual
``"{sentence} {prompt} {mask}"``) is run once per example, and for each prompt only the prompt
and the template's tail run through the model. Only the read-out position's hidden state is
multiplied by the verbalizer rows of the output embedding, never the whole vocabulary.
"""

from __future__ import annotations

import functools
import inspect
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Sequence

import torch

from rlprompt.devices import default_batch_tokens, tune_host_allocator
from rlprompt.errors import RLPromptError
from rlprompt.models import LoadedModel
from rlprompt.template import Template


@dataclass(frozen=True)
class EncodedPair:
    """Token ids of one filled template, split where the prompt starts."""

    prefix: tuple[int, ...]
    """Ids before the prompt: they depend on the example only, so causal LMs cache them."""
    suffix: tuple[int, ...]
    """The prompt's ids and everything after it up to the read-out (causal) or the end (masked)."""
    mask_index: int | None
    """Index of the mask token in ``prefix + suffix`` (masked LMs only)."""


class TemplateEncoder:
    """Piecewise tokenization of a template for one tokenizer (see :mod:`rlprompt.template`)."""

    def __init__(self, tokenizer, kind: str, template: Template) -> None:
        template.check_for(kind)
        self.tokenizer = tokenizer
        self.kind = kind
        self.template = template
        self._piece_cache: dict[str, tuple[int, ...]] = {}
        probe = "hello"
        plain = self._piece_ids(probe)
        full = list(tokenizer(probe).input_ids)
        start = _find_sublist(full, plain)
        # Special tokens the tokenizer wraps around any text: BOS for Gemma/Llama, CLS/SEP for BERT.
        self.before = tuple(full[:start]) if start >= 0 else ()
        self.after = tuple(full[start + len(plain):]) if start >= 0 and kind == "masked" else ()
        self.mask_id = tokenizer.mask_token_id if kind == "masked" else None
        if kind == "masked" and self.mask_id is None:
            raise RLPromptError("the masked LM's tokenizer has no mask token")

    def _piece_ids(self, text: str) -> tuple[int, ...]:
        # Sentences recur every training step; tokenize each piece once.
        ids = self._piece_cache.get(text)
        if ids is None:
            ids = self._piece_cache[text] = tuple(self.tokenizer(text, add_special_tokens=False).input_ids)
        return ids

    def encode(self, sentence: str, prompt: str) -> EncodedPair:
        """Ids of the template filled with ``sentence`` and ``prompt``."""
        prefix: list[int] = list(self.before)
        suffix: list[int] = []
        target = prefix
        mask_index = None
        for kind, text in self.template.segments(sentence, prompt):
            if kind == "prompt":
                target = suffix
            if kind == "mask":
                if self.kind == "causal":
                    break
                mask_index = len(prefix) + len(suffix) if target is suffix else len(prefix)
                target.append(self.mask_id)
                continue
            if text:
                target.extend(self._piece_ids(text))
        target.extend(self.after)
        return EncodedPair(prefix=tuple(prefix), suffix=tuple(suffix), mask_index=mask_index)


def pad_token_id(tokenizer) -> int:
    """The id padding uses; any id works where the attention mask hides it, so 0 without a pad token."""
    pad = tokenizer.pad_token_id
    return pad if pad is not None else 0


def _find_sublist(haystack: list[int], needle: tuple[int, ...]) -> int:
    for start in range(len(haystack) - len(needle) + 1):
        if tuple(haystack[start:start + len(needle)]) == needle:
            return start
    return -1


def verbalizer_token_ids(tokenizer, verbalizers: Sequence[str], model_name: str = "the target LM") -> list[int]:
    """One token id per verbalizer, or a clear error naming the verbalizer that is not one token."""
    ids = []
    for word in verbalizers:
        pieces = tokenizer(word, add_special_tokens=False).input_ids
        if len(pieces) != 1:
            tokens = tokenizer.convert_ids_to_tokens(pieces)
            raise RLPromptError(
                f"verbalizer {word!r} is {len(pieces)} tokens {tokens} for {model_name}'s tokenizer; "
                "each verbalizer must be a single token (try a shorter or more common word, with its leading space)"
            )
        ids.append(pieces[0])
    if len(set(ids)) != len(ids):
        raise RLPromptError(f"verbalizers {list(verbalizers)} map to the same token for {model_name}; they must differ")
    return ids


class Scorer:
    """Verbalizer logits of a frozen LM for every (prompt, example) pair.

    Args:
        lm: The frozen target model.
        template: Where the sentence, prompt and mask go.
        verbalizers: One single-token label word per class, e.g. ``[" terrible", " great"]``.
        max_batch_tokens: Upper bound on tokens (cached ones included) in one forward pass;
            bounds memory. Default: per device (:func:`rlprompt.devices.default_batch_tokens`).
        prefix_cache: Reuse each example's prefix across prompts (causal LMs). Turning it off
            gives the plain path, kept as the reference for equivalence tests and benchmarks.
        example_block: Examples whose prefixes are cached at once; bounds the cache's memory.
        keep_all_prefixes: Keep every block's prefixes, not only a set that fits one block: for
            scoring one large set (a test set) with many prompts over several calls. Memory
            grows with the set (about 2 GB for SST-2's test set on SmolLM2-135M when the
            sentences come sorted by length).
    """

    def __init__(
        self,
        lm: LoadedModel,
        template: Template,
        verbalizers: Sequence[str],
        *,
        max_batch_tokens: int | None = None,
        prefix_cache: bool = True,
        example_block: int = 256,
        keep_all_prefixes: bool = False,
    ) -> None:
        self.lm = lm
        self.encoder = TemplateEncoder(lm.tokenizer, lm.kind, template)
        self.verbalizer_ids = verbalizer_token_ids(lm.tokenizer, verbalizers, lm.name)
        self.device = lm.device
        if self.device.type == "cpu":
            tune_host_allocator()
        self.max_batch_tokens = max_batch_tokens or default_batch_tokens(self.device)
        self.example_block = example_block
        self.keep_all_prefixes = keep_all_prefixes
        self.prefix_cache = prefix_cache and lm.kind == "causal"
        model = lm.model
        head = model.get_output_embeddings()
        ids = torch.tensor(self.verbalizer_ids, device=self.device)
        # The read-out runs in fp32 whatever the model's dtype: a handful of rows, and bf16
        # rounding would flip close calls. This is where the model's dtype meets fp32.
        self._head_weight = head.weight.detach()[ids].float()
        bias = getattr(head, "bias", None)
        self._head_bias = bias.detach()[ids].float() if bias is not None else None
        self._softcap = getattr(model.config, "final_logit_softcapping", None)
        self._pad_id = pad_token_id(lm.tokenizer)
        self._sliding_window = _sliding_window(model.config)
        self.cache_keyword = _cache_keyword(type(model.base_model))
        """The keyword the KV cache is passed to the model under (read off its ``forward``)."""
        self._prefix_states: dict[tuple[str, ...], _PrefixState] = {}

    @property
    def num_classes(self) -> int:
        return len(self.verbalizer_ids)

    def class_logits(self, prompts: Sequence[str], sentences: Sequence[str]) -> torch.Tensor:
        """Verbalizer logits, shape ``[len(prompts), len(sentences), num_classes]``, float32, on the CPU.

        Everything stays on the model's device until this one copy of the result to the host.
        """
        if not prompts or not sentences:
            return torch.zeros(len(prompts), len(sentences), self.num_classes)
        with torch.inference_mode():
            if self.lm.kind == "masked":
                logits = self._masked_logits(prompts, sentences)
            # A template that opens with the prompt, on a tokenizer without BOS, has nothing to cache.
            elif self.prefix_cache and all(self.encoder.encode(s, "").prefix for s in sentences) and self._fits_window(prompts, sentences):
                # Blocks of examples bound the cached keys/values (a big test set would need GBs).
                blocks = [sentences[i : i + self.example_block] for i in range(0, len(sentences), self.example_block)]
                logits = torch.cat(
                    [
                        self._cached_causal_logits(prompts, block, remember=len(blocks) == 1 or self.keep_all_prefixes).view(len(prompts), len(block), -1)
                        for block in blocks
                    ],
                    dim=1,
                )
            else:
                logits = self._plain_causal_logits(prompts, sentences)
        return logits.float().reshape(len(prompts), len(sentences), self.num_classes).cpu()

    def _fits_window(self, prompts: Sequence[str], sentences: Sequence[str]) -> bool:
        """Whether every pair fits inside the model's sliding attention window, if it has one.

        A sliding-window layer keeps only its last ``window - 1`` keys/values, so a prefix
        cached past the window would be cut; such pairs take the plain path. (Gemma-3-270M's
        window is 512 tokens: the paper's tasks never reach it.)
        """
        if self._sliding_window is None:
            return True
        longest = max(len(pair.prefix) + len(pair.suffix) for p in prompts for pair in (self.encoder.encode(s, p) for s in sentences))
        return longest < self._sliding_window - 1

    # -- read-out -------------------------------------------------------------------------

    def _readout(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = hidden.float() @ self._head_weight.T
        if self._head_bias is not None:
            logits = logits + self._head_bias
        if self._softcap:
            logits = torch.tanh(logits / self._softcap) * self._softcap
        return logits

    # -- causal, plain --------------------------------------------------------------------

    def _plain_causal_logits(self, prompts: Sequence[str], sentences: Sequence[str]) -> torch.Tensor:
        sequences = [
            pair.prefix + pair.suffix
            for prompt in prompts
            for pair in (self.encoder.encode(sentence, prompt) for sentence in sentences)
        ]
        outputs = []
        for chunk in token_bounded_chunks([len(s) for s in sequences], self.max_batch_tokens):
            ids, mask = left_pad([sequences[i] for i in chunk], self._pad_id, device=self.device)
            hidden = self.lm.model.base_model(
                input_ids=ids, attention_mask=mask, position_ids=_positions(mask), use_cache=False
            ).last_hidden_state
            outputs.append(self._readout(hidden[:, -1]))
        return torch.cat(outputs)

    # -- causal, prefix cache ---------------------------------------------------------------

    def _prefix_state(self, sentences: Sequence[str], remember: bool) -> _PrefixState:
        """The prefixes' keys/values; kept for reuse when ``remember`` (the train set, scored every step)."""
        key = tuple(sentences)
        state = self._prefix_states.get(key)
        if state is None:
            # The prompt does not change the prefix, so the empty prompt gives it.
            prefixes = [self.encoder.encode(sentence, "").prefix for sentence in sentences]
            state = _PrefixState.compute(
                self.lm.model, prefixes, self._pad_id, self.max_batch_tokens, self.device, self.cache_keyword
            )
            if remember:
                if len(self._prefix_states) >= 4 and not self.keep_all_prefixes:
                    self._prefix_states.pop(next(iter(self._prefix_states)))
                self._prefix_states[key] = state
        return state

    def _cached_causal_logits(self, prompts: Sequence[str], sentences: Sequence[str], remember: bool) -> torch.Tensor:
        state = self._prefix_state(sentences, remember)
        suffixes = [self.encoder.encode(sentence, prompt).suffix for prompt in prompts for sentence in sentences]
        # Pair i is (prompt i // E, example i % E). Lengths are read from the host copy: indexing
        # a device tensor per pair would sync with the device hundreds of times per call.
        example_of_pair = [i % len(sentences) for i in range(len(suffixes))]
        lengths = state.host_lengths
        # Pairs sorted by prefix length share a batch with pairs of similar length: little padding.
        order = sorted(range(len(suffixes)), key=lambda i: lengths[example_of_pair[i]])
        cost = [lengths[example_of_pair[i]] + len(suffixes[i]) for i in order]
        logits = torch.empty(len(suffixes), self.num_classes, device=self.device)
        for chunk in token_bounded_chunks(cost, self.max_batch_tokens):
            pairs = [order[i] for i in chunk]
            with_suffix = [i for i in pairs if suffixes[i]]
            hidden = state.last_hidden[_index([example_of_pair[i] for i in pairs], self.device)]
            if with_suffix:
                examples = [example_of_pair[i] for i in with_suffix]
                selected = _index(examples, self.device)
                ids, suffix_mask = left_pad([suffixes[i] for i in with_suffix], self._pad_id, device=self.device)
                width = max(lengths[e] for e in examples)
                cache = state.cache_for(selected, width, self.lm.model.config)
                mask = torch.cat([state.mask[selected, -width:], suffix_mask], dim=1)
                positions = state.lengths[selected, None] + _positions(suffix_mask)
                out = self.lm.model.base_model(
                    input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **{self.cache_keyword: cache}
                ).last_hidden_state
                hidden[_index([k for k, i in enumerate(pairs) if suffixes[i]], self.device)] = out[:, -1]
            logits[_index(pairs, self.device)] = self._readout(hidden)
        return logits

    # -- masked ---------------------------------------------------------------------------

    def _masked_logits(self, prompts: Sequence[str], sentences: Sequence[str]) -> torch.Tensor:
        pairs = [self.encoder.encode(sentence, prompt) for prompt in prompts for sentence in sentences]
        sequences = [pair.prefix + pair.suffix for pair in pairs]
        outputs = []
        with _output_embeddings_removed(self.lm.model):
            for chunk in token_bounded_chunks([len(s) for s in sequences], self.max_batch_tokens):
                ids, mask = right_pad([sequences[i] for i in chunk], self._pad_id, device=self.device)
                # With the vocabulary projection removed, the MLM head returns its transformed
                # hidden states; only the mask position meets the verbalizer rows.
                transformed = self.lm.model(input_ids=ids, attention_mask=mask).logits
                mask_positions = _index([pairs[i].mask_index for i in chunk], self.device)
                outputs.append(self._readout(transformed[torch.arange(len(chunk), device=self.device), mask_positions]))
        return torch.cat(outputs)


CALIBRATIONS = ("none", "train-mean")
"""How class logits are calibrated: ``none``, or ``train-mean`` (see :class:`CalibratedScorer`)."""


class CalibratedScorer:
    """A scorer whose class logits are calibrated per prompt on unlabelled reference inputs.

    Each prompt's verbalizer logits have their mean over the reference inputs (the task's train
    sentences, labels unused) subtracted, so a prompt is judged by how it orders the inputs,
    not by which label it pushes every input towards. Small LMs need this: with the empty
    SST-2 prompt, SmolLM2-135M and Gemma-3-270M both answer " great" for 98-99% of inputs, and
    an uncalibrated prompt's gain is then mostly a shift of that bias, which is the model's own
    and does not carry to another model. This is contextual calibration (Zhao et al., 2021)
    with the mean over real inputs in place of a content-free one.

    Args:
        scorer: The uncalibrated scorer.
        reference_sentences: Inputs the offsets are averaged over.
    """

    def __init__(self, scorer: Scorer, reference_sentences: Sequence[str]) -> None:
        if not reference_sentences:
            raise RLPromptError("calibration needs at least one reference input (the task's train split)")
        self.scorer = scorer
        self.reference = list(reference_sentences)
        self._offsets: dict[str, torch.Tensor] = {}

    @property
    def num_classes(self) -> int:
        return self.scorer.num_classes

    def offsets(self, prompts: Sequence[str]) -> torch.Tensor:
        """Mean class logits of each prompt over the reference inputs, ``[len(prompts), num_classes]``."""
        missing = [prompt for prompt in dict.fromkeys(prompts) if prompt not in self._offsets]
        if missing:
            self._offsets.update(zip(missing, self.scorer.class_logits(missing, self.reference).mean(dim=1)))
        if not prompts:
            return torch.zeros(0, self.num_classes)
        return torch.stack([self._offsets[prompt] for prompt in prompts])

    def class_logits(self, prompts: Sequence[str], sentences: Sequence[str]) -> torch.Tensor:
        """Calibrated verbalizer logits, shape ``[len(prompts), len(sentences), num_classes]``."""
        logits = self.scorer.class_logits(prompts, sentences)
        if list(sentences) == self.reference:
            # Scoring the reference set itself (the training reward): its mean is the offset.
            offsets = logits.mean(dim=1)
            self._offsets.update(zip(prompts, offsets))
        else:
            offsets = self.offsets(prompts)
        return logits - offsets[:, None, :]


def calibration_splits(calibration: str) -> tuple[str, ...]:
    """The task splits ``calibration`` reads besides the one being scored.

    Raises:
        RLPromptError: On an unknown calibration.
    """
    if calibration not in CALIBRATIONS:
        raise RLPromptError(f"unknown calibration '{calibration}'; valid: {', '.join(CALIBRATIONS)}")
    return ("train",) if calibration == "train-mean" else ()


def calibrated(scorer: Scorer, calibration: str, reference_sentences: Sequence[str]) -> Scorer | CalibratedScorer:
    """``scorer`` with ``calibration`` (one of :data:`CALIBRATIONS`) applied.

    Raises:
        RLPromptError: On an unknown calibration, or ``train-mean`` without reference inputs.
    """
    if not calibration_splits(calibration):
        return scorer
    return CalibratedScorer(scorer, reference_sentences)


@contextmanager
def _output_embeddings_removed(model):
    """Temporarily replace the model's vocabulary projection by the identity."""
    head = model.get_output_embeddings()
    parent, name = next(
        (module, child_name)
        for module in model.modules()
        for child_name, child in module.named_children()
        if child is head
    )
    setattr(parent, name, torch.nn.Identity())
    try:
        yield
    finally:
        setattr(parent, name, head)


def _sliding_window(config) -> int | None:
    """The attention window of a model with sliding-window layers (Gemma-3, Mistral), else None."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    window = getattr(text, "sliding_window", None)
    layer_types = getattr(text, "layer_types", None) or []
    if not window or getattr(text, "use_sliding_window", True) is False:
        return None
    if layer_types and not any("sliding" in kind for kind in layer_types):
        return None
    return int(window)


def _index(values: Sequence[int], device: torch.device) -> torch.Tensor:
    """An index tensor on ``device``, built on the host and copied once."""
    return torch.tensor(values, dtype=torch.long).to(device, non_blocking=True)


@functools.cache
def _cache_keyword(model_class: type) -> str:
    """The keyword a model's ``forward`` takes its KV cache under.

    transformers renamed ``past_key_values`` to ``cache`` (5.2x: the old name warns, and goes
    in 5.40). Reading the signature, not the version, keeps both working.
    """
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


@dataclass
class _PrefixState:
    """Keys/values, padding mask and last hidden state of each example's prefix (left-padded)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    mask: torch.Tensor
    lengths: torch.Tensor
    host_lengths: list[int]
    """``lengths`` on the host, for batching decisions."""
    last_hidden: torch.Tensor

    @classmethod
    def compute(
        cls, model, prefixes: list[tuple[int, ...]], pad_id: int, max_batch_tokens: int, device: torch.device,
        cache_keyword: str,
    ) -> _PrefixState:
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
                input_ids=ids, attention_mask=batch_mask, position_ids=_positions(batch_mask), use_cache=True, **{cache_keyword: cache}
            )
            if last_hidden is None:
                last_hidden = out.last_hidden_state.new_zeros(len(prefixes), out.last_hidden_state.shape[-1])
                for layer in cache.layers:
                    shape = (len(prefixes), *layer.keys.shape[1:2], width, layer.keys.shape[-1])
                    keys.append(layer.keys.new_zeros(shape))
                    values.append(layer.values.new_zeros(shape[:-1] + (layer.values.shape[-1],)))
            rows = _index(batch, device)
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


def _positions(mask: torch.Tensor) -> torch.Tensor:
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
    return torch.tensor(rows, dtype=torch.long).to(device, non_blocking=True)
