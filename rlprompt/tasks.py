"""Classification tasks: labelled examples plus the template and verbalizers that score them.

Loaders:

* ``demo``: a built-in sentiment dataset written for this project (32 train, 32 dev,
  240 test sentences), for the offline default;
* a folder with ``train``, ``dev`` and ``test`` files, ``.tsv`` (the RLPrompt 16-shot layout),
  ``.csv`` or ``.jsonl``, with a text column and a label column;
* a single such file, used as the test split (for ``rlprompt eval``);
* ``hf:NAME[:CONFIG]``: a ``datasets`` hub dataset (needs the internet).

Known task names (the paper's ``sst-2``, ``yelp-2``, ``mr``, ``cr``, ``sst-5``, ``yelp-5``,
``agnews``, ``subj``, ``trec``, ``yahoo``, ``dbpedia``, and ``demo``, see :data:`PRESETS`) bring
label names and, for causal and for masked target LMs each, the paper's template, verbalizers
and a manual prompt; :meth:`Task.for_target` picks the target's. Any of them can be overridden.
A data path that names one (``.../16-shot/trec/16-13``) brings its preset too.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from rlprompt.errors import RLPromptError
from rlprompt.template import Template

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "{sentence} {prompt} {mask}"
"""The causal template: the label word is the next token after the prompt."""
MASKED_TEMPLATE = "{sentence} {prompt} {mask} ."
"""The paper's masked-LM template (``{sentence_1} {prompt} <mask> .``)."""
SPLITS = ("train", "dev", "test")
DATA_SUFFIXES = (".tsv", ".csv", ".jsonl")
DEMO_DIR = Path(__file__).parent / "data" / "demo_sentiment"
GENERIC_DESCRIPTION = "Each input is a text; the task is to tell which label it has."
"""The task description of a task without a preset (``--task-description`` gives a better one)."""
TARGET_KINDS = ("causal", "masked")
"""The kinds of target LM a preset has a format for (see :data:`rlprompt.models.ModelKind`)."""


@dataclass(frozen=True)
class Example:
    """One labelled input."""

    text: str
    label: int


@dataclass(frozen=True)
class TaskFormat:
    """How one kind of target LM reads a task."""

    template: str
    verbalizers: tuple[str, ...]
    """One label word per class, a single token of the target's tokenizer."""
    manual_prompt: str


@dataclass(frozen=True)
class TaskPreset:
    """What a known task brings besides its data: label names and one format per target kind."""

    label_names: tuple[str, ...]
    causal: TaskFormat
    masked: TaskFormat
    description: str = ""
    """One line saying what the inputs are and what is asked, for an instruction writer's meta-prompt."""
    instruction: str = ""
    """A hand-written instruction that goes before the input (a prompt-first template's baseline)."""

    def format_for(self, kind: str) -> TaskFormat:
        """The format for a target of ``kind`` (``"causal"`` or ``"masked"``).

        Raises:
            RLPromptError: On another kind.
        """
        if kind not in TARGET_KINDS:
            raise RLPromptError(f"unknown target kind '{kind}'; valid: {', '.join(TARGET_KINDS)}")
        return getattr(self, kind)


def _preset(
    label_names: Sequence[str],
    causal_words: Sequence[str],
    masked_words: Sequence[str],
    manual_prompt: str,
    *,
    causal_prompt: str | None = None,
    masked_template: str = MASKED_TEMPLATE,
    description: str = "",
    instruction: str = "",
) -> TaskPreset:
    """A preset whose causal format uses :data:`DEFAULT_TEMPLATE` (the paper's GPT-2 template)."""
    return TaskPreset(
        tuple(label_names),
        causal=TaskFormat(DEFAULT_TEMPLATE, tuple(causal_words), manual_prompt if causal_prompt is None else causal_prompt),
        masked=TaskFormat(masked_template, tuple(masked_words), manual_prompt),
        description=description,
        instruction=instruction,
    )


