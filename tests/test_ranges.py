"""The range syntax of swept axes (``--noise``)."""

from __future__ import annotations

import pytest

from cimsim.core.errors import CimsimError
from cimsim.core.ranges import parse_range


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.01..0.1", [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1]),
        ("0..1:5", [0.0, 0.25, 0.5, 0.75, 1.0]),
        ("0..0.3/0.1", [0.0, 0.1, 0.2, 0.3]),
        ("0..0.25/0.1", [0.0, 0.1, 0.2]),
        ("0.05", [0.05]),
        ("0, 0.02 ,0.1", [0.0, 0.02, 0.1]),
        (" 0.02..0.04:3 ", [0.02, 0.03, 0.04]),
        ("1e-2..3e-2:3", [0.01, 0.02, 0.03]),
    ],
)
def test_valid_ranges(text: str, expected: list[float]) -> None:
    assert parse_range(text) == pytest.approx(expected, abs=1e-12)


def test_grid_values_are_rounded_to_print_cleanly() -> None:
    assert parse_range("0..0.3/0.1")[3] == 0.3
    assert parse_range("0.01..0.1")[2] == 0.03


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("0.1..0.01", "runs backwards"),
        ("0.1..0.1", "is empty"),
        ("-0.1", "non-negative"),
        ("0.01..-0.1", "non-negative"),
        ("nan", "not a finite number"),
        ("0..inf", "not a finite number"),
        ("0.01...0.1", "not a number"),
        ("a..b", "not a number"),
        ("0.01..0.1:1", "at least 2 points"),
        ("0.01..0.1:x", "must be an integer"),
        ("0.01..0.1/0", "must be positive"),
        ("0.01..0.1/-1", "non-negative"),
        ("0.1,0.1", "repeats"),
        ("0.1,,0.2", "not a number"),
        ("1e308", "too large"),  # was: computed, then no figure (matplotlib's ticks overflow)
        ("0..1e16:3", "too large"),
    ],
)
def test_invalid_ranges_name_the_input(text: str, message: str) -> None:
    with pytest.raises(CimsimError, match=message) as caught:
        parse_range(text)
    assert "\n" not in str(caught.value)
