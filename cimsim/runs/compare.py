"""Compare training methods on the same chips: one sweep per method, a paired table, one figure.

``run_compare`` runs (or resumes) one sweep per method into ``<out>/<method>/``. Chip seeds do
not depend on the method (:func:`cimsim.runs.sweep.chip_seed`), so every method meets the very same
chip instances: the comparison is paired. ``write_comparison`` then writes, from the files alone,

* ``comparison.csv`` — mean, std and n per method and value, plus the digital accuracy;
* ``comparison.md`` and ``comparison.tex`` — the paper table: accuracy per value per method as
  mean ± std over chips, the digital column and the mean over values (± sem over chips of each
  chip's average, the paired unit), best per column in bold;
* ``comparison_pairs.csv`` and a second table in ``comparison.md`` — every method against every
  earlier one: the difference of the means over values with its combined and its paired standard
  error and a paired 95 % interval (:func:`paired_differences`);
* ``comparison.png`` / ``.pdf`` — one figure, a curve and band per method.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from cimsim.chip.cards import DeviceCard
from cimsim.core.config import config_hash
from cimsim.core.errors import CimsimError
from cimsim.core.io import write_atomic
from cimsim.core.lock import one_writer
from cimsim.core.progress import Progress
from cimsim.runs.plots import plot_sweep, save_figure
from cimsim.runs.results import (
    COMPARISON_FILE,
    CONFIG_FILE,
    POINTS_FILE,
    SWEEP_POINT,
    points_frame,
    read_points,
)
from cimsim.runs.statistics import digital_accuracy, summarize
from cimsim.runs.sweep import SweepConfig, run_sweep

STEM = "comparison"
PAIRS_FILE = f"{STEM}_pairs.csv"
PAIR_COLUMNS = (
    "method", "reference", "difference", "combined_se", "paired_se", "low", "high", "confidence",
    "chips", "digital_difference",
)  # fmt: skip


@one_writer
def run_compare(
    base: SweepConfig,
    methods: tuple[str, ...],
    out_dir: Path,
    *,
    cache_dir: Path,
    card: DeviceCard | None = None,
    progress: Progress | None = None,
    executor: Any = None,
) -> Path:
    """One sweep of ``base`` per method, into ``out_dir / method``, all on one card:
    ``base.resolve_card()``, given as ``card`` or resolved here."""
    if len(set(methods)) != len(methods) or not methods:
        raise CimsimError(f"--methods needs distinct methods, got {','.join(methods)}")
    if (out_dir / CONFIG_FILE).exists():
        raise CimsimError(f"{out_dir} holds a single run, not a comparison; choose another --out")
    card = card if card is not None else base.resolve_card()
    for method in methods:
        config = dataclasses.replace(base, method=method)
        run_sweep(
            config, out_dir / method, cache_dir=cache_dir, card=card, progress=progress,
            executor=executor,
        )  # fmt: skip
    return out_dir


def default_compare_dir(
    config: SweepConfig, card: DeviceCard, methods: tuple[str, ...], root: Path = Path("runs")
) -> Path:
    """``runs/compare-<model>-<task>-<card>-<hash>``: one folder per method inside."""
    slug = "-".join(
        re.sub(r"[^A-Za-z0-9_.-]+", "_", p)
        for p in ("compare", Path(config.model).name, Path(config.task).stem, card.name)
    )
    return root / f"{slug}-{config_hash([config.hashed(), card.to_dict(), methods])}"


def comparison_points(out_dir: Path, methods: tuple[str, ...]) -> pd.DataFrame:
    """All methods' rows, from their points files."""
    frames = []
    for method in methods:
        rows = read_points(out_dir / method / POINTS_FILE, unique=SWEEP_POINT)
        if not rows:
            raise CimsimError(f"{out_dir / method} holds no finished point")
        frames.append(points_frame(rows))
    return pd.concat(frames, ignore_index=True)


