"""Devices and dtypes: the names accepted, what ``auto`` resolves to, the env overrides, and the
scorer, every search method, resume, transfer, calibration, variable length, fluency, top-K
vocabularies and the scoring memory bound on every accelerator present (skipped with a reason
where there is none; ``make test-gpu`` runs them on the GPU)."""

from __future__ import annotations

import pytest
import torch

from rlprompt.devices import (
    MIN_BATCH_TOKENS,
    bf16_is_native,
    check_device_name,
    cpu_has_fast_bf16,
    default_batch_tokens,
    dtype_name,
    has_fast_bf16,
    resolve_device,
    resolve_dtype,
)
from rlprompt.errors import RLPromptError


@pytest.fixture
def no_overrides(monkeypatch) -> None:
    monkeypatch.delenv("RLPROMPT_DTYPE", raising=False)
    monkeypatch.delenv("RLPROMPT_DEVICE", raising=False)


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"])
def test_device_names_accepted(name: str) -> None:
    check_device_name(name)


@pytest.mark.parametrize("name", ["gpu", "CUDA", "cuda:", "cuda:x", "cpu:0", "", "tpu"])
def test_unknown_device_names_the_valid_ones(name: str) -> None:
    with pytest.raises(RLPromptError, match=f"unknown device '{name}'; valid: auto, cpu, cuda, cuda:N, mps"):
        check_device_name(name)