# The paper's tasks, from mingkaid/rl-prompt, examples/few-shot-classification:
# * verbalizers (RoBERTa and GPT-2 alike, "\u0120" = a leading space): fsc_helpers.py,
#   get_dataset_verbalizers;
# * templates: fsc_reward.py, load_default_template ("{sentence_1} {prompt} <mask> ." for masked
#   LMs, "{sentence_1} {prompt}" for GPT-2), and evaluation/run_eval.py (AG News
#   "<mask> {prompt} {sentence_1}", DBpedia "{prompt} <mask> : {sentence_1}", masked LMs only);
# * manual prompts and class counts: baseline/0-manual-prompt/run.sh (its templates' words, e.g.
#   "*sent_0*_It_was*mask*.") and baseline/utils/processors.py (get_labels).
# Causal verbalizers carry their leading space, as the label is the next word after the prompt,
# and are single tokens of SmolLM2's tokenizer (tests/rlprompt/test_presets.py checks): where
# the paper's word is not (DBpedia's " Album"), the lower-case word is.
_BINARY_SENTIMENT = (("negative", "positive"), (" terrible", " great"), (" terrible", " great"), "It was")
_FIVE_SENTIMENT = (
    ("very negative", "negative", "neutral", "positive", "very positive"),
    (" terrible", " bad", " okay", " good", " great"),
    (" terrible", " bad", " okay", " good", " great"),
    "It was",
)
_TREC_WORDS = (" Description", " Entity", " Expression", " Human", " Location", " Number")
_YAHOO_WORDS = ("culture", "science", "health", "education", "computer", "sports", "business", "music", "family", "politics")
_DBPEDIA_WORDS = (
    " Company", " Education", " Artist", " Sports", " Office", " Transportation", " Building",
    " Natural", " Village", " Animal", " Plant", " Album", " Film", " Written",
)



def _sentiment(inputs: str, answers: str) -> dict[str, str]:
    """The description and hand-written instruction of a sentiment preset."""
    return {
        "description": f"Each input is {inputs}; the task is to tell whether its sentiment is {answers}.",
        "instruction": f"Classify the sentiment of the review as {answers}.",
    }


