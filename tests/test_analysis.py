"""Spread over chip instances and the tolerance figure, against hand-computed values."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from cimsim.runs.statistics import digital_accuracy, summarize, tolerance


def _points(
    curve: dict[float, list[float]], digital: float = 0.9, field: str = "sigma"
) -> pd.DataFrame:
    common = {"model": "m", "task": "t", "method": "lora", "varied": field}
    rows = [
        {
            **common,
            "card": "digital",
            "noise_model": "digital",
            "value": None,
            "value_unit": "",
            "sigma": None,
            "sigma_unit": "",
            "instance": -1,
            "accuracy": digital,
        }
    ]
    for value, accuracies in curve.items():
        rows += [
            {
                **common,
                "card": "c",
                "noise_model": "channel",
                "value": value,
                "value_unit": "u",
                "sigma": value,
                "sigma_unit": "u",
                "instance": i,
                "accuracy": a,
            }
            for i, a in enumerate(accuracies)
        ]
    return pd.DataFrame(rows)


def test_summary_is_mean_and_sample_std_over_instances() -> None:
    summary = summarize(_points({0.01: [0.9, 0.8, 0.7], 0.02: [0.5]}))
    first = summary[summary["value"] == 0.01].iloc[0]
    assert first["mean"] == pytest.approx(0.8)
    assert first["std"] == pytest.approx(0.1)  # ddof = 1
    assert first["sem"] == pytest.approx(0.1 / math.sqrt(3))
    assert (first["min"], first["max"], first["n"]) == (0.7, 0.9, 3)
    assert math.isnan(summary[summary["value"] == 0.02].iloc[0]["std"])
    assert len(summary) == 2  # the digital row is not a noise level


def test_tolerance_interpolates_the_crossing() -> None:
    points = _points({0.01: [0.9], 0.02: [0.88], 0.03: [0.80], 0.04: [0.5]})
    digital = digital_accuracy(points)
    assert digital == 0.9
    # Threshold 0.9 - 0.02 = 0.88 is met at 0.02 (0.88) and missed at 0.03 (0.80): exactly 0.02.
    tol = tolerance(summarize(points), digital, budget=0.02)
    assert (tol.bound, tol.value) == ("interpolated", pytest.approx(0.02))
    # Threshold 0.85: between 0.02 (0.88) and 0.03 (0.80), at 0.02 + 0.03/0.08 * 0.01.
    tol = tolerance(summarize(points), digital, budget=0.05)
    assert tol.value == pytest.approx(0.02 + 0.375 * 0.01)
    assert tol.threshold == pytest.approx(0.85)


def test_tolerance_beyond_either_end_of_the_grid() -> None:
    points = _points({0.01: [0.9], 0.02: [0.9]})
    above = tolerance(summarize(points), 0.9, budget=0.01)
    assert (above.bound, above.value) == ("beyond-grid", 0.02)
    assert "≥ 0.02" in above.text("u")
    below = tolerance(summarize(_points({0.01: [0.5], 0.02: [0.4]})), 0.9, budget=0.01)
    assert (below.bound, below.value) == ("outside-grid", 0.01)
    assert "< 0.01" in below.text("u")


def test_resolution_fields_report_the_smallest_value_within_budget() -> None:
    # More ADC bits is better: the figure is the fewest bits that keep the budget.
    points = _points({4: [0.5], 5: [0.8], 6: [0.89], 8: [0.9]}, field="adc_bits")
    tol = tolerance(summarize(points), 0.9, budget=0.02)
    assert tol.bound == "interpolated"
    assert tol.value == pytest.approx(6 - (0.89 - 0.88) / (0.89 - 0.8))
    assert tol.text("bits").startswith("adc_bits ≈ 5.889 [bits]")
