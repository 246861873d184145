"""Tables and figures of a continual run, computed from its rows alone.

* ``compute_metrics(points) -> DataFrame``: AP and FT per (method, order, chip), digital rows
  included (``card = "digital"``, ``sigma`` NaN).
* ``summarize_metrics(metrics) -> DataFrame``: mean, std and n of AP and FT per (method, card,
  sigma), the spread being over chip instances and task orders together.
* ``plot_matrices(points) -> Figure``: the digital accuracy matrix of every method (mean over
  orders, by position in the order), one heatmap per method.
* ``plot_ap_ft(summary) -> Figure``: AP and FT against sigma, a curve and band per method, with the
  digital value drawn at its own marker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from cimsim.chip.cards import DeviceCard
from cimsim.continual.config import CONFIG_FILE, POINTS_FILE, SCHEMA, ContinualConfig
from cimsim.continual.metrics import average_performance, forgetting
from cimsim.core.config import from_dict
from cimsim.core.errors import CimsimError
from cimsim.core.io import read_json, write_atomic
from cimsim.runs.plots import save_figure
from cimsim.runs.results import CONTINUAL_POINT, read_points

COLUMNS = (
    "method", "objective", "order", "sequence", "stage", "trained", "task", "position", "card",
    "noise_model", "sigma", "sigma_unit", "instance", "chip_seed", "accuracy", "n_correct",
    "n_examples",
)  # fmt: skip
_INTEGERS = {"order", "stage", "position", "instance", "chip_seed", "n_correct", "n_examples"}
_CHIP = ["method", "order", "card", "sigma", "instance"]


def points_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The tidy table of result rows (60-bit chip seeds kept exact as Int64)."""
    return pd.DataFrame(
        {
            c: pd.array([r.get(c) for r in rows], dtype="Int64" if c in _INTEGERS else None)
            for c in COLUMNS
        }
    )


def accuracy_matrix(rows: pd.DataFrame, n_tasks: int) -> np.ndarray:
    """``R[stage, position]`` of one (method, order, chip); NaN where nothing was measured."""
    matrix = np.full((n_tasks, n_tasks), np.nan)
    for stage, position, accuracy in rows[["stage", "position", "accuracy"]].itertuples(False):
        matrix[int(stage), int(position)] = accuracy
    return matrix


def compute_metrics(points: pd.DataFrame) -> pd.DataFrame:
    """AP and FT per (method, order, card, sigma, instance)."""
    n_tasks = int(points["position"].max()) + 1
    records = []
    for keys, group in points.groupby(_CHIP, dropna=False, sort=True):
        matrix = accuracy_matrix(group, n_tasks)
        if np.isnan(matrix[-1]).any():  # the run has not reached the last stage yet
            continue
        records.append(
            {
                **dict(zip(_CHIP, keys, strict=True)),
                "AP": average_performance(matrix),
                "FT": forgetting(matrix) if np.isfinite(np.diag(matrix)[:-1]).all() else np.nan,
            }
        )
    return pd.DataFrame(records, columns=[*_CHIP, "AP", "FT"])


