"""Accuracy through ``evaluate`` and the plain-text result table."""

from __future__ import annotations

import math

import pytest

from rlprompt.evaluation import format_table
from rlprompt.metrics import accuracy


def test_accuracy_and_per_class() -> None:
    result = accuracy([0, 1, 1, 0, 2], [0, 1, 0, 0, 1], num_classes=3)
    assert result["accuracy"] == pytest.approx(3 / 5)
    assert result["per_class_accuracy"][:2] == pytest.approx([2 / 3, 1 / 2])
    assert len(result["per_class_accuracy"]) == 3
    assert math.isnan(result["per_class_accuracy"][2])  # no gold example of class 2


def test_accuracy_perfect_and_zero() -> None:
    assert accuracy([1, 0, 1], [1, 0, 1], 2) == {"accuracy": 1.0, "per_class_accuracy": [1.0, 1.0]}
    assert accuracy([0, 1], [1, 0], 2) == {"accuracy": 0.0, "per_class_accuracy": [0.0, 0.0]}


def test_accuracy_class_without_examples_is_nan() -> None:
    result = accuracy([1, 1, 0, 1], [1, 1, 1, 1], 2)
    assert result["accuracy"] == 0.75
    assert math.isnan(result["per_class_accuracy"][0])
    assert result["per_class_accuracy"][1] == 0.75


def test_accuracy_accepts_tuples_and_is_repeatable() -> None:
    first = accuracy((0, 0, 1, 1), (0, 1, 1, 1), 2)
    second = accuracy([0, 0, 1, 1], [0, 1, 1, 1], 2)
    assert first == second == {"accuracy": 0.75, "per_class_accuracy": [1.0, 2 / 3]}


def test_format_table_exact() -> None:
    table = format_table(
        ["prompt", "text", "dev acc", "test acc"],
        [["empty", "''", 0.5, 0.4875], ["manual", "'It was'", 1.0, None], ["learned", "'Great movie'", 0.03125, 7]],
    )
    assert table == (
        "prompt   text           dev acc  test acc\n"
        "-------  -------------  -------  --------\n"
        "empty    ''             50.0%    48.8%\n"
        "manual   'It was'       100.0%   -\n"
        "learned  'Great movie'  3.1%     7"
    )


def test_format_table_no_rows() -> None:
    assert format_table(["a", "long header"], []) == "a  long header\n-  -----------"


def test_format_table_trailing_spaces_stripped() -> None:
    lines = format_table(["x", "y"], [["wide value", ""]]).splitlines()
    assert lines == ["x           y", "----------  -", "wide value"]
    assert all(line == line.rstrip() for line in lines)
