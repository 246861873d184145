"""Statistics over chip instances: per-value summaries and the tolerance figure.

Spread is always over chip instances (programming events) at a fixed value of the swept field:
``std`` is the sample standard deviation (ddof=1), ``sem = std / sqrt(n)``. A single instance has
no spread (NaN).
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

GROUP = ["model", "task", "method", "card", "noise_model", "varied", "value", "value_unit"]
# Fields where a larger value is the better chip (resolution, levels): their tolerance figure is
# the smallest value that stays within budget. For every other field (noise, faults, time,
# tile size), larger is worse and the figure is the largest value within budget.
LARGER_IS_BETTER = frozenset({"dac_bits", "adc_bits", "levels", "max_bound_iterations"})


def summarize(points: pd.DataFrame) -> pd.DataFrame:
    """Mean, std, sem, min, max and n of accuracy per value (digital rows excluded)."""
    noisy = points[points["card"] != "digital"]
    grouped = noisy.groupby(GROUP, sort=True, dropna=False)
    summary = grouped["accuracy"].agg(["mean", "std", "min", "max", "count"]).reset_index()
    summary = summary.rename(columns={"count": "n"})
    summary["sem"] = summary["std"] / summary["n"].pow(0.5)
    summary["sigma"] = grouped["sigma"].first().to_numpy()
    summary["sigma_unit"] = grouped["sigma_unit"].first().to_numpy()
    return summary[[*GROUP, "sigma", "sigma_unit", "mean", "std", "sem", "min", "max", "n"]]


def digital_accuracy(points: pd.DataFrame, method: str | None = None) -> float | None:
    """The noise-free reference accuracy of ``method`` (the only one when None)."""
    rows = points[points["card"] == "digital"]
    if method is not None:
        rows = rows[rows["method"] == method]
    return float(rows["accuracy"].iloc[0]) if len(rows) else None


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """The value of the swept field at which mean accuracy leaves ``budget`` of digital.

    For noise-like fields, the largest value within budget; for resolution-like fields
    (``LARGER_IS_BETTER``), the smallest. ``bound`` is 'interpolated' (linear between the last
    grid value inside the budget and the first outside), 'beyond-grid' (every value is inside: the
    figure is at least as good as the grid's end) or 'outside-grid' (no value is inside).
    """

    field: str
    value: float
    bound: str
    budget: float
    threshold: float

    def text(self, unit: str) -> str:
        better = self.field in LARGER_IS_BETTER
        relation = {
            "interpolated": "≈",
            "beyond-grid": "≤" if better else "≥",
            "outside-grid": ">" if better else "<",
        }[self.bound]
        symbol = "σ" if self.field == "sigma" else self.field
        return (
            f"{symbol} {relation} {self.value:.4g} [{unit}] keeps mean accuracy ≥ "
            f"{self.threshold:.3f} (digital − {self.budget:.3f})"
        )


def tolerance(summary: pd.DataFrame, digital: float, budget: float = 0.01) -> Tolerance:
    """Tolerance figure of one curve (``summary`` rows of one method and card)."""
    field = str(summary["varied"].iloc[0]) if len(summary) else "sigma"
    threshold = digital - budget
    ascending = field not in LARGER_IS_BETTER
    levels = summary.sort_values("value", ascending=ascending)[["value", "mean"]].to_numpy()
    previous = None
    for value, mean in levels:
        if mean < threshold:
            if previous is None:
                return Tolerance(field, float(value), "outside-grid", budget, threshold)
            (v0, m0), (v1, m1) = previous, (value, mean)
            crossing = v0 + (m0 - threshold) * (v1 - v0) / (m0 - m1)
            return Tolerance(field, float(crossing), "interpolated", budget, threshold)
        previous = (value, mean)
    last = float(levels[-1][0]) if len(levels) else math.nan
    return Tolerance(field, last, "beyond-grid", budget, threshold)