def summarize_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and n of AP and FT over chips and orders, per (method, card, sigma)."""
    grouped = metrics.groupby(["method", "card", "sigma"], dropna=False, sort=True)
    summary = grouped.agg(
        AP_mean=("AP", "mean"),
        AP_std=("AP", "std"),
        FT_mean=("FT", "mean"),
        FT_std=("FT", "std"),
        n=("AP", "size"),
    )
    return summary.reset_index()


def plot_matrices(points: pd.DataFrame, *, title: str | None = None) -> Figure:
    """One heatmap per method: digital R[i, j] averaged over task orders (by position)."""
    digital = points[points["card"] == "digital"]
    methods = list(dict.fromkeys(digital["method"]))
    n_tasks = int(points["position"].max()) + 1
    figure = Figure(figsize=(3.2 * len(methods) + 0.8, 3.4), layout="constrained")
    axes = figure.subplots(1, len(methods), squeeze=False)[0]
    image = None
    for ax, method in zip(axes, methods, strict=True):
        group = digital[digital["method"] == method]
        matrices = [accuracy_matrix(g, n_tasks) for _, g in group.groupby("order")]
        stacked = np.stack(matrices)  # (orders, T, T); NaN where not measured
        counts = np.isfinite(stacked).sum(axis=0)
        mean = np.where(counts > 0, np.nansum(stacked, axis=0) / np.maximum(counts, 1), np.nan)
        image = ax.imshow(mean, vmin=0, vmax=1, cmap="viridis")
        for (i, j), value in np.ndenumerate(mean):
            if np.isfinite(value):
                colour = "black" if value > 0.6 else "white"
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", color=colour, fontsize=8)
        ax.set_title(f"{method} ({len(matrices)} order{'s' * (len(matrices) > 1)})", fontsize=9)
        ax.set_xlabel("task position j (evaluated)")
        ax.set_ylabel("after training task i")
        ax.set_xticks(range(n_tasks))
        ax.set_yticks(range(n_tasks))
    if image is not None:
        figure.colorbar(image, ax=list(axes), label="accuracy (digital)", shrink=0.8)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def plot_ap_ft(
    summary: pd.DataFrame, *, sigma_label: str, axes: tuple[Axes, Axes] | None = None
) -> Figure:
    """AP and FT (mean ± std over chips and orders) against sigma, digital at its own marker."""
    if axes is None:
        figure = Figure(figsize=(9, 3.6), layout="constrained")
        ax_ap, ax_ft = figure.subplots(1, 2)
    else:
        ax_ap, ax_ft = axes
        figure = ax_ap.get_figure()  # type: ignore[assignment]
    methods = list(dict.fromkeys(summary["method"]))
    # Methods share x values: shift each a little so that error bars do not hide each other.
    step = 0.012 * (float(summary["sigma"].max()) if summary["sigma"].notna().any() else 1.0)
    for index, method in enumerate(methods):
        group = summary[summary["method"] == method]
        colour, shift = f"C{index}", (index - (len(methods) - 1) / 2) * step
        noisy = group[group["card"] != "digital"].sort_values("sigma")
        digital = group[group["card"] == "digital"]
        for ax, metric in ((ax_ap, "AP"), (ax_ft, "FT")):
            mean, std = noisy[f"{metric}_mean"], noisy[f"{metric}_std"].fillna(0)
            x = noisy["sigma"] + shift
            if mean.notna().any():
                ax.errorbar(x, mean, yerr=std, color=colour, marker="o", capsize=3, label=method)
                ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.15)
            if len(digital) and np.isfinite(digital[f"{metric}_mean"].iloc[0]):
                ax.errorbar(
                    [shift],
                    digital[f"{metric}_mean"],
                    yerr=digital[f"{metric}_std"].fillna(0),
                    color=colour,
                    marker="D",
                    capsize=3,
                    linestyle="none",
                    label=None if mean.notna().any() else method,
                )
    ax_ap.set_ylabel("AP: mean final accuracy")
    ax_ft.set_ylabel("FT: forgetting (best earlier − final)")
    for ax in (ax_ap, ax_ft):
        ax.set_xlabel(sigma_label)
        ax.grid(alpha=0.3)
    ax_ap.legend(title="method (◆ = digital, at 0)", fontsize=8)
    return figure


def write_outputs(
    out_dir: Path, rows: list[dict[str, Any]], config: ContinualConfig, card: DeviceCard
) -> list[Path]:
    """results.csv, metrics.csv, summary.csv and both figures, from ``rows``; ``card`` is the
    evaluation chips' card (``config.resolve_card()``), which names the sigma axis."""
    points = points_table(rows)
    write_atomic(out_dir / "results.csv", points.to_csv(index=False))
    metrics = compute_metrics(points)
    summary = summarize_metrics(metrics)
    write_atomic(out_dir / "metrics.csv", metrics.to_csv(index=False))
    write_atomic(out_dir / "summary.csv", summary.to_csv(index=False))
    sigma_label = f"σ, {card.noise.name} programming noise [{card.noise.sigma_unit}]"
    sequence = " > ".join(Path(t).stem for t in config.tasks)
    files = [out_dir / "results.csv", out_dir / "metrics.csv", out_dir / "summary.csv"]
    files += save_figure(
        plot_matrices(points, title=f"{config.model}: {sequence} (and other orders), digital"),
        out_dir / "matrices",
    )
    figure = plot_ap_ft(summary, sigma_label=sigma_label)
    figure.suptitle(
        f"{config.model}, {len(config.tasks)} tasks, objective {config.objective}: mean ± std "
        "over chips and orders",
        fontsize=10,
    )
    files += save_figure(figure, out_dir / "ap_ft")
    return files


def redraw(out_dir: Path) -> list[Path]:
    """Rewrite a continual results folder's tables and figures from its files alone."""
    record = read_json(out_dir / CONFIG_FILE)
    if record.get("schema") != SCHEMA or not isinstance(record.get("config"), dict):
        raise CimsimError(f"{out_dir / CONFIG_FILE} is not a {SCHEMA} record")
    try:
        config = from_dict(ContinualConfig, record["config"])
    except (TypeError, ValueError) as err:
        raise CimsimError(f"{out_dir / CONFIG_FILE} is damaged: {err}") from None
    rows = read_points(out_dir / POINTS_FILE, unique=CONTINUAL_POINT)
    if not rows:
        raise CimsimError(f"{out_dir / POINTS_FILE} holds no finished evaluation yet")
    return write_outputs(out_dir, rows, config, config.resolve_card())
