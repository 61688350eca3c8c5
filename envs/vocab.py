"""Action vocabularies: which tokens of the policy's tokenizer a prompt may be written with.

The env's action ``i`` means token ``token_ids[i]``; the mapping back to ids is exact.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from rlprompt.batching import FULL_VOCAB_LOGIT_BYTES, full_vocab_chunks, pad_token_id, right_pad, vocab_size
from rlprompt.errors import RLPromptError

logger = logging.getLogger("rlprompt.vocab")

VOCABULARIES = ("all", "words")


@dataclass(frozen=True)
class ActionVocabulary:
    """A list of token ids of one tokenizer, and how to turn chosen tokens into text."""

    token_ids: tuple[int, ...]
    tokenizer: object
    end_action: int | None = None
    """Index of the end-of-prompt action (its token is the tokenizer's EOS, so the policy's tied
    head has a row for it); None: prompts have a fixed length."""

    @property
    def size(self) -> int:
        return len(self.token_ids)

    def with_end_action(self) -> ActionVocabulary:
        """This vocabulary plus an end-of-prompt action, the last one (variable-length prompts).

        Raises:
            RLPromptError: The tokenizer has no EOS token to stand for it.
        """
        if self.end_action is not None:
            return self
        eos = getattr(self.tokenizer, "eos_token_id", None)
        if eos is None:
            raise RLPromptError("variable-length prompts (--min-length) need a policy tokenizer with an EOS token for the end action")
        return ActionVocabulary(token_ids=(*self.token_ids, int(eos)), tokenizer=self.tokenizer, end_action=len(self.token_ids))

    def prompt_actions(self, actions: Sequence[int]) -> list[int]:
        """The actions before the first end action: the prompt's tokens."""
        actions = [int(action) for action in actions]
        if self.end_action is not None and self.end_action in actions:
            return actions[: actions.index(self.end_action)]
        return actions

    def ids(self, actions: Sequence[int]) -> list[int]:
        """Token ids of the prompt a sequence of actions writes (up to an end action)."""
        return [self.token_ids[action] for action in self.prompt_actions(actions)]

    def decode(self, actions: Sequence[int]) -> str:
        """The prompt text the actions spell, without surrounding whitespace."""
        return self.tokenizer.decode(self.ids(actions)).strip()


def _is_word_start(token_text: str) -> bool:
    # A word-start token decodes to a leading space and letters only: " great", " It".
    return len(token_text) >= 3 and token_text[0] == " " and token_text[1:].isascii() and token_text[1:].isalpha()


def build_vocabulary(tokenizer, name: str = "words", backbone=None) -> ActionVocabulary:
    """Build a named action vocabulary.

    Args:
        tokenizer: The policy's tokenizer.
        name: ``all``: every non-special token; ``words``: tokens that begin a word and are
            alphabetic (at least two letters), so prompts decode to space-separated words;
            ``top-K`` (e.g. ``top-2000``): the K ``words`` tokens the backbone finds most
            likely on average (its unigram prior over the built-in corpus); or the path of a
            word-list file, one word per line (``#`` starts a comment), each used as the token
            of ``" word"``.
        backbone: The policy's frozen causal LM; needed for ``top-K``.

    Raises:
        RLPromptError: Unknown name, a bad ``top-K``, or no token qualifies.
    """
    special = set(tokenizer.all_special_ids)
    candidates = [i for i in range(len(tokenizer)) if i not in special]
    if name == "all":
        ids = candidates
    elif name == "words" or name.startswith("top-"):
        texts = tokenizer.batch_decode([[i] for i in candidates])
        ids = [i for i, text in zip(candidates, texts) if _is_word_start(text)]
        if name.startswith("top-"):
            ids = _top_by_prior(ids, name, tokenizer, backbone)
    else:
        check_vocabulary_name(name)
        ids = _word_list(Path(name), tokenizer, special)
    if not ids:
        raise RLPromptError(f"action vocabulary '{name}' is empty for this tokenizer")
    return ActionVocabulary(token_ids=tuple(ids), tokenizer=tokenizer)


def check_vocabulary_name(name: str) -> None:
    """Raise on a vocabulary name no tokenizer could use (before any model loads)."""
    if name in VOCABULARIES or Path(name).is_file():
        return
    if name.startswith("top-"):
        _top_k(name)
        return
    raise RLPromptError(
        f"unknown action vocabulary '{name}'; valid: {', '.join(VOCABULARIES)}, top-K (e.g. top-2000), or a word-list file"
    )


def _top_k(name: str) -> int:
    try:
        k = int(name[len("top-"):])
    except ValueError:
        k = 0
    if k < 1:
        raise RLPromptError(f"action vocabulary '{name}': K must be a positive integer, as in top-2000")
    return k


def _top_by_prior(ids: list[int], name: str, tokenizer, backbone) -> list[int]:
    k = _top_k(name)
    if backbone is None:
        raise RLPromptError(f"action vocabulary '{name}' needs the policy backbone to rank tokens")
    prior = unigram_prior(backbone, tokenizer)
    ranked = sorted(ids, key=lambda i: float(prior[i]), reverse=True)
    return sorted(ranked[:k])


def unigram_prior(backbone, tokenizer, max_texts: int = 320, max_logit_bytes: int = FULL_VOCAB_LOGIT_BYTES) -> torch.Tensor:
    """The backbone's next-token distribution averaged over every position of the built-in corpus.

    Texts run in chunks whose fp32 full-vocabulary logits stay under ``max_logit_bytes``
    (:data:`rlprompt.batching.FULL_VOCAB_LOGIT_BYTES`), right-padded: every text's
    tokens keep positions 0, 1, ... whatever else shares its batch.
    """
    from rlprompt.tasks import load_task

    task = load_task("demo")
    texts = [e.text for e in task.train + task.dev + task.test][:max_texts]
    sequences = [ids for ids in (tokenizer(text, add_special_tokens=False).input_ids for text in texts) if ids]
    total = None
    count = 0
    device = next(backbone.parameters()).device
    chunks = full_vocab_chunks([len(s) for s in sequences], vocab_size(backbone), max_logit_bytes)
    with torch.inference_mode():
        for chunk in chunks:
            ids, mask = right_pad([sequences[i] for i in chunk], pad_token_id(tokenizer), device=device)
            # Padding rows are dropped before the softmax: only real positions are averaged.
            logits = backbone(input_ids=ids, attention_mask=mask).logits[mask.bool()]
            summed = logits.float().softmax(dim=-1).sum(dim=0)
            total = summed if total is None else total + summed
            count += logits.shape[0]
    return (total / count).cpu()


def _word_list(path: Path, tokenizer, special: set[int]) -> list[int]:
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        word = line.split("#", 1)[0].strip()
        if word:
            words.append(word)
    ids, skipped = [], []
    for word in words:
        pieces = tokenizer(" " + word, add_special_tokens=False).input_ids
        if len(pieces) == 1 and pieces[0] not in special:
            ids.append(pieces[0])
        else:
            skipped.append(word)
    if skipped:
        logger.warning("%d of %d words in %s are not single tokens and are left out: %s", len(skipped), len(words), path, ", ".join(skipped[:10]))
    if not ids:
        raise RLPromptError(f"word list '{path}' has no word that is a single token of the policy's tokenizer")
    return sorted(set(ids))
