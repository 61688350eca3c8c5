"""The top-k prompt callback, driven with hand-made episode infos."""

from __future__ import annotations

from rlprompt.artifact import Candidate
from rlprompt.callbacks import TopKPromptCallback


def _info(prompt: str, reward: float) -> dict:
    return {"prompt": prompt, "token_ids": [1, 2], "raw_reward": reward, "accuracy": 0.5}


def _drive(callback: TopKPromptCallback, batches: list[list[dict]]) -> None:
    from stable_baselines3.common.logger import Logger

    callback.model = type("FakeModel", (), {"logger": Logger(folder=None, output_formats=[]), "num_timesteps": 0})()
    for infos in batches:
        callback.locals = {"infos": infos}
        callback.on_step()


def test_keeps_top_k_scores_each_prompt_on_dev_once_and_pins_the_best() -> None:
    dev = {"a": 0.9, "b": 0.5, "c": 0.6, "d": 0.7, "e": 0.8}
    scored: list[list[str]] = []
    saved: list[list[Candidate]] = []

    def dev_accuracy(prompts: list[str]) -> list[float]:
        scored.append(prompts)
        return [dev[p] for p in prompts]

    callback = TopKPromptCallback(2, dev_accuracy, lambda ranked: saved.append([c.prompt for c in ranked]))
    _drive(callback, [
        [_info("a", 1.0), _info("b", 2.0)],
        [_info("c", 3.0), _info("d", 4.0), _info("d", 4.0)],
        [_info("a", 1.0), _info("e", 0.5)],
    ])
    assert scored == [["b", "a"], ["d", "c"]], "each prompt in the top-k is scored on dev once"
    assert saved == [["a", "b"]], "'a' is best on dev from the start; the file is written when the best changes"
    assert [c.prompt for c in callback.ranked()] == ["a", "d", "c"]
    assert callback.prompts_sampled == 7 and callback.batches == 3


def test_a_better_dev_prompt_replaces_the_best() -> None:
    dev = {"a": 0.5, "b": 0.75}
    saved: list[str] = []
    callback = TopKPromptCallback(3, lambda ps: [dev[p] for p in ps], lambda ranked: saved.append(ranked[0].prompt))
    _drive(callback, [[_info("a", 1.0)], [_info("b", 0.1)]])
    assert saved == ["a", "b"]
    assert callback.best is not None and callback.best.prompt == "b"
