"""The prompt file: a learned prompt and everything needed to reuse and trust it.

A prompt file is self-contained JSON: the prompt text (what every model is scored on, after
re-tokenization), its token ids in the tokenizer that wrote it, the task's template,
verbalizers and label names, its accuracies, the budget that found it, the seed and library
versions. Loading validates every field and names the bad one.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlprompt.errors import RLPromptError

if TYPE_CHECKING:
    from rlprompt.tasks import Task

SCHEMA_VERSION = 1


@dataclass
class TaskSpec:
    """How to turn the prompt into model inputs and class predictions."""

    name: str
    template: str
    verbalizers: list[str]
    label_names: list[str]
    manual_prompt: str = ""
    calibration: str = "none"
    """``none``, or ``train-mean``: subtract the prompt's mean verbalizer logits over unlabelled
    train inputs before the argmax (see ``rlprompt.scoring.CalibratedScorer``)."""

    def to_task(
        self, data: str | None = None, *, name: str | None = None, template: str | None = None,
        verbalizers: list[str] | None = None, manual_prompt: str | None = None,
    ) -> Task:
        """The task this spec describes, on ``data``; each argument given overrides the spec's.

        New verbalizers drop the spec's label names (they name the old classes).
        """
        from rlprompt.tasks import load_task

        return load_task(
            name or self.name,
            data,
            template=template or self.template,
            verbalizers=verbalizers or self.verbalizers,
            label_names=None if verbalizers else self.label_names,
            manual_prompt=self.manual_prompt if manual_prompt is None else manual_prompt,
        )


@dataclass
class Candidate:
    """One of the best distinct prompts a run found."""

    prompt: str
    token_ids: list[int]
    train_reward: float
    train_accuracy: float
    dev_accuracy: float | None = None
    test_accuracy: float | None = None
    perplexity: float | None = None
    """Perplexity of the prompt text under the prompt file's ``perplexity_lm``."""
    greedy: bool = False
    """The policy's greedy (most likely) prompt at one of the run's greedy checks, not only a sample."""