def chip_averages(points: pd.DataFrame, method: str) -> pd.Series:
    """``method``'s accuracy on each chip averaged over the values, by instance: the paired unit
    (chip k of one method met chip k of another at every value)."""
    noisy = points[(points["card"] != "digital") & (points["method"] == method)]
    return noisy.groupby("instance")["accuracy"].mean()


def comparison_table(points: pd.DataFrame) -> pd.DataFrame:
    """One row per method: digital accuracy, (mean, std) per value, and the mean over values
    with the sem over chips of each chip's average."""
    summary = summarize(points)
    rows = []
    for method, curve in summary.groupby("method", sort=False):
        digital = digital_accuracy(points, str(method))
        chips = chip_averages(points, str(method)).to_numpy(dtype=float)  # (instances,)
        row: dict[str, object] = {
            "method": method,
            "digital": digital if digital is not None else float("nan"),
        }
        for value, mean, std, n in curve[["value", "mean", "std", "n"]].to_numpy().tolist():
            row[f"{value:g}"] = (mean, std, int(n))
        row["mean"] = (float(chips.mean()), _sem(chips), len(chips))
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


def paired_differences(
    points: pd.DataFrame, methods: tuple[str, ...], confidence: float = 0.95
) -> pd.DataFrame:
    """Every method against every earlier one in ``methods`` (later − earlier), on each chip's
    average over values (the table's unit; chip k of one method met chip k of the other, as
    chip seeds do not depend on the method): the difference of the two means; its combined
    standard error, the two sems in quadrature (as if the chips were independent: the yardstick
    for "within the standard error"); its paired standard error, the sem of the per-chip
    differences; the Student-t interval at ``confidence`` on that paired difference; the number
    of chips; and the difference of the digital accuracies. With one chip the spreads are NaN."""
    chips = {m: chip_averages(points, m) for m in methods}
    digital = {m: digital_accuracy(points, m) for m in methods}
    rows = []
    for j, method in enumerate(methods):
        for reference in methods[:j]:
            both = chips[method].index.intersection(chips[reference].index)
            a = chips[method][both].to_numpy(dtype=float)  # (chips,), in the same chip order
            b = chips[reference][both].to_numpy(dtype=float)
            n, difference, paired = len(a), float((a - b).mean()), _sem(a - b)
            half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * paired if n > 1 else paired
            da, db = digital[method], digital[reference]
            rows.append(
                {
                    "method": method,
                    "reference": reference,
                    "difference": difference,
                    "combined_se": math.hypot(_sem(a), _sem(b)),
                    "paired_se": paired,
                    "low": difference - half,
                    "high": difference + half,
                    "confidence": confidence,
                    "chips": n,
                    "digital_difference": (
                        da - db if da is not None and db is not None else float("nan")
                    ),
                }
            )
    return pd.DataFrame(rows, columns=list(PAIR_COLUMNS))


def _sem(values: np.ndarray) -> float:
    """The standard error of the mean (NaN for fewer than two values)."""
    return float(values.std(ddof=1) / len(values) ** 0.5) if len(values) > 1 else float("nan")


def pairs_markdown(pairs: pd.DataFrame) -> str:
    """The paired differences as a Markdown table after a blank line, to follow the comparison
    table (empty for a single method)."""
    if pairs.empty:
        return ""
    level = f"{pairs['confidence'].iloc[0]:.0%}".replace("%", " %")
    lines = [
        "",
        "Differences of the mean over values, later method − earlier, on the same chips "
        f"({int(pairs['chips'].iloc[0])} per value): combined se treats the two methods' chips "
        f"as independent; the paired se and the {level} t-interval use each chip's difference. "
        "A trained method is one training run: how far another run of it would land is in "
        "neither se.",
        "",
        f"| difference | mean over values | combined se | paired se | {level} interval (paired) "
        "| digital |",
        "|---|---|---|---|---|---|",
    ]

    def number(x: float, sign: str = "+") -> str:  # NaN (one chip: no spread) as a dash
        return "–" if math.isnan(x) else f"{x:{sign}.3f}".replace("-", "−")

    for row in pairs.to_dict("records"):
        lines.append(
            f"| {row['method']} − {row['reference']} | {number(row['difference'])} "
            f"| {number(row['combined_se'], '')} | {number(row['paired_se'], '')} "
            f"| [{number(row['low'])}, {number(row['high'])}] "
            f"| {number(row['digital_difference'])} |"
        )
    return "\n".join(lines) + "\n"


