"""The in-process backend: a frozen transformers LM scored in this process (``local``).

The scorer fills the template with every pair, runs the frozen target LM, and reads the logits
of the verbalizer tokens at the read-out position: for a causal LM the next-token logits
after everything before ``{mask}``, for a masked LM the logits at the mask token.

Causal LMs use a prefix KV cache: everything before ``{prompt}`` (the sentence, in the usual
``"{sentence} {prompt} {mask}"``) is run once per example, and for each prompt only the prompt
and the template's tail run through the model. Only the read-out position's hidden state is
multiplied by the verbalizer rows of the output embedding, never the whole vocabulary.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Sequence

import torch

from rlprompt.batching import index_tensor, left_pad, pad_token_id, positions, right_pad, token_bounded_chunks
from rlprompt.devices import PLANNED_PREFIX_TOKENS, kv_bytes_per_token, scoring_memory, tune_host_allocator
from rlprompt.models import LoadedModel, context_window
from rlprompt.scoring.encoding import TemplateEncoder, verbalizer_token_ids
from rlprompt.scoring.prefix_cache import PrefixState, cache_keyword, sliding_window
from rlprompt.template import Template

if TYPE_CHECKING:
    from rlprompt.models import ModelPool
    from rlprompt.tasks import Task


class Scorer:
    """Verbalizer logits of a frozen LM for every (prompt, example) pair.

    Args:
        lm: The frozen target model.
        template: Where the sentence, prompt and mask go.
        verbalizers: One single-token label word per class, e.g. ``[" terrible", " great"]``.
        max_batch_tokens: Upper bound on tokens (cached ones included) in one forward pass;
            bounds memory. Default: from the model's size and the device's free memory
            (:func:`rlprompt.devices.plan_scoring_memory`), at most
            :func:`rlprompt.devices.default_batch_tokens`.
        prefix_cache: Reuse each example's prefix across prompts (causal LMs). Turning it off
            gives the plain path, kept as the reference for equivalence tests and benchmarks.
        example_block: Examples whose prefixes are cached at once; bounds the cache's memory.
        keep_all_prefixes: Keep every block's prefixes, not only a set that fits one block: for
            scoring one large set (a test set) with many prompts over several calls, as far as
            the prefix cache's memory bound allows. Memory grows with the set (about 2 GB for SST-2's test set on SmolLM2-135M when the
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
        # The memory plan follows the model's size and the device's free memory: a pass's token
        # bound, and the bytes the cached prefixes may hold (rlprompt.devices.plan_scoring_memory).
        memory = scoring_memory(lm.model, self.device, lm.name)
        self.max_batch_tokens = max_batch_tokens or memory.batch_tokens
        self.prefix_cache_bytes = memory.prefix_cache_bytes
        """Most bytes the cached prefixes (remembered, and the block being scored) may hold; None: unbounded."""
        self._kv_bytes_per_token = kv_bytes_per_token(lm.model.config, lm.dtype.itemsize)
        self.example_block = example_block
        if self.prefix_cache_bytes is not None:
            # A block of typical prefixes must fit the prefix cache's share (a 7B model on a 16 GB card: tens of examples).
            self.example_block = max(1, min(example_block, self.prefix_cache_bytes // (self._kv_bytes_per_token * PLANNED_PREFIX_TOKENS)))
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
        self._sliding_window = sliding_window(model.config)
        self.cache_keyword = cache_keyword(type(model.base_model))
        """The keyword the KV cache is passed to the model under (read off its ``forward``)."""
        self._prefix_states: dict[tuple[str, ...], PrefixState] = {}

    @property
    def num_classes(self) -> int:
        return len(self.verbalizer_ids)

    def context_need(self, prompts: Sequence[str], sentences: Sequence[str]) -> tuple[list[int], int | None]:
        """Tokens of each prompt's longest filled template over ``sentences`` (template and input
        included), and the target's context window (None when its config names none): what
        :func:`rlprompt.evaluation.check_prompts_fit` compares before any scoring."""
        needs = [max((len(pair.prefix) + len(pair.suffix) for pair in (self.encoder.encode(s, p) for s in sentences)), default=0) for p in prompts]
        return needs, context_window(self.lm.model.config)

    def class_logits(self, prompts: Sequence[str], sentences: Sequence[str]) -> torch.Tensor:
        """Verbalizer logits, shape ``[len(prompts), len(sentences), num_classes]``, float32, on the CPU.

        Everything stays on the model's device until this one copy of the result to the host.
        """
        if not prompts or not sentences:
            return torch.zeros(len(prompts), len(sentences), self.num_classes)
        with torch.inference_mode():
            if self.lm.kind == "masked":
                logits = self._masked_logits(prompts, sentences)
            elif self._prompt_cache_applies(prompts, sentences):
                logits = self._prompt_cached_logits(prompts, sentences)
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

    def _prompt_cache_applies(self, prompts: Sequence[str], sentences: Sequence[str]) -> bool:
        """Whether the prompt cache serves these pairs: a causal prompt-first template, every
        prompt with something before the input to cache (a template that opens with an empty
        prompt, on a tokenizer without BOS, has nothing) and every input non-empty."""
        return (
            self.prefix_cache
            and self.encoder.template.prompt_first
            and all(s.strip() for s in sentences)
            and all(self.encoder.encode(sentences[0], p, split_at="sentence").prefix for p in prompts)
            and self._fits_window(prompts, sentences)
        )

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
                input_ids=ids, attention_mask=mask, position_ids=positions(mask), use_cache=False
            ).last_hidden_state
            outputs.append(self._readout(hidden[:, -1]))
        return torch.cat(outputs)

    # -- causal, prefix cache ---------------------------------------------------------------

    def _prefix_state(self, sentences: Sequence[str], remember: bool) -> PrefixState:
        """The prefixes' keys/values; kept for reuse when ``remember`` (the train set, scored every step)."""
        key = tuple(sentences)
        state = self._prefix_states.get(key)
        if state is None:
            # The prompt does not change the prefix, so the empty prompt gives it.
            prefixes = [self.encoder.encode(sentence, "").prefix for sentence in sentences]
            # The cached prefixes count against the memory plan: the oldest remembered blocks go
            # until this one (its padded keys/values) fits beside the rest.
            needed = len(prefixes) * max(len(p) for p in prefixes) * self._kv_bytes_per_token
            while self._prefix_states and not self._prefixes_fit(needed):
                self._prefix_states.pop(next(iter(self._prefix_states)))
            state = PrefixState.compute(
                self.lm.model, prefixes, self._pad_id, self.max_batch_tokens, self.device, self.cache_keyword
            )
            if remember and self._prefixes_fit(state.nbytes):
                if len(self._prefix_states) >= 4 and not self.keep_all_prefixes:
                    self._prefix_states.pop(next(iter(self._prefix_states)))
                self._prefix_states[key] = state
        return state

    def _prefixes_fit(self, nbytes: int) -> bool:
        """Whether ``nbytes`` more of cached prefixes fit beside the remembered ones."""
        held = sum(state.nbytes for state in self._prefix_states.values())
        return self.prefix_cache_bytes is None or held + nbytes <= self.prefix_cache_bytes

    def _cached_causal_logits(self, prompts: Sequence[str], sentences: Sequence[str], remember: bool) -> torch.Tensor:
        state = self._prefix_state(sentences, remember)
        suffixes = [self.encoder.encode(sentence, prompt).suffix for prompt in prompts for sentence in sentences]
        # Pair i is (prompt i // E, example i % E): its cached prefix is example i % E's.
        return self._logits_on_prefixes(state, suffixes, [i % len(sentences) for i in range(len(suffixes))], by_suffix=False)

    def _prompt_cached_logits(self, prompts: Sequence[str], sentences: Sequence[str]) -> torch.Tensor:
        """The mirror of the input-prefix cache, for templates that open with the prompt: each
        prompt (with everything before the input) runs once, and every input runs on top of its
        keys/values. Nothing is remembered across calls: a training step's prompts are new."""
        heads = [self.encoder.encode(sentences[0], prompt, split_at="sentence").prefix for prompt in prompts]
        tails = [self.encoder.encode(sentence, "", split_at="sentence").suffix for sentence in sentences]
        state = PrefixState.compute(self.lm.model, heads, self._pad_id, self.max_batch_tokens, self.device, self.cache_keyword)
        # Pair i is (prompt i // E, example i % E): its cached prefix is prompt i // E's.
        return self._logits_on_prefixes(
            state, [tails[i % len(sentences)] for i in range(len(prompts) * len(sentences))],
            [i // len(sentences) for i in range(len(prompts) * len(sentences))], by_suffix=True,
        )

    def _logits_on_prefixes(
        self, state: PrefixState, suffixes: list[tuple[int, ...]], prefix_of_pair: list[int], by_suffix: bool
    ) -> torch.Tensor:
        """Read-out logits of every pair: pair i runs ``suffixes[i]`` on the cached prefix
        ``prefix_of_pair[i]`` of ``state`` (an empty suffix reads the prefix's last hidden state).

        Pairs share a batch with pairs of similar length, so little is padded: sorted by prefix
        length, or with ``by_suffix`` by suffix length (when the suffixes are the longer part).
        Lengths are read from the host copy: indexing a device tensor per pair would sync with
        the device hundreds of times per call.
        """
        lengths = state.host_lengths
        key = (lambda i: (len(suffixes[i]), lengths[prefix_of_pair[i]])) if by_suffix else (lambda i: lengths[prefix_of_pair[i]])
        order = sorted(range(len(suffixes)), key=key)
        cost = [lengths[prefix_of_pair[i]] + len(suffixes[i]) for i in order]
        logits = torch.empty(len(suffixes), self.num_classes, device=self.device)
        for chunk in token_bounded_chunks(cost, self.max_batch_tokens):
            pairs = [order[i] for i in chunk]
            with_suffix = [i for i in pairs if suffixes[i]]
            hidden = state.last_hidden[index_tensor([prefix_of_pair[i] for i in pairs], self.device)]
            if with_suffix:
                rows = [prefix_of_pair[i] for i in with_suffix]
                selected = index_tensor(rows, self.device)
                ids, suffix_mask = left_pad([suffixes[i] for i in with_suffix], self._pad_id, device=self.device)
                width = max(lengths[r] for r in rows)
                cache = state.cache_for(selected, width, self.lm.model.config)
                mask = torch.cat([state.mask[selected, -width:], suffix_mask], dim=1)
                suffix_positions = state.lengths[selected, None] + positions(suffix_mask)
                out = self.lm.model.base_model(
                    input_ids=ids, attention_mask=mask, position_ids=suffix_positions, use_cache=True, **{self.cache_keyword: cache}
                ).last_hidden_state
                hidden[index_tensor([k for k, i in enumerate(pairs) if suffixes[i]], self.device)] = out[:, -1]
            logits[index_tensor(pairs, self.device)] = self._readout(hidden)
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
                mask_positions = index_tensor([pairs[i].mask_index for i in chunk], self.device)
                outputs.append(self._readout(transformed[torch.arange(len(chunk), device=self.device), mask_positions]))
        return torch.cat(outputs)


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


def local_backend(spec: str, task: Task, *, models: ModelPool, max_batch_tokens: int | None = None) -> Scorer:
    """The registered ``local`` backend: ``spec`` is a model spec (alias, .gguf, folder or hub id).

    A preset task is read in the model's format (a masked LM gets the paper's masked template and
    verbalizers) unless its template and verbalizers were set by the user.
    """
    lm = models.get(spec)
    task = task.for_target(lm.kind)
    return Scorer(lm, task.template, task.verbalizers, max_batch_tokens=max_batch_tokens)
