"""The benchmark's own statistics (the timed runs need the real model and the shared data)."""

from __future__ import annotations

import pytest

from experiments.bench_scoring import spearman


def test_spearman_of_ranks_with_ties() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # Ranks [0, 1.5, 1.5, 3] against [0, 1, 2, 3]: Pearson of the ranks.
    assert spearman([5, 7, 7, 9], [1, 2, 3, 4]) == pytest.approx(0.9486833, abs=1e-6)
