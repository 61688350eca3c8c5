"""The prompt file: atomic round-trip and a validation error for each bad field."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Callable

import pytest

from rlprompt.artifact import SCHEMA_VERSION, Candidate, PromptFile, TaskSpec, write_json_atomic
from rlprompt.errors import RLPromptError


def make_prompt_file() -> PromptFile:
    """A small, fully populated prompt file."""
    return PromptFile(
        prompt="Absolutely wonderful",
        token_ids=[17, 4, 256],
        tokenizer="smollm2-135m",
        target_lm="smollm2-135m",
        task=TaskSpec("demo", "{sentence} {prompt} {mask}", [" terrible", " great"], ["negative", "positive"], "It was"),
        accuracy={"train": 0.75, "dev": 0.5, "test": None},
        budget={"steps": 2, "prompt_evaluations": 8, "seconds": 1.5},
        seed=3,
        versions={"rlprompt": "0.1.0", "torch": "2.5"},
        created_at="2025-01-02T03:04:05+00:00",
        candidates=[
            Candidate("Absolutely wonderful", [17, 4, 256], 12.5, 0.75, 0.5, None),
            Candidate("Really bad", [9, 9], -3, 0.25, 0.25),
        ],
    )


def test_round_trip(tmp_path: Path) -> None:
    original = make_prompt_file()
    path = tmp_path / "run" / "prompt.json"
    original.save(path)
    loaded = PromptFile.load(path)
    assert loaded == original
    assert isinstance(loaded.task, TaskSpec)
    assert all(isinstance(c, Candidate) for c in loaded.candidates)
    assert json.loads(path.read_text(encoding="utf-8"))["schema_version"] == SCHEMA_VERSION


def test_save_is_atomic_no_leftovers(tmp_path: Path) -> None:
    """Saving (twice, overwriting) leaves exactly the prompt file: no temporary files."""
    original = make_prompt_file()
    original.save(tmp_path / "prompt.json")
    original.prompt = "Second version"
    original.save(tmp_path / "prompt.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompt.json"]
    assert PromptFile.load(tmp_path / "prompt.json").prompt == "Second version"


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})  # not JSON-serialisable, fails mid-write
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]


def test_unicode_is_written_as_text(tmp_path: Path) -> None:
    prompt_file = make_prompt_file()
    prompt_file.prompt = "très bien ✓"
    prompt_file.save(tmp_path / "p.json")
    assert "très bien ✓" in (tmp_path / "p.json").read_text(encoding="utf-8")
    assert PromptFile.load(tmp_path / "p.json").prompt == "très bien ✓"


def test_candidates_and_manual_prompt_are_optional() -> None:
    data = make_prompt_file().to_dict()
    del data["candidates"]
    del data["task"]["manual_prompt"]
    del data["task"]["calibration"]
    loaded = PromptFile.from_dict(data)
    assert loaded.candidates == []
    assert loaded.task.manual_prompt == ""
    assert loaded.task.calibration == "none"


def test_saved_file_has_normal_permissions(tmp_path: Path) -> None:
    """A prompt file is for sharing: it gets the mode a plain write would give (0666 minus the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    make_prompt_file().save(tmp_path / "prompt.json")
    assert (tmp_path / "prompt.json").stat().st_mode & 0o777 == 0o666 & ~umask


# --- load errors -----------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(RLPromptError) as info:
        PromptFile.load(path)
    assert str(info.value) == f"prompt file '{path}' does not exist"


def test_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{\n  "prompt": "x",\n  oops\n}', encoding="utf-8")
    with pytest.raises(RLPromptError) as info:
        PromptFile.load(path)
    assert str(info.value) == f"prompt file '{path}' is not valid JSON (line 3: Expecting property name enclosed in double quotes)"


def test_directory_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(RLPromptError, match=rf"^prompt file '{tmp_path}' cannot be read"):
        PromptFile.load(tmp_path)


def _set(path: str, value: Any) -> Callable[[dict], None]:
    """A mutation setting the dotted ``path`` (list indices as integers) to ``value``."""

    def mutate(data: dict) -> None:
        *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
        for key in parents:
            data = data[key]
        data[last] = value

    return mutate


def _delete(path: str) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[int(key) if key.isdigit() else key]
        del data[last]

    return mutate


REQUIRED = [
    "schema_version", "prompt", "token_ids", "tokenizer", "target_lm", "task", "accuracy", "budget",
    "seed", "versions", "created_at",
    "task.name", "task.template", "task.verbalizers", "task.label_names",
    "candidates.0.prompt", "candidates.0.token_ids", "candidates.0.train_reward", "candidates.0.train_accuracy",
]

MISSING_CASES = [
    pytest.param(
        _delete(field),
        "missing field '" + field.replace("candidates.0.", "candidates[0].") + "'",
        id=f"missing-{field}",
    )
    for field in REQUIRED
]

TYPE_CASES = [
    pytest.param(_set("token_ids", [1, "2"]), "field 'token_ids[1]' must be integer, got str '2'", id="token_id-str"),
    pytest.param(_set("token_ids", [1, True]), "field 'token_ids[1]' must be integer, got bool True", id="token_id-bool"),
    pytest.param(_set("token_ids", [1.5]), "field 'token_ids[0]' must be integer, got float 1.5", id="token_id-float"),
    pytest.param(_set("token_ids", "1 2"), "field 'token_ids' must be list, got str '1 2'", id="token_ids-str"),
    pytest.param(_set("seed", True), "field 'seed' must be integer, got bool True", id="seed-bool"),
    pytest.param(_set("seed", "3"), "field 'seed' must be integer, got str '3'", id="seed-str"),
    pytest.param(_set("schema_version", True), "field 'schema_version' must be integer, got bool True", id="version-bool"),
    pytest.param(_set("prompt", None), "field 'prompt' must be string, got NoneType None", id="prompt-null"),
    pytest.param(_set("tokenizer", 5), "field 'tokenizer' must be string, got int 5", id="tokenizer-int"),
    pytest.param(_set("target_lm", ["a"]), "field 'target_lm' must be string, got list ['a']", id="target_lm-list"),
    pytest.param(_set("created_at", 0), "field 'created_at' must be string, got int 0", id="created_at-int"),
    pytest.param(_set("versions", []), "field 'versions' must be object, got list []", id="versions-list"),
    pytest.param(_set("task", "demo"), "field 'task' must be object, got str 'demo'", id="task-str"),
    pytest.param(_set("task.name", 1), "field 'task.name' must be string, got int 1", id="task.name-int"),
    pytest.param(_set("task.verbalizers", " great"), "field 'task.verbalizers' must be list, got str ' great'", id="verbalizers-str"),
    pytest.param(_set("task.verbalizers", [" bad", 2]), "field 'task.verbalizers[1]' must be string, got int 2", id="verbalizer-int"),
    pytest.param(_set("task.label_names", {"0": "neg"}), "field 'task.label_names' must be list, got dict", id="label_names-dict"),
    pytest.param(_set("task.manual_prompt", None), "field 'task.manual_prompt' must be string, got NoneType None", id="manual-null"),
    pytest.param(_set("task.calibration", "platt"), "field 'task.calibration' is 'platt'; valid: none, train-mean", id="calibration-unknown"),
    pytest.param(_set("accuracy", [0.5]), "field 'accuracy' must be object, got list [0.5]", id="accuracy-list"),
    pytest.param(_set("accuracy.dev", "0.5"), "field 'accuracy.dev' must be a number in [0, 1] or null, got '0.5'", id="accuracy-str"),
    pytest.param(_set("accuracy.dev", True), "field 'accuracy.dev' must be a number in [0, 1] or null, got True", id="accuracy-bool"),
    pytest.param(_set("budget", 3), "field 'budget' must be object, got int 3", id="budget-int"),
    pytest.param(_set("budget.steps", "2"), "field 'budget.steps' must be integer or number, got str '2'", id="budget-str"),
    pytest.param(_set("budget.seconds", False), "field 'budget.seconds' must be integer or number, got bool False", id="budget-bool"),
    pytest.param(_set("candidates", {}), "field 'candidates' must be list, got dict {}", id="candidates-dict"),
    pytest.param(_set("candidates.1", "Really bad"), "field 'candidates[1]' must be object, got str 'Really bad'", id="candidate-str"),
    pytest.param(_set("candidates.0.token_ids", ["17"]), "field 'candidates[0].token_ids[0]' must be integer, got str '17'", id="candidate-token-str"),
    pytest.param(_set("candidates.1.train_reward", "high"), "field 'candidates[1].train_reward' must be integer or number, got str 'high'", id="candidate-reward-str"),
    pytest.param(_set("candidates.0.train_accuracy", True), "field 'candidates[0].train_accuracy' must be integer or number, got bool True", id="candidate-acc-bool"),
    pytest.param(_set("candidates.0.dev_accuracy", "x"), "field 'candidates[0].dev_accuracy' must be integer or number or null, got str 'x'", id="candidate-dev-str"),
]

VALUE_CASES = [
    pytest.param(_set("schema_version", 2), "field 'schema_version' is 2; this rlprompt reads version 1", id="version-2"),
    pytest.param(_set("accuracy.dev", 1.5), "field 'accuracy.dev' must be a number in [0, 1] or null, got 1.5", id="accuracy-above-1"),
    pytest.param(_set("accuracy.test", -0.1), "field 'accuracy.test' must be a number in [0, 1] or null, got -0.1", id="accuracy-below-0"),
    pytest.param(_set("accuracy.train", 75), "field 'accuracy.train' must be a number in [0, 1] or null, got 75", id="accuracy-percent"),
    pytest.param(
        _set("task.verbalizers", [" bad", " okay", " good"]),
        "field 'task.verbalizers' has 3 entries but 'task.label_names' has 2",
        id="verbalizers-label_names-mismatch",
    ),
    pytest.param(
        _set("task.template", "{sentence} {prompt}"),
        "field 'task.template' is invalid: template '{sentence} {prompt}' must contain {mask} exactly once (found 0)",
        id="template-no-mask",
    ),
    pytest.param(
        _set("task.template", "{sentence} {prompt} {label}"),
        "field 'task.template' is invalid: template '{sentence} {prompt} {label}' has an unknown field {label}",
        id="template-unknown-field",
    ),
]


@pytest.mark.parametrize(("mutate", "message"), MISSING_CASES + TYPE_CASES + VALUE_CASES)
def test_schema_error_names_the_field(tmp_path: Path, mutate: Callable[[dict], None], message: str) -> None:
    """Each bad field gives an RLPromptError naming the file and the field."""
    data = copy.deepcopy(make_prompt_file().to_dict())
    mutate(data)
    path = tmp_path / "prompt.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(RLPromptError) as info:
        PromptFile.load(path)
    text = str(info.value)
    assert text.startswith(f"{path}: {message}"), text
    assert "\n" not in text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "prompt file: the top level must be object, got list [1, 2]"),
        ("prompt", "prompt file: the top level must be object, got str 'prompt'"),
        (None, "prompt file: the top level must be object, got NoneType None"),
        ({}, "prompt file: missing field 'schema_version'"),
    ],
)
def test_top_level_not_an_object(data: Any, message: str) -> None:
    with pytest.raises(RLPromptError) as info:
        PromptFile.from_dict(data)
    assert str(info.value) == message


def test_top_level_not_an_object_in_file(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text("[]", encoding="utf-8")
    with pytest.raises(RLPromptError) as info:
        PromptFile.load(path)
    assert str(info.value) == f"{path}: the top level must be object, got list []"


def test_accuracy_bounds_and_null_are_valid() -> None:
    data = make_prompt_file().to_dict()
    data["accuracy"] = {"train": 0, "dev": 1, "test": None}
    assert PromptFile.from_dict(data).accuracy == {"train": 0, "dev": 1, "test": None}
