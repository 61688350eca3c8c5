"""Model specs: aliases, dtypes, bad specs."""

from __future__ import annotations

import pytest
import torch

from rlprompt.devices import cpu_has_fast_bf16, resolve_dtype
from rlprompt.errors import RLPromptError
from rlprompt.models import load_model, model_kind


def test_resolve_dtype(monkeypatch) -> None:
    monkeypatch.delenv("RLPROMPT_DTYPE", raising=False)
    assert resolve_dtype("fp32") is torch.float32
    assert resolve_dtype("bf16") is torch.bfloat16
    assert resolve_dtype("auto") is (torch.bfloat16 if cpu_has_fast_bf16() else torch.float32)
    with pytest.raises(RLPromptError, match="unknown dtype 'fp16'; valid: auto, fp32, bf16"):
        resolve_dtype("fp16")


def test_unknown_spec_names_the_aliases_without_waiting_for_the_hub() -> None:
    with pytest.raises(RLPromptError, match=r"unknown model 'no-such-model'.*smollm2-135m, gemma3-270m"):
        load_model("no-such-model")


@pytest.mark.parametrize("spec", ["./missing-folder", "a/b/c", "missing.gguf"])
def test_missing_paths_are_clear_errors(spec: str) -> None:
    with pytest.raises(RLPromptError, match=spec.replace(".", r"\.")):
        load_model(spec)


def test_folder_without_config_is_an_error(tmp_path) -> None:
    with pytest.raises(RLPromptError, match="has no config.json"):
        load_model(str(tmp_path))


def test_model_kind(tiny_llama, tiny_bert) -> None:
    assert model_kind(tiny_llama.model.config) == "causal"
    assert model_kind(tiny_bert.model.config) == "masked"


def test_folder_loads_frozen_in_the_requested_dtype(tiny_llama_dir) -> None:
    lm = load_model(str(tiny_llama_dir), torch.bfloat16)
    assert lm.kind == "causal" and lm.model.dtype is torch.bfloat16
    assert not lm.model.training and not any(p.requires_grad for p in lm.model.parameters())