PRESETS: dict[str, TaskPreset] = {
    "sst-2": _preset(*_BINARY_SENTIMENT, **_sentiment("a sentence from a movie review", "positive or negative")),
    "yelp-2": _preset(*_BINARY_SENTIMENT, **_sentiment("a Yelp review of a business", "positive or negative")),
    "mr": _preset(*_BINARY_SENTIMENT, **_sentiment("a sentence from a movie review", "positive or negative")),
    "cr": _preset(*_BINARY_SENTIMENT, **_sentiment("a customer review of a product", "positive or negative")),
    "sst-5": _preset(*_FIVE_SENTIMENT, **_sentiment("a sentence from a movie review", "very negative, negative, neutral, positive or very positive")),
    "yelp-5": _preset(*_FIVE_SENTIMENT, **_sentiment("a Yelp review of a business", "very negative, negative, neutral, positive or very positive")),
    # The paper reads AG News' label first: "<mask> News: <sentence>" is its manual template. A
    # causal LM reads it last, so its manual prompt names what the next word is.
    "agnews": _preset(
        ("World", "Sports", "Business", "Sci/Tech"),
        (" World", " Sports", " Business", " Tech"),
        ("World", "Sports", "Business", "Tech"),
        "News:",
        causal_prompt="Topic:",
        masked_template="{mask} {prompt} {sentence}",
        description="Each input is a news article; the task is to tell its topic: world news, sports, business, or science and technology.",
        instruction="Classify the news article by its topic: World, Sports, Business or Tech.",
    ),
    "subj": _preset(
        ("subjective", "objective"), (" subjective", " objective"), (" subjective", " objective"), "This is",
        description="Each input is a sentence from a movie review or plot summary; the task is to tell whether it states an opinion or a fact.",
        instruction="Say whether the sentence is subjective (an opinion) or objective (a fact).",
    ),
    # TREC's manual template in the paper has no words ("<mask>: <sentence>"); the prompt is ours.
    "trec": _preset(
        ("Description", "Entity", "Abbreviation", "Human", "Location", "Number"), _TREC_WORDS, _TREC_WORDS, "Answer type:",
        description="Each input is a question; the task is to tell what type of answer it asks for.",
        instruction="Say what type of answer the question asks for: a description, an entity, an expression, a human, a location or a number.",
    ),
    # The paper's Yahoo words have no leading space for RoBERTa (run.sh: --skip_u0120).
    "yahoo": _preset(
        (
            "Society & Culture", "Science & Mathematics", "Health", "Education & Reference", "Computers & Internet",
            "Sports", "Business & Finance", "Entertainment & Music", "Family & Relationships", "Politics & Government",
        ),
        tuple(" " + word for word in _YAHOO_WORDS),
        _YAHOO_WORDS,
        "Topic",
        causal_prompt="Topic:",
        description="Each input is a question from Yahoo! Answers; the task is to tell its topic.",
        instruction="Classify the question by its topic.",
    ),
    "dbpedia": _preset(
        (
            "Company", "Educational Institution", "Artist", "Athlete", "Office Holder", "Mean Of Transportation",
            "Building", "Natural Place", "Village", "Animal", "Plant", "Album", "Film", "Written Work",
        ),
        tuple(" album" if word == " Album" else word for word in _DBPEDIA_WORDS),
        _DBPEDIA_WORDS,
        "Category",
        causal_prompt="Category:",
        masked_template="{prompt} {mask} : {sentence}",
        description="Each input is the opening of a Wikipedia article; the task is to tell what category of thing it is about.",
        instruction="Classify the Wikipedia article by the category of its subject.",
    ),
}
PRESETS["demo"] = PRESETS["sst-2"]
PAPER_TASKS = ("sst-2", "yelp-2", "mr", "cr", "sst-5", "yelp-5", "agnews", "subj", "trec", "yahoo", "dbpedia")
"""The paper's few-shot classification tasks, in its order; each has a preset."""


@dataclass
class Task:
    """A classification task ready for scoring."""

    name: str
    label_names: list[str]
    verbalizers: list[str]
    """One label word per class, scored as a single token of the target LM."""
    template: Template
    manual_prompt: str
    """A hand-written prompt, the baseline every learned prompt is compared with."""
    train: list[Example] = field(default_factory=list)
    dev: list[Example] = field(default_factory=list)
    test: list[Example] = field(default_factory=list)
    preset: TaskPreset | None = field(default=None, repr=False)
    """The known task's formats, when it is one; :meth:`for_target` picks among them."""
    overridden: frozenset[str] = frozenset()
    """Which of ``template``, ``verbalizers`` and ``manual_prompt`` the user set: a target never changes those."""
    description: str = GENERIC_DESCRIPTION
    """What the inputs are and what is asked, for an instruction writer's meta-prompt."""
    instruction: str = ""
    """The instruction a writer starts from: the user's manual prompt, else the preset's hand-written one."""

    def for_target(self, kind: str) -> Task:
        """This task in the format of a target LM of ``kind`` (``"causal"`` or ``"masked"``).

        A preset task takes the preset's template, verbalizers and manual prompt for that kind,
        each one unless the user set it; any other task is returned as it is. Loading gives the
        causal format, so calling this again with the same kind changes nothing.

        Raises:
            RLPromptError: On an unknown kind.
        """
        if kind not in TARGET_KINDS:
            raise RLPromptError(f"unknown target kind '{kind}'; valid: {', '.join(TARGET_KINDS)}")
        if self.preset is None:
            return self
        chosen = self.preset.format_for(kind)
        changes = {
            "template": Template(chosen.template),
            "verbalizers": list(chosen.verbalizers),
            "manual_prompt": chosen.manual_prompt,
        }
        return replace(self, **{name: value for name, value in changes.items() if name not in self.overridden})

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def split(self, name: str) -> list[Example]:
        if name not in SPLITS:
            raise RLPromptError(f"unknown split '{name}'; valid splits: {', '.join(SPLITS)}")
        return getattr(self, name)

    def require(self, *splits: str) -> None:
        """Raise if any of ``splits`` has no examples."""
        for name in splits:
            if not self.split(name):
                raise RLPromptError(f"task '{self.name}' has no {name} examples; provide a {name} file")


