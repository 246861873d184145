"""The watermark sweep's figure, from its tables alone: task accuracy and verification against
sigma, per variant (plain, obfuscated)."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

COLORS = {"plain": "tab:blue", "obfuscated": "tab:red"}


def plot_watermark(
    points: pd.DataFrame,
    summary: pd.DataFrame,
    *,
    unit: str,
    card: str,
    budget: float,
    digital: dict[str, float],
) -> Figure:
    """Top: task accuracy per chip (dots) and its mean (line), the digital accuracy (dashed) and
    digital − budget (dash-dotted). Bottom: the fraction of chips whose signature verifies and
    of chips within the task budget by the per-chip test, with 95 % Clopper-Pearson bands, the
    fraction whose observed drop is within the budget (no band: a point estimate per chip),
    and the bit error rate."""
    figure = Figure(figsize=(6.4, 7.0), layout="constrained")
    top, low = figure.subplots(2, 1, sharex=True)
    chips = points[points["card"] != "digital"]
    for group, table in summary.groupby("variant", sort=False):
        variant = str(group)
        color = COLORS.get(variant, "k")
        mine = chips[chips["variant"] == variant]
        top.plot(mine["value"], mine["accuracy"], ".", color=color, alpha=0.35)
        top.plot(table["value"], table["accuracy_mean"], "-", color=color, label=f"{variant}")
        if variant in digital:
            top.axhline(digital[variant], color=color, linestyle="--", linewidth=0.8)
            top.axhline(digital[variant] - budget, color=color, linestyle="-.", linewidth=0.8)
        n = table["chips"]
        low.plot(table["value"], table["verified"] / n, "-o", color=color, markersize=3,
                 label=f"{variant}: signature verified")  # fmt: skip
        low.fill_between(table["value"], table["verified_low"], table["verified_high"],
                         color=color, alpha=0.15)  # fmt: skip
        low.plot(table["value"], table["within_budget"] / n, "--s", color=color, markersize=3,
                 label=f"{variant}: task within {100 * budget:g} pt (95 % CP test)")  # fmt: skip
        low.plot(table["value"], table["observed_within"] / n, "-.", color=color, linewidth=0.9,
                 label=f"{variant}: observed drop ≤ {100 * budget:g} pt")  # fmt: skip
        low.fill_between(table["value"], table["within_low"], table["within_high"],
                         color=color, alpha=0.07, hatch="//")  # fmt: skip
        low.plot(table["value"], table["bit_error_rate"], ":", color=color,
                 label=f"{variant}: bit error rate")  # fmt: skip
    top.set_ylabel("task accuracy")
    top.set_ylim(0, 1.02)
    top.grid(alpha=0.3)
    title = f"dots: chips; dashed: digital; dash-dot: digital − {100 * budget:g} pt"
    top.legend(fontsize=8, title=title, title_fontsize=7)
    low.set_ylabel("fraction of chips (95 % CP band) / bit errors")
    low.set_ylim(-0.02, 1.02)
    low.set_xlabel(f"σ [{unit}] ({card} card)")
    low.grid(alpha=0.3)
    low.legend(fontsize=7)
    return figure
