"""Prompt templates and their piecewise tokenization.

A template is a string with the fields ``{sentence}`` (the task input), ``{prompt}`` (the
text being optimised) and ``{mask}`` (where the label word is read out), for example
``"{sentence} {prompt} {mask}"`` or ``"Review: {sentence} {prompt}\\nSentiment: {mask}"``.

Tokenization is *piecewise*, everywhere (training, ``rlprompt eval``, exports): the template
is cut at its fields, each piece is tokenized on its own, and the ids are concatenated. This
makes the ids of the part before the prompt independent of the prompt, which is what lets the
scorer cache it. Two rules make the pieces read naturally:

* whitespace just before a field belongs to that field's text (``" It was"``, not ``" "`` +
  ``"It was"``), as BPE vocabularies spell a word's leading space inside the word's token;
* a field whose text is empty contributes nothing, its leading whitespace included, so the
  empty prompt renders ``"{sentence} {prompt} {mask}"`` as just the sentence.

The read-out at ``{mask}`` uses verbalizer tokens that carry their own leading space
(``" great"``), so the whitespace before ``{mask}`` is never tokenized. A causal LM reads the
next-token distribution after everything before ``{mask}``, so nothing may follow ``{mask}``
in a causal template; a masked LM sees the mask token in place, with the text after it.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field

from rlprompt.errors import RLPromptError

FIELDS = ("sentence", "prompt", "mask")


@dataclass(frozen=True)
class Piece:
    """One part of a parsed template: a literal text or a field."""

    kind: str
    """``"literal"``, or the field name: ``"sentence"``, ``"prompt"`` or ``"mask"``."""
    text: str = ""
    """The literal's text; for a field, the whitespace that stood before it."""


@dataclass(frozen=True)
class Template:
    """A validated template (see the module docstring)."""

    text: str
    """The template string, e.g. ``"{sentence} {prompt} {mask}"``."""
    pieces: tuple[Piece, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pieces", tuple(_parse(self.text)))

    @property
    def prompt_first(self) -> bool:
        """Whether the prompt comes before the sentence."""
        kinds = [piece.kind for piece in self.pieces]
        return kinds.index("prompt") < kinds.index("sentence")

    def check_for(self, kind: str) -> None:
        """Raise if this template cannot be read out by a model of ``kind``."""
        if kind == "causal":
            after_mask = self.text.split("{mask}", 1)[1]
            if after_mask.strip():
                raise RLPromptError(
                    f"template {self.text!r}: a causal LM reads the label at the end, so nothing "
                    f"may follow {{mask}} (found {after_mask!r})"
                )

    def fill(self, sentence: str, prompt: str, mask: str = "{mask}") -> str:
        """The template as display text, with the same whitespace rules as tokenization."""
        return "".join(
            piece.text + mask if kind == "mask" else text for kind, text, piece in self._segments(sentence, prompt)
        )

    def segments(self, sentence: str, prompt: str) -> list[tuple[str, str]]:
        """The template cut at its fields, as ``(kind, text)`` pairs in order.

        Literals and fields carry their text (a field's leading whitespace included); an empty
        prompt comes as ``("prompt", "")`` and the mask as ``("mask", "")``: the scorer puts
        the mask token there.
        """
        return [(kind, text) for kind, text, _ in self._segments(sentence, prompt)]

    def _segments(self, sentence: str, prompt: str) -> list[tuple[str, str, Piece]]:
        values = {"sentence": sentence.strip(), "prompt": prompt.strip()}
        segments = []
        for piece in self.pieces:
            if piece.kind == "literal":
                segments.append(("literal", piece.text, piece))
            elif piece.kind == "mask":
                segments.append(("mask", "", piece))
            elif values[piece.kind]:
                segments.append((piece.kind, piece.text + values[piece.kind], piece))
            elif piece.kind == "prompt":
                # Kept, empty, so callers can still tell where the prompt starts.
                segments.append(("prompt", "", piece))
        return segments


def _parse(text: str) -> list[Piece]:
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as error:
        raise RLPromptError(f"template {text!r} is malformed ({error}); write fields as {{sentence}}, {{prompt}}, {{mask}}") from error
    for _, name, spec, conversion in parsed:
        if name is not None and (spec or conversion):
            raise RLPromptError(f"template {text!r}: field {{{name}}} may not carry a format spec or conversion")
    names = [name for _, name, _, _ in parsed if name is not None]
    for name in names:
        if name not in FIELDS:
            raise RLPromptError(
                f"template {text!r} has an unknown field {{{name}}}; valid fields: {{sentence}}, {{prompt}}, {{mask}}"
            )
    for name in FIELDS:
        if names.count(name) != 1:
            raise RLPromptError(
                f"template {text!r} must contain {{{name}}} exactly once (found {names.count(name)})"
            )
    pieces: list[Piece] = []
    for chunk in re.split(r"(\s*\{(?:sentence|prompt|mask)\})", text):
        if not chunk:
            continue
        match = re.fullmatch(r"(\s*)\{(sentence|prompt|mask)\}", chunk)
        if match:
            pieces.append(Piece(kind=match.group(2), text=match.group(1)))
        else:
            pieces.append(Piece(kind="literal", text=chunk))
    return pieces
