"""Task loading: the demo task, folders and single files of TSV/CSV/JSONL, and every bad input."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from rlprompt.errors import RLPromptError
from rlprompt.tasks import DEMO_DIR, PRESETS, Example, Task, load_task
from rlprompt.template import Template

TWO = [" bad", " good"]


def _error(**kwargs) -> str:
    """The message of the RLPromptError that ``load_task(**kwargs)`` raises."""
    with pytest.raises(RLPromptError) as info:
        load_task(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- the demo task ----------------------------------------------------------------------------


def test_demo_task_split_sizes_and_balance() -> None:
    task = load_task()
    assert (len(task.train), len(task.dev), len(task.test)) == (32, 32, 240)
    assert Counter(e.label for e in task.train) == {0: 16, 1: 16}
    assert Counter(e.label for e in task.dev) == {0: 16, 1: 16}
    assert Counter(e.label for e in task.test) == {0: 120, 1: 120}


def test_demo_task_preset() -> None:
    task = load_task("demo")
    assert task.name == "demo"
    assert task.label_names == ["negative", "positive"]
    assert task.verbalizers == [" terrible", " great"]
    assert task.manual_prompt == "It was"
    assert task.template == Template("{sentence} {prompt} {mask}")
    assert task.num_classes == 2
    first = (DEMO_DIR / "train.tsv").read_text(encoding="utf-8").splitlines()[1].split("\t")
    assert task.train[0] == Example(text=first[0].strip(), label=int(first[1]))
    assert all(e.text and e.text == e.text.strip() for e in task.test)


def test_demo_overrides() -> None:
    task = load_task(
        "demo",
        template="{prompt} {sentence} {mask}",
        verbalizers=[" bad", " good"],
        label_names=["neg", "pos"],
        manual_prompt="",
    )
    assert task.template.prompt_first
    assert task.verbalizers == [" bad", " good"]
    assert task.label_names == ["neg", "pos"]
    assert task.manual_prompt == ""


def test_split_accessor_and_unknown_split() -> None:
    task = load_task()
    assert task.split("dev") is task.dev
    with pytest.raises(RLPromptError, match=r"^unknown split 'validation'; valid splits: train, dev, test$"):
        task.split("validation")


# --- loading files ----------------------------------------------------------------------------


def test_folder_of_tsv(tmp_path: Path) -> None:
    _write(tmp_path / "train.tsv", 'sentence\tlabel\nIt has "quotes inside.\t1\n\nBad one.\t0\n')
    _write(tmp_path / "dev.tsv", "sentence\tlabel\n  Padded.  \t1\n")
    _write(tmp_path / "test.tsv", "sentence\tlabel\nX.\t0\nY.\t1\nZ.\t1\n")
    task = load_task("mine", str(tmp_path), verbalizers=TWO)
    assert task.train == [Example('It has "quotes inside.', 1), Example("Bad one.", 0)]
    assert task.dev == [Example("Padded.", 1)]
    assert [e.label for e in task.test] == [0, 1, 1]
    assert task.label_names == ["0", "1"]
    assert task.manual_prompt == ""
    assert task.template.text == "{sentence} {prompt} {mask}"


def test_folder_of_csv(tmp_path: Path) -> None:
    _write(tmp_path / "train.csv", 'text,label\n"Comma, inside",1\nPlain,0\n')
    _write(tmp_path / "test.csv", "label,text\n1,Reversed columns\n")
    task = load_task("mine", str(tmp_path), verbalizers=TWO)
    assert task.train == [Example("Comma, inside", 1), Example("Plain", 0)]
    assert task.dev == []
    assert task.test == [Example("Reversed columns", 1)]


def test_folder_of_jsonl(tmp_path: Path) -> None:
    rows = [{"text": "One.", "label": 0}, {"text": "Two.", "label": "1"}, {"text": "Three.", "label": 1, "extra": True}]
    _write(tmp_path / "dev.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    task = load_task("mine", str(tmp_path), verbalizers=TWO)
    assert task.dev == [Example("One.", 0), Example("Two.", 1), Example("Three.", 1)]
    assert task.train == [] and task.test == []


def test_tsv_preferred_over_csv_and_jsonl(tmp_path: Path) -> None:
    _write(tmp_path / "test.tsv", "sentence\tlabel\nfrom tsv\t0\n")
    _write(tmp_path / "test.csv", "sentence,label\nfrom csv,1\n")
    _write(tmp_path / "test.jsonl", '{"sentence": "from jsonl", "label": 1}\n')
    assert load_task("mine", str(tmp_path), verbalizers=TWO).test == [Example("from tsv", 0)]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("data.tsv", "sentence\tlabel\nA.\t1\nB.\t0\n"),
        ("data.csv", "sentence,label\nA.,1\nB.,0\n"),
        ("data.jsonl", '{"sentence": "A.", "label": 1}\n{"sentence": "B.", "label": 0}\n'),
    ],
)
def test_single_file_is_test_split(tmp_path: Path, name: str, text: str) -> None:
    path = _write(tmp_path / name, text)
    task = load_task("mine", str(path), verbalizers=TWO)
    assert task.test == [Example("A.", 1), Example("B.", 0)]
    assert task.train == [] and task.dev == []


def test_label_names_map_to_indices(tmp_path: Path) -> None:
    path = _write(tmp_path / "test.tsv", "sentence\tlabel\nA.\tpositive\nB.\tnegative\nC.\t1\nD.\t neutral \n")
    task = load_task("mine", str(path), verbalizers=[" bad", " okay", " good"], label_names=["negative", "neutral", "positive"])
    assert [e.label for e in task.test] == [2, 0, 1, 1]


def test_preset_label_names_map_to_indices(tmp_path: Path) -> None:
    path = _write(tmp_path / "test.jsonl", '{"text": "x", "label": "Sports"}\n{"text": "y", "label": "Sci/Tech"}\n')
    task = load_task("agnews", str(path))
    assert task.verbalizers == list(PRESETS["agnews"].causal.verbalizers)
    assert [e.label for e in task.test] == [1, 3]


def test_custom_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "test.csv", "review,stars,text\nNice,1,ignored\n")
    task = load_task("mine", str(path), verbalizers=TWO, text_column="review", label_column="stars")
    assert task.test == [Example("Nice", 1)]


def test_preset_from_data_path(tmp_path: Path) -> None:
    folder = tmp_path / "sst-2" / "16-42"
    folder.mkdir(parents=True)
    _write(folder / "test.tsv", "sentence\tlabel\nA.\t1\n")
    task = load_task("mine", str(folder))
    assert task.verbalizers == [" terrible", " great"]
    assert task.label_names == ["negative", "positive"]


def test_preset_label_names_dropped_when_verbalizer_count_differs(tmp_path: Path) -> None:
    path = _write(tmp_path / "test.tsv", "sentence\tlabel\nA.\t2\n")
    task = load_task("sst-2", str(path), verbalizers=[" bad", " okay", " good"])
    assert task.label_names == ["0", "1", "2"]
    assert task.test == [Example("A.", 2)]


# --- bad input --------------------------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert _error(task="mine", data=str(missing), verbalizers=TWO) == f"data path '{missing}' does not exist"


def test_folder_without_split_files(tmp_path: Path) -> None:
    _write(tmp_path / "notes.txt", "nothing here")
    assert _error(task="mine", data=str(tmp_path), verbalizers=TWO) == (
        f"data folder '{tmp_path}' has no train/dev/test files (expected train.tsv, dev.tsv, test.tsv, or .csv/.jsonl)"
    )


def test_unsupported_single_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "data.txt", "sentence\tlabel\nA.\t1\n")
    assert _error(task="mine", data=str(path), verbalizers=TWO) == (
        f"data file '{path}' has an unsupported type; use .tsv, .csv, .jsonl"
    )


def test_malformed_tsv_row_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.tsv", "sentence\tlabel\nGood.\t1\nBad row\twith\ttabs\t0\n")
    assert _error(task="mine", data=str(tmp_path), verbalizers=TWO) == (
        f"{path} line 3: expected 2 columns (sentence, label), found 4"
    )


def test_malformed_tsv_row_after_blank_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "test.tsv", "sentence\tlabel\nGood.\t1\n\nno label\n")
    assert _error(task="mine", data=str(path), verbalizers=TWO) == (
        f"{path} line 4: expected 2 columns (sentence, label), found 1"
    )


def test_malformed_csv_row_line_after_multiline_field(tmp_path: Path) -> None:
    """A quoted field spanning two lines shifts every later line; the message must name the file line."""
    path = _write(tmp_path / "test.csv", 'text,label\n"two\nlines",1\nbad,1,2\n')
    assert _error(task="mine", data=str(path), verbalizers=TWO) == (
        f"{path} line 4: expected 2 columns (text, label), found 3"
    )


def test_bad_json_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "test.jsonl", '{"text": "ok", "label": 0}\n{"text": "broken", "label": \n')
    assert _error(task="mine", data=str(path), verbalizers=TWO) == (
        f"{path} line 2: not valid JSON (Expecting value)"
    )


def test_json_line_not_an_object(tmp_path: Path) -> None:
    path = _write(tmp_path / "test.jsonl", '["text", 0]\n')
    assert _error(task="mine", data=str(path), verbalizers=TWO) == f"{path} line 1: expected a JSON object, got list"


@pytest.mark.parametrize("label", ["2", "-1", "great", "1.0"])
def test_label_without_verbalizer(tmp_path: Path, label: str) -> None:
    path = _write(tmp_path / "test.tsv", f"sentence\tlabel\nFine.\t0\nOdd.\t{label}\n")
    assert _error(task="mine", data=str(path), verbalizers=TWO) == (
        f"{path} line 3: label {label!r} has no verbalizer; valid labels: 0..1 or 0, 1"
    )


def test_label_without_verbalizer_names_preset_labels(tmp_path: Path) -> None:
    path = _write(tmp_path / "test.csv", "sentence,label\nOdd.,neutral\n")
    assert _error(task="sst-2", data=str(path)) == (
        f"{path} line 2: label 'neutral' has no verbalizer; valid labels: 0..1 or negative, positive"
    )


@pytest.mark.parametrize(("name", "text"), [("test.tsv", ""), ("test.tsv", "sentence\tlabel\n"), ("test.csv", "text,label\n\n"), ("test.jsonl", "\n\n")])
def test_empty_file(tmp_path: Path, name: str, text: str) -> None:
    path = _write(tmp_path / name, text)
    assert _error(task="mine", data=str(path), verbalizers=TWO) == f"data file '{path}' has no examples"


def test_missing_text_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "test.tsv", "review\tlabel\nNice.\t1\n")
    assert _error(task="mine", data=str(path), verbalizers=TWO) == (
        f"{path} line 2: no text column 'sentence or text' (columns: review, label); set --text-column"
    )


def test_missing_named_text_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "test.jsonl", '{"sentence": "x", "label": 1}\n')
    assert _error(task="mine", data=str(path), verbalizers=TWO, text_column="body") == (
        f"{path} line 1: no text column 'body' (columns: sentence, label); set --text-column"
    )


def test_missing_label_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "test.csv", "sentence,stars\nNice.,1\n")
    assert _error(task="mine", data=str(path), verbalizers=TWO) == (
        f"{path} line 2: no label column 'label' (columns: sentence, stars); set --label-column"
    )


def test_rows_with_only_whitespace_are_skipped_with_one_warning(tmp_path: Path, caplog) -> None:
    path = _write(tmp_path / "test.tsv", "sentence\tlabel\nGood.\t1\n   \t1\n\t0\nBad.\t0\n")
    with caplog.at_level("WARNING", logger="rlprompt.tasks"):
        task = load_task("mine", str(path), verbalizers=TWO)
    assert [(e.text, e.label) for e in task.test] == [("Good.", 1), ("Bad.", 0)]
    assert [r.getMessage() for r in caplog.records] == [f"{path}: skipped 2 rows with empty or whitespace-only text (lines 3, 4)"]


def test_a_file_of_only_empty_text_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "test.tsv", "sentence\tlabel\n   \t1\n")
    assert _error(task="mine", data=str(path), verbalizers=TWO) == (
        f"data file '{path}' has no examples (1 row with empty or whitespace-only text skipped)"
    )


def test_unknown_task_without_verbalizers(tmp_path: Path) -> None:
    _write(tmp_path / "test.tsv", "sentence\tlabel\nA.\t1\n")
    assert _error(task="mytask", data=str(tmp_path)) == (
        "task 'mytask' is not a known task (sst-2, yelp-2, mr, cr, sst-5, yelp-5, agnews, subj, trec, yahoo, dbpedia, demo); "
        "pass --verbalizers, one per class"
    )


def test_unknown_task_without_data() -> None:
    assert _error(task="mytask", verbalizers=TWO) == (
        "task 'mytask' needs --data: a folder with train/dev/test files, or one file"
    )


def test_label_names_verbalizers_count_mismatch() -> None:
    assert _error(task="demo", label_names=["a", "b", "c"], verbalizers=TWO) == (
        "3 label names ['a', 'b', 'c'] but 2 verbalizers [' bad', ' good']; give one verbalizer per label"
    )


def test_bad_template_is_reported() -> None:
    with pytest.raises(RLPromptError, match=r"must contain \{mask\} exactly once"):
        load_task("demo", template="{sentence} {prompt}")


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_require_on_empty_split(split: str) -> None:
    task = Task("mine", ["0", "1"], TWO, Template("{sentence} {prompt} {mask}"), "", train=[Example("a", 0)], dev=[Example("b", 1)], test=[Example("c", 0)])
    task.require("train", "dev", "test")  # all present: no error
    setattr(task, split, [])
    with pytest.raises(RLPromptError) as info:
        task.require("train", "dev", "test")
    assert str(info.value) == f"task 'mine' has no {split} examples; provide a {split} file"


def test_require_on_single_file_task(tmp_path: Path) -> None:
    path = _write(tmp_path / "test.tsv", "sentence\tlabel\nA.\t1\n")
    task = load_task("mine", str(path), verbalizers=TWO)
    task.require("test")
    with pytest.raises(RLPromptError, match=r"^task 'mine' has no train examples; provide a train file$"):
        task.require("test", "train", "dev")


# --- the paper's benchmark data ---------------------------------------------------------------


@pytest.mark.shared_data
def test_shared_16_shot_data(shared_data: Path) -> None:
    sst2 = load_task("sst-2", str(shared_data / "16-shot" / "sst-2" / "16-42"))
    assert (len(sst2.train), len(sst2.dev), len(sst2.test)) == (32, 32, 1821)
    assert Counter(e.label for e in sst2.train) == {0: 16, 1: 16}
    assert sst2.verbalizers == [" terrible", " great"]

    agnews = load_task("agnews", str(shared_data / "16-shot" / "agnews" / "16-42"))
    assert (len(agnews.train), len(agnews.dev), len(agnews.test)) == (64, 64, 7600)
    assert Counter(e.label for e in agnews.train) == {0: 16, 1: 16, 2: 16, 3: 16}
    assert agnews.label_names == ["World", "Sports", "Business", "Sci/Tech"]
