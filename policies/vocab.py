"""Action vocabularies: which tokens of the policy's tokenizer a prompt may be written with.

The env's action ``i`` means token ``token_ids[i]``; the mapping back to ids is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from rlprompt.errors import RLPromptError

VOCABULARIES = ("all", "words")


@dataclass(frozen=True)
class ActionVocabulary:
    """A list of token ids of one tokenizer, and how to turn chosen tokens into text."""

    token_ids: tuple[int, ...]
    tokenizer: object

    @property
    def size(self) -> int:
        return len(self.token_ids)

    def ids(self, actions: Sequence[int]) -> list[int]:
        """Token ids of a sequence of actions."""
        return [self.token_ids[int(action)] for action in actions]

    def decode(self, actions: Sequence[int]) -> str:
        """The prompt text the actions spell, without surrounding whitespace."""
        return self.tokenizer.decode(self.ids(actions)).strip()


def _is_word_start(token_text: str) -> bool:
    # A word-start token decodes to a leading space and letters only: " great", " It".
    return len(token_text) >= 3 and token_text[0] == " " and token_text[1:].isascii() and token_text[1:].isalpha()


def build_vocabulary(tokenizer, name: str = "words") -> ActionVocabulary:
    """Build a named action vocabulary.

    Args:
        tokenizer: The policy's tokenizer.
        name: ``all``: every non-special token; ``words``: tokens that begin a word and are
            alphabetic (at least two letters), so prompts decode to space-separated words.

    Raises:
        RLPromptError: Unknown name, or no token qualifies.
    """
    special = set(tokenizer.all_special_ids)
    candidates = [i for i in range(len(tokenizer)) if i not in special]
    if name == "all":
        ids = candidates
    elif name == "words":
        texts = tokenizer.batch_decode([[i] for i in candidates])
        ids = [i for i, text in zip(candidates, texts) if _is_word_start(text)]
    else:
        raise RLPromptError(f"unknown action vocabulary '{name}'; valid: {', '.join(VOCABULARIES)}")
    if not ids:
        raise RLPromptError(f"action vocabulary '{name}' is empty for this tokenizer")
    return ActionVocabulary(token_ids=tuple(ids), tokenizer=tokenizer)
