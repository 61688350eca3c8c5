"""Accuracy of prompts on a task split, for reports and model-to-model reuse."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Sequence

from rlprompt.errors import RLPromptError
from rlprompt.scoring.base import ClassScorer
from rlprompt.tasks import Example, Task

SHOWN_PROMPT_CHARACTERS = 60
"""How much of a prompt a table shows (files and ``--output`` keep the whole text)."""
PROGRESS_TOKENS = 20_000
"""Tokens of scoring work (pairs x filled-template length) from which ``score_prompts`` shows a progress bar."""
PROGRESS_STEPS = 20
"""About how many updates the progress bar makes (the examples are scored in this many chunks)."""


@dataclass
class PromptScore:
    """Accuracy of one prompt on one split."""

    prompt: str
    accuracy: float
    per_class_accuracy: list[float]


def shorten(text: str, limit: int = SHOWN_PROMPT_CHARACTERS) -> str:
    """``repr(text)`` for a table, cut in the middle with its length when longer than ``limit`` characters."""
    if len(text) <= limit:
        return repr(text)
    half = limit // 2
    return f"{text[:half]!r}...{text[-half:]!r} ({len(text):,} characters)"


def _innermost(scorer: ClassScorer) -> object:
    """The backend under wrappers such as calibration (each keeps the one it wraps as ``.scorer``)."""
    while hasattr(scorer, "scorer"):
        scorer = scorer.scorer
    return scorer


def scorer_description(scorer: ClassScorer) -> str | None:
    """What a served backend says it is (``served model M at URL``); None for a model loaded here."""
    return getattr(_innermost(scorer), "description", None)


def check_prompts_fit(scorer: ClassScorer, prompts: Sequence[str], sentences: Sequence[str]) -> list[int] | None:
    """Raise one line, before any scoring, when a prompt with the template and the longest input
    does not fit the target's context window; else the tokens each prompt's longest pair needs
    (None for a backend that cannot count them, such as a served one).

    Raises:
        RLPromptError: Naming the prompt, the window it would need and the one the target has.
    """
    inner = _innermost(scorer)
    if not hasattr(inner, "context_need") or not sentences:
        return None
    # A calibrated scorer also scores its reference inputs (the train split) with every prompt.
    reference = list(getattr(scorer, "reference", ()))
    needs, window = inner.context_need(prompts, [*sentences, *reference])
    _refuse_past_window(prompts, needs, window, getattr(getattr(inner, "lm", None), "name", "the target"))
    return needs


def check_prompts_fit_before_loading(target: str, task: Task, prompts: Sequence[str], sentences: Sequence[str]) -> None:
    """:func:`check_prompts_fit` from the target's tokenizer and config alone, before its weights
    load: a prompt that cannot fit is refused in the seconds the imports take. Nothing is checked
    for a served target, or a model whose tokenizer is not at hand without loading it (the check
    after loading still runs).

    Raises:
        RLPromptError: As :func:`check_prompts_fit`.
    """
    from rlprompt.models import context_window, model_kind, tokenizer_and_config
    from rlprompt.scoring.base import is_local
    from rlprompt.scoring.encoding import TemplateEncoder

    try:
        loaded = tokenizer_and_config(target) if is_local(target) and sentences else None
    except Exception:  # a broken model folder is the loader's to report, in its own words
        loaded = None
    if loaded is None:
        return
    tokenizer, config = loaded
    kind = model_kind(config)
    encoder = TemplateEncoder(tokenizer, kind, task.for_target(kind).template)
    needs = [max(len(pair.prefix) + len(pair.suffix) for pair in (encoder.encode(s, p) for s in sentences)) for p in prompts]
    _refuse_past_window(prompts, needs, context_window(config), target)


def _refuse_past_window(prompts: Sequence[str], needs: Sequence[int], window: int | None, name: str) -> None:
    for prompt, need in zip(prompts, needs):
        if window is not None and need > window:
            raise RLPromptError(
                f"prompt {shorten(prompt)} does not fit {name}: with the template and the longest input it needs a context window "
                f"of {need:,} tokens, and {name}'s is {window:,}; shorten the prompt"
            )


def score_prompts(
    scorer: ClassScorer, prompts: Sequence[str], examples: Sequence[Example], progress: bool | None = False
) -> list[PromptScore]:
    """Accuracy (overall and per gold class) of each prompt, through ``evaluate``.

    Every prompt is first checked to fit the target's context window (:func:`check_prompts_fit`).

    Args:
        scorer: The target's scorer.
        prompts: The prompts to score.
        examples: The labelled inputs.
        progress: A progress bar on stderr when the work is long (:data:`PROGRESS_TOKENS`): True
            shows it there, None only when stderr is a terminal, False never.
    """
    from rlprompt.metrics import accuracy

    sentences = [example.text for example in examples]
    needs = check_prompts_fit(scorer, prompts, sentences)
    work = sum(needs) * len(sentences) if needs else 0
    show = work >= PROGRESS_TOKENS and (progress or (progress is None and sys.stderr.isatty()))
    if show:
        import torch
        from tqdm.auto import tqdm

        # Chunks of examples (each chunk scores every prompt), so the bar moves as pairs finish.
        step = max(1, math.ceil(len(sentences) / PROGRESS_STEPS))
        parts = []
        with tqdm(total=len(sentences), desc=f"scoring {len(prompts)} prompt(s)", unit="input", file=sys.stderr) as bar:
            for start in range(0, len(sentences), step):
                parts.append(scorer.class_logits(prompts, sentences[start:start + step]))
                bar.update(len(sentences[start:start + step]))
        logits = torch.cat(parts, dim=1)
    else:
        logits = scorer.class_logits(prompts, sentences)
    references = [example.label for example in examples]
    scores = []
    for prompt, prompt_logits in zip(prompts, logits):
        result = accuracy(prompt_logits.argmax(dim=-1).tolist(), references, scorer.num_classes)
        scores.append(PromptScore(prompt, result["accuracy"], result["per_class_accuracy"]))
    return scores


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table with aligned columns (percentages for floats in [0, 1])."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{100 * value:.1f}%"
        if value is None:
            return "-"
        return str(value)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in text)]) for i, h in enumerate(headers)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in text)])