@dataclass
class PromptFile:
    """A learned prompt and its provenance (see the module docstring)."""

    prompt: str
    token_ids: list[int]
    tokenizer: str
    """The model whose tokenizer ``token_ids`` belong to (the policy's)."""
    target_lm: str
    """The model the prompt was learned on."""
    task: TaskSpec
    accuracy: dict[str, float | None]
    """``train``, ``dev`` and ``test`` accuracy on ``target_lm``, in [0, 1] (``None``: not measured)."""
    budget: dict[str, float]
    """``steps``, ``prompts_sampled``, ``prompt_evaluations`` (distinct prompts the target LM
    scored; repeats come from the run's reward cache) and ``seconds`` spent."""
    seed: int
    versions: dict[str, str]
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    candidates: list[Candidate] = field(default_factory=list)
    perplexity: float | None = None
    """Perplexity of the prompt text under ``perplexity_lm`` (how much it reads as language)."""
    perplexity_lm: str | None = None
    dtype: str | None = None
    """Weight dtype of ``target_lm`` when the accuracies were computed (``fp32`` or ``bf16``);
    ``None`` in files written before it was recorded."""
    writer: dict[str, str | None] | None = None
    """An instruction writer's provenance (grpo, ape, opro, grpo-opro): ``lm`` (the policy LM), ``algo``,
    ``meta_prompt`` (the text it read) and ``adapter`` (its LoRA weights' folder, relative to the
    run folder; null for a writer without adapters); None for token policies."""
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        """Write atomically: a reader (or a run killed mid-write) never sees a half file."""
        write_json_atomic(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> PromptFile:
        """Read and validate a prompt file.

        Raises:
            RLPromptError: The file is missing, not JSON, or a field is missing or of the
                wrong type; the message names the file and the field.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise RLPromptError(f"prompt file '{path}' does not exist") from error
        except (OSError, UnicodeDecodeError) as error:
            raise RLPromptError(f"prompt file '{path}' cannot be read: {error}") from error
        except json.JSONDecodeError as error:
            raise RLPromptError(f"prompt file '{path}' is not valid JSON (line {error.lineno}: {error.msg})") from error
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "prompt file") -> PromptFile:
        check = _Checker(source)
        check.type(data, dict, "the top level")
        version = check.field(data, "schema_version", int)
        if version != SCHEMA_VERSION:
            raise RLPromptError(f"{source}: field 'schema_version' is {version}; this rlprompt reads version {SCHEMA_VERSION}")
        task = check.field(data, "task", dict)
        spec = TaskSpec(
            name=check.field(task, "name", str, "task."),
            template=check.field(task, "template", str, "task."),
            verbalizers=check.list_of(task, "verbalizers", str, "task."),
            label_names=check.list_of(task, "label_names", str, "task."),
            manual_prompt=check.field(task, "manual_prompt", str, "task.", default=""),
            calibration=check.field(task, "calibration", str, "task.", default="none"),
        )
        from rlprompt.scoring.base import CALIBRATIONS

        if spec.calibration not in CALIBRATIONS:
            raise RLPromptError(f"{source}: field 'task.calibration' is '{spec.calibration}'; valid: {', '.join(CALIBRATIONS)}")
        if len(spec.verbalizers) != len(spec.label_names):
            raise RLPromptError(f"{source}: field 'task.verbalizers' has {len(spec.verbalizers)} entries but 'task.label_names' has {len(spec.label_names)}")
        from rlprompt.template import Template

        try:
            Template(spec.template)
        except RLPromptError as error:
            raise RLPromptError(f"{source}: field 'task.template' is invalid: {error}") from error
        writer = check.field(data, "writer", (dict, type(None)), default=None)
        for key, value in (writer or {}).items():
            check.type(value, (str, type(None)), f"field 'writer.{key}'")
        dtype = check.field(data, "dtype", (str, type(None)), default=None)
        if dtype not in (None, "fp32", "bf16"):
            raise RLPromptError(f"{source}: field 'dtype' is '{dtype}'; valid: fp32, bf16 or null")
        accuracy = check.field(data, "accuracy", dict)
        for key, value in accuracy.items():
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1):
                raise RLPromptError(f"{source}: field 'accuracy.{key}' must be a number in [0, 1] or null, got {value!r}")
        budget = check.field(data, "budget", dict)
        for key, value in budget.items():
            check.type(value, (int, float), f"field 'budget.{key}'")
        candidates = []
        for index, item in enumerate(check.field(data, "candidates", list, default=[])):
            where = f"candidates[{index}]."
            check.type(item, dict, f"field 'candidates[{index}]'")
            candidates.append(
                Candidate(
                    prompt=check.field(item, "prompt", str, where),
                    token_ids=check.list_of(item, "token_ids", int, where),
                    train_reward=check.field(item, "train_reward", (int, float), where),
                    train_accuracy=check.field(item, "train_accuracy", (int, float), where),
                    dev_accuracy=check.field(item, "dev_accuracy", (int, float, type(None)), where, default=None),
                    test_accuracy=check.field(item, "test_accuracy", (int, float, type(None)), where, default=None),
                    perplexity=check.field(item, "perplexity", (int, float, type(None)), where, default=None),
                    greedy=check.field(item, "greedy", bool, where, default=False),
                )
            )
        return cls(
            prompt=check.field(data, "prompt", str),
            token_ids=check.list_of(data, "token_ids", int),
            tokenizer=check.field(data, "tokenizer", str),
            target_lm=check.field(data, "target_lm", str),
            task=spec,
            accuracy=accuracy,
            budget=budget,
            seed=check.field(data, "seed", int),
            versions=check.field(data, "versions", dict),
            created_at=check.field(data, "created_at", str),
            candidates=candidates,
            perplexity=check.field(data, "perplexity", (int, float, type(None)), default=None),
            perplexity_lm=check.field(data, "perplexity_lm", (str, type(None)), default=None),
            dtype=dtype,
            writer=writer,
            schema_version=version,
        )


_JSON_TYPE_NAMES = {"str": "string", "dict": "object", "list": "list", "int": "integer", "float": "number"}


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source

    def type(self, value: Any, expected, what: str) -> None:
        types = expected if isinstance(expected, tuple) else (expected,)
        # bool is an int subclass; a JSON true is never a valid number or id here.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join("null" if t is type(None) else _JSON_TYPE_NAMES.get(t.__name__, t.__name__) for t in types)
            raise RLPromptError(f"{self.source}: {what} must be {names}, got {type(value).__name__} {value!r:.60}")

    _MISSING = object()

    def field(self, data: dict, key: str, expected, prefix: str = "", default: Any = _MISSING) -> Any:
        if key not in data:
            if default is not self._MISSING:
                return default
            raise RLPromptError(f"{self.source}: missing field '{prefix}{key}'")
        self.type(data[key], expected, f"field '{prefix}{key}'")
        return data[key]

    def list_of(self, data: dict, key: str, item_type, prefix: str = "") -> list:
        values = self.field(data, key, list, prefix)
        for index, value in enumerate(values):
            self.type(value, item_type, f"field '{prefix}{key}[{index}]'")
        return values


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` via a temporary file and a rename."""
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write text (UTF-8) or bytes to ``path`` via a temporary file of its own and a rename, so a
    reader, or another process writing the same file, never sees it half written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content.encode("utf-8") if isinstance(content, str) else content)
        # mkstemp creates the file 0600; give it the mode a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def library_versions() -> dict[str, str]:
    """Versions of rlprompt and the libraries that shape its results."""
    from importlib.metadata import PackageNotFoundError, version

    import rlprompt

    versions = {"rlprompt": rlprompt.__version__}
    for package in ("torch", "transformers", "stable-baselines3", "gymnasium", "tokenizers"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions
