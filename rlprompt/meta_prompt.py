"""What an instruction writer is asked: the meta-prompt, built from the task.

It says what the inputs are (the task description), the label words the target reads, a few
labelled train examples, and the instruction to start from (the user's own, ``--manual-prompt``,
else the preset's hand-written one). A user can replace the whole text with a file
(``--meta-prompt``) whose fields ``{description}``, ``{labels}``, ``{examples}`` and
``{instruction}`` are filled in. OPRO's meta-prompt adds the best instructions so far with their
scores (:func:`opro_meta_prompt`).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from rlprompt.errors import RLPromptError
from rlprompt.tasks import Example, Task

META_PROMPT = """{description}
Each input is answered with one of these words: {labels}.

Examples:
{examples}

{instruction}Write one instruction, a single sentence, that tells a reader how to find the answer for a new input. Reply with the instruction only."""
"""The built-in meta-prompt of ``grpo`` and ``ape``."""
STARTING_INSTRUCTION = 'The current instruction is: "{text}". Improve it.\n'
"""How the starting instruction enters ``{instruction}`` (nothing when there is none)."""
OPRO_HISTORY = """{description}
Each input is answered with one of these words: {labels}.

Examples:
{examples}

Below are instructions with their scores on training examples (higher is better), from worst to best:
{history}

Write a new instruction that is different from all of the above and scores higher. Reply with the instruction only."""
"""OPRO's meta-prompt (Yang et al., 2023: scored solutions in ascending order, then the request)."""
FIELDS = ("description", "labels", "examples", "instruction")
EXAMPLE_CHARACTERS = 300
"""A shown example's text is cut to this many characters: the meta-prompt stays short."""


@dataclass(frozen=True)
class MetaPromptParts:
    """The task's side of a meta-prompt, filled into any template."""

    description: str
    labels: str
    examples: str
    instruction: str
    """The starting instruction, '' for none."""

    def fill(self, template: str, **extra: str) -> str:
        starting = STARTING_INSTRUCTION.format(text=self.instruction) if self.instruction else ""
        return template.format(description=self.description, labels=self.labels, examples=self.examples, instruction=starting, **extra)


def shown_examples(examples: Sequence[Example], count: int, seed: int) -> list[Example]:
    """``count`` train examples, drawn with ``seed``, taking the labels in turn so each class shows."""
    rng = np.random.default_rng(seed)
    by_label: dict[int, list[Example]] = {}
    for index in rng.permutation(len(examples)):
        by_label.setdefault(examples[index].label, []).append(examples[index])
    queues = [by_label[label] for label in sorted(by_label)]
    chosen: list[Example] = []
    while len(chosen) < min(count, len(examples)):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return chosen


def meta_prompt_parts(task: Task, description: str | None, instruction: str, examples: int, seed: int) -> MetaPromptParts:
    """The parts of ``task``'s meta-prompt.

    Args:
        task: The task (its label words are the verbalizers the target reads).
        description: What the task is; default: the task's own.
        instruction: The instruction to start from ('' for none).
        examples: How many labelled train examples to show.
        seed: Which ones.
    """
    words = [word.strip() for word in task.verbalizers]
    lines = []
    for example in shown_examples(task.train, examples, seed):
        text = " ".join(example.text.split())
        text = text if len(text) <= EXAMPLE_CHARACTERS else text[:EXAMPLE_CHARACTERS].rsplit(" ", 1)[0] + " ..."
        lines.append(f"Input: {text}\nAnswer: {words[example.label]}")
    return MetaPromptParts(
        description=(description or task.description).strip(),
        labels=", ".join(words),
        examples="\n\n".join(lines),
        instruction=instruction.strip(),
    )


def read_meta_prompt(path: str | None) -> str:
    """The meta-prompt template in ``path`` (checked), or the built-in one."""
    if path is None:
        return META_PROMPT
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RLPromptError(f"meta-prompt file '{path}' cannot be read ({error.__class__.__name__}: {error})") from error
    check_meta_prompt(text, str(path))
    return text


def check_meta_prompt(text: str, source: str) -> None:
    """Raise unless ``text`` uses only the fields :data:`FIELDS` and is not empty."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as error:
        raise RLPromptError(f"meta-prompt {source} is malformed ({error}); write fields as {{description}}, {{examples}}, ...") from error
    unknown = sorted(names - set(FIELDS))
    if unknown:
        raise RLPromptError(f"meta-prompt {source} has unknown fields {unknown}; valid: {', '.join('{' + f + '}' for f in FIELDS)}")
    if not text.strip():
        raise RLPromptError(f"meta-prompt {source} is empty")


def opro_meta_prompt(parts: MetaPromptParts, scored: Sequence[tuple[str, float]]) -> str:
    """OPRO's meta-prompt: ``scored`` (instruction, train accuracy in [0, 1]) from worst to best."""
    history = "\n".join(f'Instruction: "{text}"\nScore: {round(100 * score)}' for text, score in sorted(scored, key=lambda item: item[1]))
    return parts.fill(OPRO_HISTORY, history=history)
