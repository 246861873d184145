"""Figures drawn from result tables alone: ``plot_*(frame, ax=None) -> Figure``.

No global pyplot state: figures are built on ``matplotlib.figure.Figure`` so library calls never
open windows or leak figures. Every figure names the swept field, its unit and the device card on
its x axis.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cimsim.runs.statistics import digital_accuracy, summarize, tolerance


def plot_sweep(
    points: pd.DataFrame,
    *,
    ax: Axes | None = None,
    x_label: str | None = None,
    chance: float | None = None,
    budget: float | None = 0.01,
    title: str | None = None,
) -> Figure:
    """Accuracy against the swept value, mean ± std over chip instances, one curve per method
    and card.

    The digital (noise-free) accuracy of each method is a dashed line; ``chance`` a dotted one;
    with a ``budget`` the tolerance (where mean accuracy leaves ``budget`` of digital) is marked.
    Times spanning more than two decades are drawn on a log axis.
    """
    if ax is None:
        figure = Figure(figsize=(6.4, 4.8), layout="constrained")
        ax = figure.add_subplot()
    else:
        figure = ax.get_figure()  # type: ignore[assignment]
    summary = summarize(points)
    if summary.empty:
        raise ValueError("no noisy points to plot")
    for (method, card), curve in summary.groupby(["method", "card"], sort=False):
        curve = curve.sort_values("value")
        n = int(curve["n"].min())
        spread = curve["std"].fillna(0.0)
        name = method if summary["card"].nunique() == 1 else f"{method}, {card}"
        line = ax.errorbar(
            curve["value"],
            curve["mean"],
            yerr=spread,
            marker="o",
            markersize=4,
            capsize=3,
            label=f"{name}: mean ± std over {n} chip instance{'s' if n != 1 else ''}",
        )
        colour = line[0].get_color()
        ax.fill_between(
            curve["value"], curve["mean"] - spread, curve["mean"] + spread, color=colour, alpha=0.15
        )
        digital = digital_accuracy(points, str(method))
        if digital is None:
            continue
        ax.axhline(
            digital,
            color=colour,
            linestyle="--",
            linewidth=1,
            label=f"{method}: digital (noise-free) {digital:.3f}",
        )
        if budget is not None:
            tol = tolerance(curve, digital, budget)
            if tol.bound == "interpolated":
                symbol = "σ" if tol.field == "sigma" else tol.field
                ax.axvline(
                    tol.value,
                    color=colour,
                    linestyle=":",
                    linewidth=1,
                    label=f"{name}: tolerance {symbol} ≈ {tol.value:.3g} "
                    f"(digital − {budget * 100:g} pt)",
                )
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label=f"chance {chance:.2f}")
    varied, unit = summary["varied"].iloc[0], summary["value_unit"].iloc[0]
    values = summary["value"]
    if str(varied).endswith("_s") and values.min() > 0 and values.max() / values.min() > 100:
        ax.set_xscale("log")
    elif (values == values.round()).all() and values.max() >= 2:  # bits, levels, rows: no 4.5
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(x_label or f"{varied} [{unit}] ({summary['card'].iloc[0]} card)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    # Below the axes, so it never hides a curve whatever its shape.
    figure.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    return figure


def save_figure(figure: Figure, stem: Path) -> list[Path]:
    """Write ``stem.png`` (150 dpi) and ``stem.pdf``; returns the paths."""
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    figure.savefig(png, dpi=150)
    # No creation date: the same data redraws to the same bytes, so figures/ diffs stay quiet.
    figure.savefig(pdf, metadata={"CreationDate": None})
    return [png, pdf]


def plot_training(log: pd.DataFrame, *, ax: Axes | None = None, title: str | None = None) -> Figure:
    """Loss per training step: the total, and the ideal / noisy parts where the method has them."""
    if ax is None:
        figure = Figure(figsize=(6.4, 4.0), layout="constrained")
        ax = figure.add_subplot()
    else:
        figure = ax.get_figure()  # type: ignore[assignment]
    labels = {"loss": "total", "ideal": "ideal base", "noisy": "noisy base (fresh chip per step)"}
    for column, label in labels.items():
        if column in log and log[column].notna().any():
            ax.plot(log["step"], log[column], label=label, linewidth=1)
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (cross-entropy; the total adds the regulariser)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return figure