def _preset_for(task: str, data: str | None) -> tuple[str, TaskPreset | None]:
    """The task's name and preset: a known ``task``, else a known name in the data path.

    The default task ``demo`` given a data path is named by the path, so ``--data
    .../16-shot/agnews/16-13`` alone is AG News; another name keeps its name and takes the path's
    preset.
    """
    if task in PRESETS and not (task == "demo" and data):
        return task, PRESETS[task]
    if data:
        # Only the last three parts: the paper's layout puts the name there (NAME/16-13/test.tsv),
        # and a directory far up the path ("/home/cr/...") says nothing about the data.
        for part in reversed(Path(data).resolve().parts[-3:]):
            if part.lower() in PRESETS:
                return (part.lower() if task == "demo" else task), PRESETS[part.lower()]
    return task, PRESETS.get(task)


def task_name(task: str, data: str | None) -> str:
    """The name :func:`load_task` gives the task, without reading any data (for run folders)."""
    return _preset_for(task, data)[0]


def load_task(
    task: str = "demo",
    data: str | None = None,
    *,
    template: str | None = None,
    verbalizers: Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
    manual_prompt: str | None = None,
    text_column: str | None = None,
    label_column: str = "label",
) -> Task:
    """Load a task by name and/or data location.

    A known task comes in its causal format (template, verbalizers, manual prompt);
    :meth:`Task.for_target` gives the format of the target LM once that is known.

    Args:
        task: A known task name (a key of :data:`PRESETS`) or any name for your own data;
            ``hf:NAME[:CONFIG]`` loads a hub dataset. The default ``demo`` with a ``data``
            path that names a known task (``.../16-shot/yahoo/16-13``) is that task.
        data: A folder with train/dev/test files, or one file (the test split). ``demo``
            needs none.
        template: Overrides the preset's template.
        verbalizers: Overrides the preset's verbalizers (one per class).
        label_names: Overrides the preset's label names.
        manual_prompt: Overrides the preset's manual prompt.
        text_column: Column holding the input text (default: ``sentence`` or ``text``).
        label_column: Column holding the label (an integer or a label name).

    Raises:
        RLPromptError: On a missing or malformed file, a label without a verbalizer, or an
            empty dataset.
    """
    given_verbalizers = list(verbalizers) if verbalizers else None
    task, preset = _preset_for(task, data)
    # Until a target is known a preset task reads as a causal LM does (the default target is one).
    base = preset.causal if preset else None
    verbalizers = list(verbalizers) if verbalizers else list(base.verbalizers) if base else None
    if not verbalizers:
        raise RLPromptError(f"task '{task}' is not a known task ({', '.join(PRESETS)}); pass --verbalizers, one per class")
    label_names = list(label_names) if label_names else (
        list(preset.label_names) if preset and len(preset.label_names) == len(verbalizers) else [str(i) for i in range(len(verbalizers))]
    )
    if len(label_names) != len(verbalizers):
        raise RLPromptError(f"{len(label_names)} label names {label_names} but {len(verbalizers)} verbalizers {verbalizers}; give one verbalizer per label")
    overridden = {"template": template or None, "verbalizers": given_verbalizers, "manual_prompt": manual_prompt}
    result = Task(
        name=task,
        label_names=label_names,
        verbalizers=verbalizers,
        template=Template(template or (base.template if base else DEFAULT_TEMPLATE)),
        manual_prompt=manual_prompt if manual_prompt is not None else (base.manual_prompt if base else ""),
        preset=preset,
        overridden=frozenset(name for name, value in overridden.items() if value is not None),
        description=preset.description if preset and preset.description else GENERIC_DESCRIPTION,
        instruction=manual_prompt if manual_prompt is not None else (preset.instruction if preset else ""),
    )
    reader = _ExampleReader(label_names, text_column, label_column)
    if task.startswith("hf:"):
        return replace(result, **_load_hub_splits(task[3:], reader))
    if data is None:
        if task != "demo":
            raise RLPromptError(f"task '{task}' needs --data: a folder with train/dev/test files, or one file")
        data = str(DEMO_DIR)
    path = Path(data).expanduser()
    if path.is_dir():
        found = {split: _split_file(path, split) for split in SPLITS}
        if not any(found.values()):
            raise RLPromptError(
                f"data folder '{path}' has no train/dev/test files (expected train.tsv, dev.tsv, test.tsv, or .csv/.jsonl)"
            )
        splits = {split: reader.read(file) for split, file in found.items() if file}
    elif path.is_file():
        splits = {"test": reader.read(path)}
    else:
        raise RLPromptError(f"data path '{path}' does not exist")
    return replace(result, **splits)


