"""Figures drawn from result tables alone: ``plot_*(frame, ax=None) -> Figure``.

No global pyplot state: figures are built on ``matplotlib.figure.Figure`` so library calls never
open windows or leak figures. Every figure names the noise model and sigma's unit on its x axis.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from cimsim.analysis import digital_accuracy, summarize, tolerance


def plot_sweep(
    points: pd.DataFrame,
    *,
    ax: Axes | None = None,
    sigma_label: str | None = None,
    chance: float | None = None,
    budget: float | None = 0.01,
    title: str | None = None,
) -> Figure:
    """Accuracy against sigma, mean ± std over chip instances, one curve per method.

    The digital (noise-free) accuracy of each method is a dashed line; ``chance`` a dotted one;
    with a ``budget`` the tolerance (largest sigma within ``budget`` of digital) is marked.
    """
    if ax is None:
        figure = Figure(figsize=(6.4, 4.8), layout="constrained")
        ax = figure.add_subplot()
    else:
        figure = ax.get_figure()  # type: ignore[assignment]
    summary = summarize(points)
    if summary.empty:
        raise ValueError("no noisy points to plot")
    for (method, _), curve in summary.groupby(["method", "noise_model"], sort=False):
        curve = curve.sort_values("sigma")
        n = int(curve["n"].min())
        spread = curve["std"].fillna(0.0)
        line = ax.errorbar(
            curve["sigma"],
            curve["mean"],
            yerr=spread,
            marker="o",
            markersize=4,
            capsize=3,
            label=f"{method}: mean ± std over {n} chip instance{'s' if n != 1 else ''}",
        )
        colour = line[0].get_color()
        ax.fill_between(
            curve["sigma"], curve["mean"] - spread, curve["mean"] + spread, color=colour, alpha=0.15
        )
        digital = digital_accuracy(points, str(method))
        if digital is not None:
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
                    ax.axvline(
                        tol.sigma,
                        color=colour,
                        linestyle=":",
                        linewidth=1,
                        label=f"{method}: tolerance σ ≈ {tol.sigma:.3g} "
                        f"(digital − {budget * 100:g} pt)",
                    )
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label=f"chance {chance:.2f}")
    unit = summary["sigma_unit"].iloc[0]
    model_name = summary["noise_model"].iloc[0]
    ax.set_xlabel(sigma_label or f"σ [{unit}] ({model_name} noise model)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
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