def test_auto_device_prefers_cuda_then_mps_then_cpu(no_overrides, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


def test_missing_accelerator_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(RLPromptError, match=r"device 'cuda:1' is not available: this machine has no CUDA device"):
        resolve_device("cuda:1")
    with pytest.raises(RLPromptError, match=r"device 'mps' is not available"):
        resolve_device("mps")


def test_cuda_index_beyond_the_devices_present(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(RLPromptError, match=r"device 'cuda:2' is not available: this machine has 2 CUDA device\(s\)"):
        resolve_device("cuda:2")


@pytest.mark.parametrize(
    ("device_type", "capability", "cpu_bf16", "native"),
    [
        ("cuda", (7, 0), False, False),  # V100: bf16 only emulated
        ("cuda", (7, 5), False, False),  # T4, RTX 20xx: bf16 only emulated
        ("cuda", (8, 0), False, True),  # A100: first bf16 tensor cores
        ("cuda", (8, 6), False, True),
        ("cuda", (9, 0), False, True),  # H100
        ("cuda", None, False, False),
        ("mps", None, False, False),
        ("mps", None, True, False),
        ("cpu", None, True, True),
        ("cpu", None, False, False),
    ],
)
def test_bf16_is_native_from_what_the_hardware_reports(device_type, capability, cpu_bf16, native) -> None:
    assert bf16_is_native(device_type, cuda_capability=capability, cpu_bf16=cpu_bf16) is native


@pytest.fixture
def two_cuda_cards(no_overrides, monkeypatch) -> list:
    """cuda:0 a T4 (7.5), cuda:1 an A100 (8.0); torch's own emulation-counting check says yes to both.

    Returns the devices whose capability was asked for.
    """
    asked: list = []
    capabilities = {0: (7, 5), 1: (8, 0)}

    def capability(device=None):
        asked.append(device)
        index = torch.device(device).index if device is not None else None
        return capabilities[index if index is not None else 0]

    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    return asked


def test_auto_dtype_is_bf16_only_on_a_card_with_native_bf16(two_cuda_cards) -> None:
    assert resolve_dtype("auto", torch.device("cuda:0")) is torch.float32
    assert resolve_dtype("auto", torch.device("cuda:1")) is torch.bfloat16
    assert resolve_dtype("auto", torch.device("cuda")) is torch.float32  # the current device, cuda:0
    # Each card is asked about itself, not about the current device.
    assert [torch.device(d) for d in two_cuda_cards] == [torch.device("cuda:0"), torch.device("cuda:1"), torch.device("cuda")]


def test_auto_dtype_follows_the_device(no_overrides, monkeypatch) -> None:
    assert resolve_dtype("auto") is (torch.bfloat16 if cpu_has_fast_bf16() else torch.float32)
    assert not has_fast_bf16(torch.device("mps"))
    assert resolve_dtype("auto", torch.device("mps")) is torch.float32
    assert resolve_dtype("fp32", torch.device("cuda")) is torch.float32
    assert resolve_dtype("bf16") is torch.bfloat16


def test_environment_overrides_auto_but_not_an_explicit_choice(monkeypatch) -> None:
    monkeypatch.setenv("RLPROMPT_DTYPE", "bf16")
    assert resolve_dtype("auto") is torch.bfloat16
    assert resolve_dtype("fp32") is torch.float32
    monkeypatch.setenv("RLPROMPT_DTYPE", "fp32")
    assert resolve_dtype("auto") is torch.float32
    monkeypatch.setenv("RLPROMPT_DEVICE", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cpu")


def test_bad_environment_override_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("RLPROMPT_DTYPE", "fp16")
    with pytest.raises(RLPromptError, match="environment variable RLPROMPT_DTYPE is 'fp16'; valid: fp32, bf16 \\(or unset\\)"):
        resolve_dtype("auto")
    monkeypatch.setenv("RLPROMPT_DEVICE", "gpu")
    with pytest.raises(RLPromptError, match="unknown device 'gpu'"):
        resolve_device("auto")


def test_names_and_batch_bounds() -> None:
    assert dtype_name(torch.float32) == "fp32" and dtype_name(torch.bfloat16) == "bf16"
    assert default_batch_tokens(torch.device("cpu")) == 16384
    assert default_batch_tokens(torch.device("cuda", 0)) == 65536


def test_loaded_model_reports_its_device_and_dtype(tiny_llama_dir) -> None:
    from rlprompt.models import load_model

    lm = load_model(str(tiny_llama_dir), "bf16", "cpu")
    assert (lm.device, lm.dtype) == (torch.device("cpu"), torch.bfloat16)
    assert lm.model.dtype is torch.bfloat16


# -- on an accelerator ------------------------------------------------------------------


def test_scorer_on_an_accelerator_matches_the_cpu(accelerator, tiny_llama_dir) -> None:
    from rlprompt.models import load_model
    from rlprompt.scoring import Scorer
    from rlprompt.tasks import load_task

    task = load_task("demo")
    sentences = [e.text for e in task.train]
    prompts = ["It was", "", "the food was"]
    on_cpu = Scorer(load_model(str(tiny_llama_dir), "fp32", "cpu"), task.template, task.verbalizers)
    lm = load_model(str(tiny_llama_dir), "fp32", accelerator)
    assert lm.device.type == accelerator.split(":")[0]
    scorer = Scorer(lm, task.template, task.verbalizers)
    assert MIN_BATCH_TOKENS <= scorer.max_batch_tokens <= default_batch_tokens(lm.device)
    logits = scorer.class_logits(prompts, sentences)
    assert logits.device.type == "cpu" and logits.shape == (3, len(sentences), 2)
    torch.testing.assert_close(logits, on_cpu.class_logits(prompts, sentences), atol=1e-3, rtol=1e-3)
    plain = Scorer(lm, task.template, task.verbalizers, prefix_cache=False).class_logits(prompts, sentences)
    torch.testing.assert_close(logits, plain, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_training_end_to_end_on_an_accelerator(accelerator, dtype, tiny_llama_dir, tmp_path) -> None:
    from rlprompt.artifact import PromptFile
    from rlprompt.config import TrainConfig
    from rlprompt.train import train

    config = TrainConfig(
        target_lm=str(tiny_llama_dir), steps=2, num_prompts=4, prompt_length=2, adapter_hidden=16,
        runs_dir=str(tmp_path), run_name="run", device=accelerator, dtype=dtype,
    )
    result = train(config, progress_bar=False)
    assert PromptFile.load(result.path).dtype == dtype
    assert result.baselines["test"]["learned"].accuracy == result.prompt_file.accuracy["test"]


def _on_device(monkeypatch) -> list[str]:
    """The device type of every scoring call of the run (recorded)."""
    from rlprompt.scoring import Scorer

    seen: list[str] = []
    original = Scorer.class_logits

    def recording(self, prompts, sentences):
        seen.append(self.device.type)
        return original(self, prompts, sentences)

    monkeypatch.setattr(Scorer, "class_logits", recording)
    return seen


@pytest.mark.parametrize(
    "settings",
    [
        dict(algo="ppo"),
        dict(algo="a2c"),
        dict(algo="sql"),
        dict(algo="random"),
        dict(algo="ppo", min_length=1),  # variable length
        dict(algo="sql", min_length=0),
        dict(algo="ppo", calibration="train-mean"),
        dict(algo="ppo", fluency_weight=0.5),
        dict(algo="ppo", vocabulary="top-50"),
    ],
    ids=lambda settings: "-".join(f"{k}={v}" for k, v in settings.items()),
)
def test_every_method_and_setting_trains_on_an_accelerator(accelerator, settings, tiny_llama_dir, tmp_path, monkeypatch) -> None:
    from rlprompt.artifact import PromptFile
    from rlprompt.config import TrainConfig
    from rlprompt.train import train

    seen = _on_device(monkeypatch)
    config = TrainConfig(
        target_lm=str(tiny_llama_dir), steps=2, num_prompts=4, prompt_length=2, adapter_hidden=16, top_k=3,
        runs_dir=str(tmp_path), run_name="run", device=accelerator, **settings,
    )
    result = train(config, progress_bar=False)
    assert seen and set(seen) == {torch.device(accelerator).type}
    assert PromptFile.load(result.path).dtype == dtype_name(resolve_dtype("auto", torch.device(accelerator)))
    assert result.baselines["test"]["learned"].accuracy == result.prompt_file.accuracy["test"]


def test_resume_on_an_accelerator(accelerator, tiny_llama_dir, tmp_path) -> None:
    import json

    from rlprompt.config import TrainConfig
    from rlprompt.train import resume_config, train

    config = TrainConfig(
        target_lm=str(tiny_llama_dir), steps=2, num_prompts=4, prompt_length=2, adapter_hidden=16,
        runs_dir=str(tmp_path), run_name="run", device=accelerator, evaluate_test=False,
    )
    train(config, progress_bar=False)
    result = train(resume_config(tmp_path / "run", steps=4), progress_bar=False, resume=True)
    history = json.loads((tmp_path / "run" / "history.json").read_text(encoding="utf-8"))
    assert [row["batch"] for row in history] == [1, 2, 3, 4]
    assert result.prompt_file.budget["steps"] == 4


def test_transfer_on_an_accelerator_matches_the_cpu(accelerator, tiny_llama_dir, tiny_gpt2_dir) -> None:
    from rlprompt.tasks import load_task
    from rlprompt.transfer import transfer_matrix
    from tests.rlprompt.test_transfer import _prompt_file

    llama, gpt2 = str(tiny_llama_dir), str(tiny_gpt2_dir)
    files = [_prompt_file("the food was great", llama, "train-mean"), _prompt_file("overall it was", gpt2, "train-mean")]
    on_device = transfer_matrix(files, ["a", "b"], [llama, gpt2], split="dev", device=accelerator, dtype="fp32")
    on_cpu = transfer_matrix(files, ["a", "b"], [llama, gpt2], split="dev", device="cpu", dtype="fp32")
    one_example = 1 / len(load_task("demo").dev)
    for device_row, cpu_row in zip(on_device, on_cpu):
        for spec in (llama, gpt2):
            # fp32 on both; a near-tie of the tiny random models may flip one example.
            assert abs(device_row.accuracy[spec] - cpu_row.accuracy[spec]) <= one_example + 1e-9


def test_a_scoring_pass_at_the_bound_stays_within_the_memory_plan(accelerator, tiny_llama_dir) -> None:
    """The planned bytes per token (rlprompt.devices.scoring_bytes_per_token) cover a real pass."""
    from rlprompt.devices import scoring_bytes_per_token
    from rlprompt.models import load_model
    from rlprompt.scoring import Scorer
    from rlprompt.tasks import load_task

    if not accelerator.startswith("cuda"):
        pytest.skip("peak memory is read from the CUDA allocator")
    lm = load_model(str(tiny_llama_dir), "auto", accelerator)
    task = load_task("demo")
    sentences = [e.text for e in task.train + task.dev]
    prompts = [f"prompt number {i} was" for i in range(64)]
    scorer = Scorer(lm, task.template, task.verbalizers, prefix_cache=False)
    torch.cuda.synchronize(lm.device)
    torch.cuda.reset_peak_memory_stats(lm.device)
    before = torch.cuda.memory_allocated(lm.device)
    scorer.class_logits(prompts, sentences)
    peak = torch.cuda.max_memory_allocated(lm.device) - before
    assert 0 < peak <= scorer.max_batch_tokens * scoring_bytes_per_token(lm.model.config, lm.dtype.itemsize)