def _rows(count: int) -> str:
    return f"{count} row" + ("" if count == 1 else "s")


def _split_file(folder: Path, split: str) -> Path | None:
    for suffix in DATA_SUFFIXES:
        candidate = folder / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _quoted_row(values: list[str], delimiter: str, columns: int) -> list[str]:
    """A TSV line read with quoting honoured, when only that gives it ``columns`` fields.

    The paper's DBpedia files quote the odd text that holds a tab (``"... 1941\tand ..."\t5``),
    while SST-2's hold bare quote characters that must stay text: so a line is read without
    quoting, and only a line with too many fields is read again with it. Rejoining the fields
    gives back the line exactly, as an unquoted read splits at every delimiter.
    """
    quoted = next(csv.reader([delimiter.join(values)], delimiter=delimiter), [])
    return quoted if len(quoted) == columns else values


_CONTROL_ESCAPES = {code: repr(chr(code))[1:-1] for code in [*range(32), 127, 0x85, 0x2028, 0x2029]}
"""Line breaks and other control characters, written as escapes so an error naming them stays one line."""


def _column_names(row: dict) -> str:
    return ", ".join(str(name).translate(_CONTROL_ESCAPES) for name in row)


class _ExampleReader:
    """Reads TSV/CSV/JSONL rows into examples, naming the file and line of any bad row."""

    def __init__(self, label_names: list[str], text_column: str | None, label_column: str) -> None:
        self.label_names = label_names
        self.text_column = text_column
        self.label_column = label_column

    def read(self, path: Path) -> list[Example]:
        if path.suffix not in DATA_SUFFIXES:
            raise RLPromptError(f"data file '{path}' has an unsupported type; use {', '.join(DATA_SUFFIXES)}")
        try:
            rows = list(self._rows(path))
        except UnicodeDecodeError as error:
            raise RLPromptError(f"data file '{path}' is not UTF-8 text ({error.reason})") from error
        except csv.Error as error:
            # The csv module's own limits: a field past csv.field_size_limit() characters (131,072), for one.
            raise RLPromptError(f"data file '{path}' cannot be read as {path.suffix[1:].upper()}: {error}") from error
        except OSError as error:
            raise RLPromptError(f"data file '{path}' cannot be read: {error.strerror or error}") from error
        read = [(line, self._example(path, line, row)) for line, row in rows]
        examples = [example for _, example in read if example is not None]
        # The paper's published 16-shot splits hold rows whose text is only whitespace: one
        # warning, not a refusal of the whole file.
        skipped = [line for line, example in read if example is None]
        if not examples:
            note = f" ({_rows(len(skipped))} with empty or whitespace-only text skipped)" if skipped else ""
            raise RLPromptError(f"data file '{path}' has no examples{note}")
        if skipped:
            shown = ", ".join(map(str, skipped[:10])) + (", ..." if len(skipped) > 10 else "")
            logger.warning("%s: skipped %s with empty or whitespace-only text (lines %s)", path, _rows(len(skipped)), shown)
        return examples

    def _rows(self, path: Path):
        # utf-8-sig: a byte-order mark (spreadsheet exports write one) is not part of the first column's name.
        with path.open(encoding="utf-8-sig", newline="") as handle:
            if path.suffix == ".jsonl":
                for line, text in enumerate(handle, start=1):
                    if not text.strip():
                        continue
                    try:
                        row = json.loads(text)
                    except json.JSONDecodeError as error:
                        raise RLPromptError(f"{path} line {line}: not valid JSON ({error.msg})") from error
                    if not isinstance(row, dict):
                        raise RLPromptError(f"{path} line {line}: expected a JSON object, got {type(row).__name__}")
                    yield line, row
                return
            delimiter = "\t" if path.suffix == ".tsv" else ","
            # The 16-shot TSVs hold bare quote characters inside sentences: never treat them as quoting.
            quoting = csv.QUOTE_NONE if path.suffix == ".tsv" else csv.QUOTE_MINIMAL
            reader = csv.reader(handle, delimiter=delimiter, quoting=quoting)
            header = next(reader, None)
            if header is None:
                return
            for values in reader:
                # reader.line_num is the file line the record ended on (records may span lines).
                line = reader.line_num
                if not values:
                    continue
                if quoting == csv.QUOTE_NONE and len(values) > len(header):
                    values = _quoted_row(values, delimiter, len(header))
                if len(values) != len(header):
                    raise RLPromptError(
                        f"{path} line {line}: expected {len(header)} columns ({', '.join(header)}), found {len(values)}"
                    )
                yield line, dict(zip(header, values))

    def _example(self, path: Path, line: int, row: dict) -> Example | None:
        """The example of one row; None when its text is empty or whitespace only."""
        text_column = self.text_column or next((c for c in ("sentence", "text") if c in row), None)
        if text_column is None or text_column not in row:
            wanted = self.text_column or "sentence or text"
            raise RLPromptError(f"{path} line {line}: no text column '{wanted}' (columns: {_column_names(row)}); set --text-column")
        if self.label_column not in row:
            raise RLPromptError(f"{path} line {line}: no label column '{self.label_column}' (columns: {_column_names(row)}); set --label-column")
        text = str(row[text_column]).strip()
        if not text:
            return None
        return Example(text=text, label=self._label(path, line, row[self.label_column]))

    def _label(self, path: Path, line: int, raw) -> int:
        names = self.label_names
        value = str(raw).strip()
        if value in names:
            return names.index(value)
        try:
            label = int(value)
        except ValueError:
            label = None
        if label is None or not 0 <= label < len(names):
            raise RLPromptError(
                f"{path} line {line}: label {value!r} has no verbalizer; valid labels: 0..{len(names) - 1} or {', '.join(names)}"
            )
        return label


def _load_hub_splits(spec: str, reader: _ExampleReader) -> dict[str, list[Example]]:
    name, _, config = spec.partition(":")
    try:
        import datasets

        dataset = datasets.load_dataset(name, config or None)
    except Exception as error:  # datasets raises many types for "offline" and "no such dataset"
        raise RLPromptError(f"could not load hub dataset '{spec}' (offline, or no such dataset): {error}") from error
    splits = {}
    aliases = {"train": ("train",), "dev": ("validation", "dev"), "test": ("test",)}
    for split, candidates in aliases.items():
        for candidate in candidates:
            if candidate in dataset:
                source = Path(f"hf:{spec}/{candidate}")
                examples = (reader._example(source, i + 1, row) for i, row in enumerate(dataset[candidate]))
                splits[split] = [example for example in examples if example is not None]
                break
    return splits
