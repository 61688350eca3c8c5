"""Piecewise tokenization of templates and the verbalizer check, for one tokenizer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from rlprompt.errors import RLPromptError
from rlprompt.template import Template


@dataclass(frozen=True)
class EncodedPair:
    """Token ids of one filled template, split where the prompt starts."""

    prefix: tuple[int, ...]
    """Ids before the split field (the prompt, unless told otherwise): before the prompt they
    depend on the example only, so causal LMs cache them."""
    suffix: tuple[int, ...]
    """The split field's ids and everything after it up to the read-out (causal) or the end (masked)."""
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

    def encode(self, sentence: str, prompt: str, split_at: str = "prompt") -> EncodedPair:
        """Ids of the template filled with ``sentence`` and ``prompt``.

        Args:
            sentence: The input.
            prompt: The prompt.
            split_at: The field where ``prefix`` ends and ``suffix`` starts: ``"prompt"`` (the
                prefix depends on the input only: the input-prefix cache), or ``"sentence"`` (in
                a prompt-first template the prefix then depends on the prompt only: the prompt cache).
        """
        prefix: list[int] = list(self.before)
        suffix: list[int] = []
        target = prefix
        mask_index = None
        for kind, text in self.template.segments(sentence, prompt):
            if kind == split_at:
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
