"""The prompt selector and the training callback, driven with hand-made episode infos."""

from __future__ import annotations

from rlprompt.artifact import Candidate
from rlprompt.search.sb3 import TopKPromptCallback
from rlprompt.selection import PromptSelector


def _info(prompt: str, reward: float) -> dict:
    return {"prompt": prompt, "token_ids": [1, 2], "raw_reward": reward, "metrics": {"accuracy": 0.5}}


def _drive(callback: TopKPromptCallback, batches: list[list[dict]]) -> list[bool]:
    from stable_baselines3.common.logger import Logger

    callback.model = type("FakeModel", (), {"logger": Logger(folder=None, output_formats=[]), "num_timesteps": 0})()
    keep_going = []
    for infos in batches:
        callback.locals = {"infos": infos}
        keep_going.append(callback.on_step())
    return keep_going


def test_keeps_top_k_scores_each_prompt_on_dev_once_and_pins_the_best() -> None:
    dev = {"a": 0.9, "b": 0.5, "c": 0.6, "d": 0.7, "e": 0.8}
    scored: list[list[str]] = []
    saved: list[list[Candidate]] = []

    def dev_accuracy(prompts: list[str]) -> list[float]:
        scored.append(prompts)
        return [dev[p] for p in prompts]

    selector = PromptSelector(2, dev_accuracy, lambda ranked: saved.append([c.prompt for c in ranked]))
    for batch in [
        [_info("a", 1.0), _info("b", 2.0)],
        [_info("c", 3.0), _info("d", 4.0), _info("d", 4.0)],
        [_info("a", 1.0), _info("e", 0.5)],
    ]:
        selector.add(batch)
    assert scored == [["b", "a"], ["d", "c"]], "each prompt in the top-k is scored on dev once"
    assert saved == [["a", "b"]], "'a' is best on dev from the start; the file is written when the best changes"
    assert [c.prompt for c in selector.ranked()] == ["a", "d", "c"]
    assert selector.prompts_sampled == 7 and selector.batches == 3


def test_a_better_dev_prompt_replaces_the_best_and_history_records_each_batch() -> None:
    dev = {"a": 0.5, "b": 0.75}
    saved: list[str] = []
    spent = iter([3, 7])
    selector = PromptSelector(3, lambda ps: [dev[p] for p in ps], lambda ranked: saved.append(ranked[0].prompt), lambda: next(spent))
    selector.add([_info("a", 1.0)])
    assert selector.add([{}, {}]) == [], "a batch with no finished prompt is not a step"
    selector.add([_info("b", 0.1)])
    assert saved == ["a", "b"]
    assert selector.best is not None and selector.best.prompt == "b"
    seconds = [row.pop("seconds") for row in selector.history]
    assert selector.history == [
        {"batch": 1, "prompts_sampled": 1, "evaluations": 3, "best_dev_accuracy": 0.5, "best_train_reward": 1.0},
        {"batch": 2, "prompts_sampled": 2, "evaluations": 7, "best_dev_accuracy": 0.75, "best_train_reward": 0.1},
    ]
    assert 0 <= seconds[0] <= seconds[1], "wall time since the selector started, per batch"


def test_callback_stops_training_once_the_evaluation_budget_is_spent() -> None:
    selector = PromptSelector(2, lambda ps: [0.5] * len(ps), lambda ranked: None, lambda: 2 * selector.batches)
    callback = TopKPromptCallback(selector, max_evaluations=4)
    keep_going = _drive(callback, [[_info("a", 1.0)], [{}], [_info("b", 2.0)]])
    assert keep_going == [True, True, False]
    assert [c.prompt for c in selector.ranked()] == ["b", "a"]


def test_callback_stops_once_patience_batches_in_a_row_scored_no_new_prompt() -> None:
    selector = PromptSelector(2, lambda ps: [0.5] * len(ps), lambda ranked: None, lambda: len(selector.candidates))
    callback = TopKPromptCallback(selector, patience=2)
    keep_going = _drive(callback, [[_info("a", 1.0)], [_info("b", 2.0)], [_info("b", 2.0)], [_info("a", 1.0)]])
    assert keep_going == [True, True, True, False], "batches 3 and 4 scored nothing new after batch 2"
    assert not selector.should_stop(None, None) and not selector.should_stop(None, 3)
    assert selector.should_stop(2) and not selector.should_stop(3), "the budget alone"
