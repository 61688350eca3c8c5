"""The transfer matrix: every prompt on every model, with reference rows and the diagonal marked."""

from __future__ import annotations

import json

import pytest

from rlprompt.artifact import PromptFile, TaskSpec
from rlprompt.errors import RLPromptError
from rlprompt.evaluation import score_prompts
from rlprompt.models import ModelPool, load_model
from rlprompt.scoring import Scorer, make_scorer
from rlprompt.tasks import load_task
from rlprompt.transfer import markdown_table, transfer_matrix, write_transfer


def _prompt_file(prompt: str, target_lm: str, calibration: str = "none") -> PromptFile:
    return PromptFile(
        prompt=prompt, token_ids=[1, 2], tokenizer=target_lm, target_lm=target_lm,
        task=TaskSpec("demo", "{sentence} {prompt} {mask}", [" terrible", " great"], ["negative", "positive"], "It was", calibration),
        accuracy={"train": 0.5, "dev": 0.5, "test": None}, budget={"steps": 1, "seconds": 1.0}, seed=0, versions={},
    )


def test_transfer_matrix_scores_every_prompt_on_every_model(tiny_llama_dir, tiny_gpt2_dir, tmp_path) -> None:
    llama, gpt2 = str(tiny_llama_dir), str(tiny_gpt2_dir)
    files = [_prompt_file("the food was great", llama), _prompt_file("overall it was", gpt2)]
    rows = transfer_matrix(files, ["a", "b"], [llama, gpt2], split="dev")
    assert [r.label for r in rows] == ["empty", "manual", "a", "b"]
    assert [r.prompt for r in rows] == ["", "It was", "the food was great", "overall it was"]
    assert [r.source_lm for r in rows] == [None, None, llama, gpt2]
    task = load_task("demo")
    expected = score_prompts(Scorer(load_model(gpt2), task.template, task.verbalizers), ["the food was great"], task.dev)[0]
    assert rows[2].accuracy[gpt2] == expected.accuracy

    table = markdown_table(rows, [llama, gpt2])
    a_row = next(line for line in table.splitlines() if line.startswith("| a |"))
    assert a_row.split("|")[3].strip().endswith("%*") and not a_row.split("|")[4].strip().endswith("*")

    paths = write_transfer(rows, [llama, gpt2], tmp_path / "out")
    assert paths["heatmap"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(paths["json"].read_text())[3]["accuracy"][gpt2] == rows[3].accuracy[gpt2]
    assert paths["markdown"].read_text() == table


def test_transfer_needs_prompts_and_models(tiny_llama_dir) -> None:
    with pytest.raises(RLPromptError, match="at least one prompt file"):
        transfer_matrix([], [], [str(tiny_llama_dir)])
    with pytest.raises(RLPromptError, match="at least one target model"):
        transfer_matrix([_prompt_file("x", "m")], ["x"], [])


def test_calibrated_prompts_are_scored_calibrated_on_every_model(tiny_llama_dir, tiny_gpt2_dir, tmp_path) -> None:
    llama, gpt2 = str(tiny_llama_dir), str(tiny_gpt2_dir)
    files = [_prompt_file("the food was great", llama, "train-mean")]
    rows = transfer_matrix(files, ["a"], [llama, gpt2], split="dev")
    task = load_task("demo")
    for spec in (llama, gpt2):
        scorer = make_scorer(spec, task, "train-mean", models=ModelPool())
        expected = score_prompts(scorer, ["", "It was", "the food was great"], task.dev)
        assert [row.accuracy[spec] for row in rows] == [score.accuracy for score in expected]
    with pytest.raises(RLPromptError, match=r"the prompt files mix calibrations \(none, train-mean\); transfer each kind separately"):
        transfer_matrix([*files, _prompt_file("x", llama)], ["a", "b"], [llama])
    test_only = tmp_path / "test.tsv"
    test_only.write_text("sentence\tlabel\ngood\t1\n", encoding="utf-8")
    with pytest.raises(RLPromptError, match="has no train examples; provide a train file"):
        transfer_matrix(files, ["a"], [llama], data=str(test_only))


def test_transfer_frees_each_model_before_the_next_loads(tiny_llama_dir, tiny_gpt2_dir, monkeypatch) -> None:
    """Only one model (with its scorers and prefix caches) is alive at a time."""
    import weakref

    import rlprompt.transfer

    loaded: list[weakref.ref] = []
    alive_at_each_load: list[int] = []

    class RecordingPool(ModelPool):
        def get(self, spec: str):
            if spec not in self._models:
                alive_at_each_load.append(sum(ref() is not None for ref in loaded))
                lm = super().get(spec)
                loaded.append(weakref.ref(lm.model))
                return lm
            return super().get(spec)

    monkeypatch.setattr(rlprompt.transfer, "ModelPool", RecordingPool)
    llama, gpt2 = str(tiny_llama_dir), str(tiny_gpt2_dir)
    files = [_prompt_file("the food was great", llama), _prompt_file("overall it was", gpt2)]
    rows = transfer_matrix(files, ["a", "b"], [llama, gpt2, llama], split="dev")
    assert alive_at_each_load == [0, 0, 0]
    assert all(set(row.accuracy) == {llama, gpt2} for row in rows)
