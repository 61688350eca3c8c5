"""Host-to-device copies of token ids, masks and indices: asynchronous only where that is safe."""

from __future__ import annotations

import pytest
import torch

from rlprompt.batching import copies_asynchronously, index_tensor, left_pad, right_pad


@pytest.mark.parametrize(("device", "expected"), [("cuda", True), ("cuda:1", True), ("mps", False), ("cpu", False)])
def test_only_cuda_copies_a_temporary_asynchronously(device: str, expected: bool) -> None:
    assert copies_asynchronously(torch.device(device)) is expected


@pytest.fixture
def recorded_copies(monkeypatch) -> list[tuple[str, bool]]:
    """Every ``Tensor.to(device, non_blocking=...)`` call, recorded instead of run (no MPS/CUDA here)."""
    calls: list[tuple[str, bool]] = []

    def record(self, device, *args, non_blocking: bool = False, **kwargs):
        calls.append((torch.device(device).type, non_blocking))
        return self

    monkeypatch.setattr(torch.Tensor, "to", record)
    return calls


@pytest.mark.parametrize(("device", "non_blocking"), [("mps", False), ("cuda:0", True)])
def test_ids_masks_and_indices_reach_mps_by_a_blocking_copy(recorded_copies, device: str, non_blocking: bool) -> None:
    target = torch.device(device)
    ids, mask = left_pad([[5, 6], [7]], 0, device=target)
    right_pad([[5, 6], [7]], 0, device=target)
    index_tensor([2, 0, 1], target)
    # Two tensors per padding call, one per index tensor: every copy goes through the decision.
    assert recorded_copies == [(target.type, non_blocking)] * 5
    assert ids.tolist() == [[5, 6], [0, 7]] and mask.tolist() == [[1, 1], [0, 1]]