def _best(table: pd.DataFrame, column: str) -> set[str]:
    """The methods with the column's highest mean as printed (3 decimals): ties are all best."""
    values = table[column].map(lambda cell: cell[0] if isinstance(cell, tuple) else cell)
    shown = values.astype(float).round(3)
    return {str(method) for method in shown.index[shown == shown.max()]}


def to_markdown(table: pd.DataFrame, varied: str, unit: str) -> str:
    columns = list(table.columns)
    symbol = "σ" if varied == "sigma" else varied
    header = ["method", *(c if c in ("digital", "mean") else f"{symbol} = {c}" for c in columns)]
    lines = [
        f"Accuracy, mean ± std over chip instances ({varied} in {unit}); "
        "mean: over values, ± sem over chips. Best per column in bold.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    best = {c: _best(table, c) for c in columns}
    for method, row in table.iterrows():
        cells = []
        for column in columns:
            cell = row[column]
            text = f"{cell[0]:.3f} ± {cell[1]:.3f}" if isinstance(cell, tuple) else f"{cell:.3f}"
            cells.append(f"**{text}**" if method in best[column] else text)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_latex(table: pd.DataFrame, varied: str, unit: str) -> str:
    columns = list(table.columns)
    symbol = r"\sigma" if varied == "sigma" else r"\text{" + varied.replace("_", r"\_") + "}"
    head = [c if c in ("digital", "mean") else f"${symbol} = {c}$" for c in columns]
    best = {c: _best(table, c) for c in columns}
    lines = [
        r"\begin{tabular}{l" + "c" * len(columns) + "}",
        r"\toprule",
        "method & " + " & ".join(head) + r" \\",
        r"\midrule",
    ]
    for method, row in table.iterrows():
        cells = []
        for column in columns:
            cell = row[column]
            mean, spread = (cell[0], cell[1]) if isinstance(cell, tuple) else (cell, None)
            value = rf"\mathbf{{{mean:.3f}}}" if method in best[column] else f"{mean:.3f}"
            cells.append(f"${value}$" if spread is None else f"${value} \\pm {spread:.3f}$")
        lines.append(f"{method} & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", f"% {varied} in {unit}; ± std over chips"]
    return "\n".join(lines) + "\n"


def write_comparison(out_dir: Path, methods: tuple[str, ...], budget: float = 0.01) -> list[Path]:
    """Write the comparison table (CSV, Markdown, LaTeX) and figure; returns their paths."""
    points = comparison_points(out_dir, methods)
    table = comparison_table(points).loc[list(methods)]  # rows in the order asked for
    varied = str(points["varied"].iloc[0])
    units = points.loc[points["card"] != "digital", "value_unit"]
    unit = str(units.iloc[0]) if len(units) else ""
    flat = summarize(points)
    write_atomic(out_dir / COMPARISON_FILE, flat.to_csv(index=False))
    pairs = paired_differences(points, methods)
    write_atomic(out_dir / PAIRS_FILE, pairs.to_csv(index=False))
    write_atomic(out_dir / f"{STEM}.md", to_markdown(table, varied, unit) + pairs_markdown(pairs))
    write_atomic(out_dir / f"{STEM}.tex", to_latex(table, varied, unit))
    figure = plot_sweep(points, budget=budget, title="methods on the same chip instances")
    tables = [out_dir / f"{STEM}.{ext}" for ext in ("csv", "md", "tex")] + [out_dir / PAIRS_FILE]
    return tables + save_figure(figure, out_dir / STEM)
