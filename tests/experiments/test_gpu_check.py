"""``make test-gpu`` (experiments.gpu_check): one line and exit 0 without a GPU; the suite's counts read off pytest's summary."""

from __future__ import annotations

import torch

from experiments import gpu_check


def test_without_a_gpu_it_prints_one_line_and_exits_0(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setattr(gpu_check, "gpu_present", lambda: None)
    assert gpu_check.main(["--out", str(tmp_path / "out.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("make test-gpu: no GPU on this machine (torch ")
    assert lines[0].endswith("sees no CUDA or MPS device); nothing was run")
    assert not (tmp_path / "out.json").exists()


def test_gpu_present_is_what_auto_resolves_to_unless_the_cpu(monkeypatch) -> None:
    import rlprompt.devices

    monkeypatch.setattr(rlprompt.devices, "resolve_device", lambda name="auto": torch.device("cpu"))
    assert gpu_check.gpu_present() is None
    monkeypatch.setattr(rlprompt.devices, "resolve_device", lambda name="auto": torch.device("cuda", 0))
    assert gpu_check.gpu_present() == "cuda:0"
