"""Statistics over chip instances: per-level summaries and the noise tolerance.

Spread is always over chip instances (programming events) at a fixed noise level: ``std`` is the
sample standard deviation (ddof=1), ``sem = std / sqrt(n)``. A single instance has no spread (NaN).
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

GROUP = ["model", "task", "method", "noise_model", "sigma", "sigma_unit"]


def summarize(points: pd.DataFrame) -> pd.DataFrame:
    """Mean, std, sem, min, max and n of accuracy per noise level (digital rows excluded)."""
    noisy = points[points["noise_model"] != "digital"]
    grouped = noisy.groupby(GROUP, sort=True, dropna=False)["accuracy"]
    summary = grouped.agg(["mean", "std", "min", "max", "count"]).reset_index()
    summary = summary.rename(columns={"count": "n"})
    summary["sem"] = summary["std"] / summary["n"].pow(0.5)
    return summary[[*GROUP, "mean", "std", "sem", "min", "max", "n"]]


def digital_accuracy(points: pd.DataFrame, method: str | None = None) -> float | None:
    """The noise-free reference accuracy of ``method`` (the only one when None)."""
    rows = points[points["noise_model"] == "digital"]
    if method is not None:
        rows = rows[rows["method"] == method]
    return float(rows["accuracy"].iloc[0]) if len(rows) else None


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """The largest sigma whose mean accuracy stays within ``budget`` of the digital accuracy.

    ``bound`` is 'interpolated' (linear between the last level inside the budget and the first
    outside), 'above-grid' (every level is inside: the tolerance is at least ``sigma``) or
    'below-grid' (even the smallest level is outside: the tolerance is below ``sigma``).
    """

    sigma: float
    bound: str
    budget: float
    threshold: float

    def text(self, unit: str) -> str:
        relation = {"interpolated": "≈", "above-grid": "≥", "below-grid": "<"}[self.bound]
        return (
            f"σ {relation} {self.sigma:.4g} [{unit}] keeps mean accuracy ≥ {self.threshold:.3f} "
            f"(digital − {self.budget:.3f})"
        )


def tolerance(summary: pd.DataFrame, digital: float, budget: float = 0.01) -> Tolerance:
    """Noise tolerance of one curve (``summary`` rows of one method and noise model)."""
    threshold = digital - budget
    levels = summary.sort_values("sigma")[["sigma", "mean"]].to_numpy()
    previous = None
    for sigma, mean in levels:
        if mean < threshold:
            if previous is None:
                return Tolerance(float(sigma), "below-grid", budget, threshold)
            (s0, m0), (s1, m1) = previous, (sigma, mean)
            crossing = s0 + (m0 - threshold) * (s1 - s0) / (m0 - m1)
            return Tolerance(float(crossing), "interpolated", budget, threshold)
        previous = (sigma, mean)
    last = float(levels[-1][0]) if len(levels) else math.nan
    return Tolerance(last, "above-grid", budget, threshold)
