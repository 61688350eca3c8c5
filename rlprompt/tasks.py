"""Classification tasks: labelled examples plus the template and verbalizers that score them.

Loaders:

* ``demo``: a built-in sentiment dataset written for this project (32 train, 32 dev,
  240 test sentences), for the offline default;
* a folder with ``train``, ``dev`` and ``test`` files, ``.tsv`` (the RLPrompt 16-shot layout),
  ``.csv`` or ``.jsonl``, with a text column and a label column;
* a single such file, used as the test split (for ``rlprompt eval``);
* ``hf:NAME[:CONFIG]``: a ``datasets`` hub dataset (needs the internet).

Known task names (``sst-2``, ``sst-5``, ``agnews``, ``demo``) bring the paper's verbalizers,
label names and a manual prompt; any of them can be overridden.
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
SPLITS = ("train", "dev", "test")
DATA_SUFFIXES = (".tsv", ".csv", ".jsonl")
DEMO_DIR = Path(__file__).parent / "data" / "demo_sentiment"


@dataclass(frozen=True)
class Example:
    """One labelled input."""

    text: str
    label: int


@dataclass(frozen=True)
class TaskPreset:
    """What a known task brings besides its data."""

    label_names: tuple[str, ...]
    verbalizers: tuple[str, ...]
    manual_prompt: str
    template: str = DEFAULT_TEMPLATE


PRESETS: dict[str, TaskPreset] = {
    "sst-2": TaskPreset(("negative", "positive"), (" terrible", " great"), "It was"),
    "sst-5": TaskPreset(
        ("very negative", "negative", "neutral", "positive", "very positive"),
        (" terrible", " bad", " okay", " good", " great"),
        "It was",
    ),
    "agnews": TaskPreset(("World", "Sports", "Business", "Sci/Tech"), (" World", " Sports", " Business", " Tech"), "Topic:"),
}
PRESETS["demo"] = PRESETS["sst-2"]


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


def _preset_for(task: str, data: str | None) -> TaskPreset | None:
    if task in PRESETS:
        return PRESETS[task]
    if data:
        for part in reversed(Path(data).resolve().parts):
            if part.lower() in PRESETS:
                return PRESETS[part.lower()]
    return None


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

    Args:
        task: A known task name (``demo``, ``sst-2``, ``sst-5``, ``agnews``) or any name for
            your own data; ``hf:NAME[:CONFIG]`` loads a hub dataset.
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
    preset = _preset_for(task, data)
    verbalizers = list(verbalizers) if verbalizers else list(preset.verbalizers) if preset else None
    if not verbalizers:
        raise RLPromptError(f"task '{task}' is not a known task ({', '.join(PRESETS)}); pass --verbalizers, one per class")
    label_names = list(label_names) if label_names else (
        list(preset.label_names) if preset and len(preset.label_names) == len(verbalizers) else [str(i) for i in range(len(verbalizers))]
    )
    if len(label_names) != len(verbalizers):
        raise RLPromptError(f"{len(label_names)} label names {label_names} but {len(verbalizers)} verbalizers {verbalizers}; give one verbalizer per label")
    result = Task(
        name=task,
        label_names=label_names,
        verbalizers=verbalizers,
        template=Template(template or (preset.template if preset else DEFAULT_TEMPLATE)),
        manual_prompt=manual_prompt if manual_prompt is not None else (preset.manual_prompt if preset else ""),
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
        with path.open(encoding="utf-8", newline="") as handle:
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
            raise RLPromptError(f"{path} line {line}: no text column '{wanted}' (columns: {', '.join(map(str, row))}); set --text-column")
        if self.label_column not in row:
            raise RLPromptError(f"{path} line {line}: no label column '{self.label_column}' (columns: {', '.join(map(str, row))}); set --label-column")
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
