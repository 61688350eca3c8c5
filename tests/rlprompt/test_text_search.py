"""Search methods that write whole instructions: grpo, ape and opro on tiny models; the GRPO loss
against hand-computed values; resume after kill -9; the meta-prompt; bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rlprompt.artifact import PromptFile
from rlprompt.config import TrainConfig
from rlprompt.errors import RLPromptError
from rlprompt.meta_prompt import META_PROMPT, meta_prompt_parts, opro_meta_prompt, read_meta_prompt, shown_examples
from rlprompt.scoring.local import Scorer
from rlprompt.search.grpo import group_advantages, grpo_loss
from rlprompt.tasks import load_task
from rlprompt.train import STATE_FILE, resume_config, train
from tests.rlprompt.test_cli import assert_bad_input, cli_command, run_cli
from tests.rlprompt.test_resume import _kill_after, record_train_scoring

PROMPT_FIRST = "{prompt}\nReview: {sentence}\nIt was {mask}"


def _config(tmp_path: Path, model: Path, algo: str, **overrides) -> TrainConfig:
    settings = dict(
        target_lm=str(model), algo=algo, template=PROMPT_FIRST, num_prompts=4, prompt_length=6, steps=1, runs_dir=str(tmp_path / "runs"),
        run_name=algo, evaluate_test=False, greedy_every=1, meta_examples=2, seed=1, n_epochs=2,
    )
    return TrainConfig(**{**settings, **overrides})


def test_grpo_loss_matches_hand_computed_values() -> None:
    log_probs = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]])
    old = torch.tensor([[-1.2, -2.0], [-0.5, 0.0]])
    ref = torch.tensor([[-1.0, -1.5], [-0.7, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss, stats = grpo_loss(log_probs, old, ref, torch.tensor([1.0, -1.0]), mask, clip_range=0.2, kl_coef=0.1)

    def k3(gap: float) -> float:
        return math.exp(gap) - gap - 1

    # Sample 0 (advantage +1): token 0's ratio e^0.2 = 1.221 is clipped to 1.2; token 1's is 1.
    sample_0 = (-(1.2 - 0.1 * k3(0.0)) - (1.0 - 0.1 * k3(0.5))) / 2
    # Sample 1 (advantage -1): one real token, ratio 1; the padded token counts for nothing.
    sample_1 = -(-1.0 - 0.1 * k3(-0.2))
    assert loss.item() == pytest.approx((sample_0 + sample_1) / 2, abs=1e-6)
    assert stats["kl"] == pytest.approx((k3(0.0) + k3(0.5) + k3(-0.2)) / 3, abs=1e-6)
    assert stats["clipped_fraction"] == pytest.approx(1 / 3)


def test_group_advantages_are_z_scores_and_zero_for_a_flat_group() -> None:
    assert group_advantages(np.array([1.0, 2.0, 3.0])).tolist() == pytest.approx([-1.224745, 0.0, 1.224745], abs=1e-6)
    assert group_advantages(np.array([4.0, 4.0, 4.0])).tolist() == [0.0, 0.0, 0.0]


def test_the_meta_prompt_shows_the_task_label_words_examples_and_starting_instruction() -> None:
    task = load_task("sst-2", str(Path(__file__).parents[2] / "rlprompt" / "data" / "demo_sentiment"), verbalizers=[" negative", " positive"])
    parts = meta_prompt_parts(task, None, "Say if it is positive.", examples=2, seed=0)
    text = parts.fill(META_PROMPT)
    assert text.startswith("Each input is a sentence from a movie review; the task is to tell whether its sentiment is positive or negative.\n")
    assert "Each input is answered with one of these words: negative, positive." in text
    assert text.count("Input: ") == 2 and "Answer: negative" in text and "Answer: positive" in text
    assert 'The current instruction is: "Say if it is positive.". Improve it.' in text
    assert [e.label for e in shown_examples(task.train, 4, seed=0)] == [0, 1, 0, 1]
    history = opro_meta_prompt(parts, [("b", 0.9), ("a", 0.5)])
    assert history.index('Instruction: "a"\nScore: 50') < history.index('Instruction: "b"\nScore: 90'), "OPRO lists worst to best"


def test_a_meta_prompt_file_with_an_unknown_field_is_one_line(tmp_path) -> None:
    path = tmp_path / "meta.txt"
    path.write_text("Task: {description}\n{oops}", encoding="utf-8")
    with pytest.raises(RLPromptError, match=r"meta-prompt .*meta.txt has unknown fields \['oops'\]; valid: \{description\}"):
        read_meta_prompt(str(path))
    with pytest.raises(RLPromptError, match="meta-prompt file '.*missing.txt' cannot be read"):
        TrainConfig(algo="ape", meta_prompt=str(tmp_path / "missing.txt")).check()


def test_instruction_writers_default_to_48_tokens_and_token_policies_to_5() -> None:
    assert TrainConfig(algo="grpo").prompt_length == 48 and TrainConfig(algo="ape").prompt_length == 48
    assert TrainConfig().prompt_length == 5 and TrainConfig(algo="grpo", prompt_length=12).prompt_length == 12


@pytest.mark.parametrize("algo", ["grpo", "ape", "opro", "grpo-opro"])
def test_one_step_of_each_instruction_writer(tiny_llama_dir, tmp_path, algo: str) -> None:
    result = train(_config(tmp_path, tiny_llama_dir, algo), progress_bar=False)
    run = tmp_path / "runs" / algo
    history = json.loads((run / "history.json").read_text(encoding="utf-8"))
    assert [row["batch"] for row in history] == [1]
    row = history[0]
    assert row["distinct_in_batch"] <= 4 and row["new_instructions"] >= 1
    writer = PromptFile.load(result.path).writer
    assert writer["lm"] == str(tiny_llama_dir) and writer["algo"] == algo and "Examples:" in writer["meta_prompt"]
    if algo.startswith("grpo"):
        assert {"kl", "entropy", "clipped_fraction"} <= set(row)
        assert writer["adapter"] == "writer-1" and (run / "writer-1" / "adapter_model.safetensors").is_file()
        assert any(c.greedy for c in result.prompt_file.candidates), "grpo's greedy instruction is scored"
    else:
        assert writer["adapter"] is None and not list(run.glob("writer-*"))
    evaluations = result.prompt_file.budget["prompt_evaluations"]
    # OPRO scores the user's instruction first (there is none here: the demo data with a custom template has the preset's).
    assert evaluations <= 4 + algo.startswith("grpo") + algo.endswith("opro")


def test_grpo_on_opro_history_learns_on_the_meta_prompt_its_batch_was_written_after(tiny_llama_dir, tmp_path, monkeypatch) -> None:
    from rlprompt.search.grpo import GRPOSearch

    seen: list[list[int]] = []
    original = GRPOSearch.update

    def update(self, meta_prompt, samples, rewards):
        seen.append(list(meta_prompt))
        return original(self, meta_prompt, samples, rewards)

    monkeypatch.setattr(GRPOSearch, "update", update)
    train(_config(tmp_path, tiny_llama_dir, "grpo-opro", steps=2), progress_bar=False)
    assert len(seen) == 2 and seen[0] != seen[1], "the second batch's meta-prompt shows the first batch's scores"
    history = json.loads((tmp_path / "runs" / "grpo-opro" / "history.json").read_text(encoding="utf-8"))
    assert [row["batch"] for row in history] == [1, 2]


def test_grpo_resumes_after_sigkill_with_its_adapters_optimizer_and_selector(tiny_llama_dir, tmp_path, monkeypatch) -> None:
    run = tmp_path / "runs" / "killed"
    command = cli_command(
        "train", "--target-lm", tiny_llama_dir, "--algo", "grpo", "--template", PROMPT_FIRST, "--steps", "500", "--num-prompts", "4",
        "--prompt-length", "6", "--meta-examples", "2", "--n-epochs", "1", "--greedy-every", "0", "--runs-dir", tmp_path / "runs",
        "--run-name", "killed", "--no-progress", "--seed", "3", "--no-evaluate-test",
    )
    state = _kill_after(command, run / STATE_FILE, batches=2)
    done, scored = state["selector"]["batches"], set(state["reward"]["scores"])
    assert (run / f"writer-{done}" / "adapter_model.safetensors").is_file()
    saved_adam = torch.load(run / f"writer-{done}" / "optimizer.pt", weights_only=True)
    from safetensors.torch import load_file

    on_disk = load_file(str(run / f"writer-{done}" / "adapter_model.safetensors"))

    on_train = record_train_scoring(monkeypatch)
    restored = {}
    from rlprompt.search.grpo import GRPOSearch

    original_load = GRPOSearch.load

    def checking_load(self, folder):
        original_load(self, folder)
        restored["adam_steps"] = [int(s["step"]) for s in self.optimizer.state_dict()["state"].values()]
        restored["lora"] = {n: p.detach().clone() for n, p in self.writer.model.named_parameters() if p.requires_grad}

    monkeypatch.setattr(GRPOSearch, "load", checking_load)
    result = train(resume_config(run, steps=done + 2), progress_bar=False, resume=True)

    assert restored["adam_steps"] and set(restored["adam_steps"]) == {int(s["step"]) for s in saved_adam["state"].values()} == {done}
    assert len(on_disk) == len(restored["lora"]) and all(torch.equal(a, b) for a, b in zip(on_disk.values(), restored["lora"].values()))
    assert not set(on_train) & scored, "an instruction in the reward cache was scored again"
    history = json.loads((run / "history.json").read_text(encoding="utf-8"))
    assert [row["batch"] for row in history] == list(range(1, done + 3))
    assert result.prompt_file.budget["prompt_evaluations"] == len(scored) + len(set(on_train))
    assert sorted(p.name for p in run.glob("writer-*")) == [f"writer-{done + 1}", f"writer-{done + 2}"], "the two newest checkpoints are kept"


def test_grpo_with_a_masked_policy_lm_is_one_line(tiny_llama_dir, tiny_bert, tmp_path) -> None:
    bert = tmp_path / "bert"
    tiny_bert.model.save_pretrained(bert)
    tiny_bert.tokenizer.save_pretrained(bert)
    result = run_cli("train", "--target-lm", tiny_llama_dir, "--policy-lm", bert, "--algo", "grpo", "--steps", "1", "--runs-dir", tmp_path, cwd=tmp_path)
    assert_bad_input(result, f"policy backbone '{bert}' is a masked LM; the policy needs a causal LM")


@pytest.mark.parametrize("template", [PROMPT_FIRST, "{prompt} {sentence} {mask}", "Read: {prompt}\n{sentence} So it was{mask}"])
def test_prompt_first_templates_score_on_a_prompt_cache_as_on_the_plain_path(tiny_llama, tol, template: str) -> None:
    from rlprompt.template import Template

    task = load_task("demo")
    sentences = [e.text for e in task.train[:6]]
    prompts = ["", "Say", "Read the review and tell if it was great or terrible, please"]
    cached = Scorer(tiny_llama, Template(template), [" great", " terrible"])
    plain = Scorer(tiny_llama, Template(template), [" great", " terrible"], prefix_cache=False)
    calls = []
    original = cached._prompt_cached_logits
    cached._prompt_cached_logits = lambda p, s: calls.append(len(p)) or original(p, s)
    torch.testing.assert_close(cached.class_logits(prompts, sentences), plain.class_logits(prompts, sentences), **tol.logits)
    # The tiny tokenizer has no BOS: a template that opens with an empty prompt has nothing to cache.
    assert calls == ([] if template.startswith("{prompt} {sentence}") else [3])
