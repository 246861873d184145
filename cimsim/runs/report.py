"""Turn a run folder's files into its summary table and figure, from the files alone.

Used at the end of a sweep and by ``cimsim plot RUN_DIR``; needs no model, no task data and no
network: ``config.json`` and ``points.jsonl`` are enough.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from cimsim.core.errors import CimsimError
from cimsim.core.io import read_json, write_atomic
from cimsim.runs.plots import plot_sweep, save_figure
from cimsim.runs.results import (
    COMPARISON_FILE,
    CONFIG_FILE,
    POINTS_FILE,
    RESULTS_CSV,
    SCHEMA_VERSION,
    SUMMARY_CSV,
    SWEEP_POINT,
    points_frame,
    read_points,
)
from cimsim.runs.signoff import Rule, YieldPoint, yield_point
from cimsim.runs.statistics import Tolerance, digital_accuracy, summarize, tolerance

FIGURE_STEM = "sweep"
RECORD_PARTS = ("axis", "card", "model", "task")
"""What a sweep's config.json must hold for its figure: the axis's field and unit, the card, the
model's and the task's names (and the task's labels, for the chance line)."""


@dataclasses.dataclass(frozen=True)
class Report:
    points: pd.DataFrame
    summary: pd.DataFrame
    digital: float | None
    tolerance: Tolerance | None
    figures: list[Path]
    varied: str
    unit: str
    yields: list[YieldPoint] = dataclasses.field(default_factory=list)
    """Per value: chips that pass the budget under ``rule`` and the yield's interval (empty for
    folders whose rows do not pair chips with digital)."""
    rule: Rule | None = None


CONFIDENCE = 0.95
"""The confidence of the sweep's per-chip pass rule and yield intervals."""


def sweep_yields(
    points: pd.DataFrame, budget: float, confidence: float = CONFIDENCE
) -> tuple[Rule | None, list[YieldPoint]]:
    """Per value, how many chips pass ``budget`` (:mod:`cimsim.runs.signoff`'s paired rule on
    the sweep's test examples) with the yield's Clopper-Pearson interval; one method only."""
    noisy = points[points["card"] != "digital"]
    if noisy.empty or "broken" not in noisy or noisy["broken"].isna().any():
        return None, []
    if noisy["method"].nunique() != 1:
        return None, []
    rule = Rule.of(int(noisy["n_examples"].iloc[0]), budget, confidence)
    yields = []
    for value in sorted(noisy["value"].astype(float).unique()):
        chips = noisy[noisy["value"] == value]
        passes = int((chips["broken"] <= rule.max_broken).sum())
        yields.append(yield_point(float(value), passes, len(chips), confidence))
    return rule, yields


def x_label(axis: dict, card: str) -> str:
    """The x-axis text: the swept field, its unit, what produced it."""
    if axis.get("varied", "sigma") == "sigma":
        model = axis.get("noise_model")
        return f"σ, programming noise [{axis.get('unit', '')}] ({card} card, {model} model)"
    return f"{axis['varied']} [{axis.get('unit', '')}] ({card} card)"


def write_report(run_dir: Path, *, budget: float = 0.01) -> Report:
    """Rewrite ``results.csv``, ``summary.csv`` and ``sweep.png``/``.pdf`` of ``run_dir``."""
    if not run_dir.is_dir():
        raise CimsimError(f"{run_dir} is not a results folder")
    if not (run_dir / CONFIG_FILE).is_file() and (run_dir / COMPARISON_FILE).is_file():
        raise CimsimError(
            f"{run_dir} is a comparison: plot each method's folder in it, or run the "
            "comparison again to redraw its table and figure"
        )
    record = read_json(run_dir / CONFIG_FILE)
    schema = str(record.get("schema", ""))
    if not schema.startswith(SCHEMA_VERSION.split("/")[0] + "/"):
        raise CimsimError(f"{run_dir} holds a '{schema}' run, not a sweep")
    missing = [key for key in RECORD_PARTS if not isinstance(record.get(key), dict)]
    if missing:  # a damaged record would label the figure with empty units and names
        raise CimsimError(
            f"{run_dir / CONFIG_FILE} lacks the sweep's {', '.join(missing)} record: "
            "it was damaged or not written by cimsim"
        )
    rows = read_points(run_dir / POINTS_FILE, unique=SWEEP_POINT)
    if not rows:
        raise CimsimError(f"{run_dir / POINTS_FILE} holds no finished point yet")
    try:
        points = points_frame(rows)
        summary = summarize(points)
    except (KeyError, TypeError, ValueError) as err:
        raise CimsimError(f"{run_dir / POINTS_FILE} has rows of an unknown shape ({err})") from None
    write_atomic(run_dir / RESULTS_CSV, points.to_csv(index=False))
    write_atomic(run_dir / SUMMARY_CSV, summary.to_csv(index=False))
    digital = digital_accuracy(points)
    axis = record["axis"]
    card = str(record["card"].get("name", ""))
    tol = tolerance(summary, digital, budget) if digital is not None and len(summary) else None
    figures: list[Path] = []
    if len(summary):
        task = record["task"]
        labels = task.get("label_names") or []
        model = record["model"].get("name", "")
        figure = plot_sweep(
            points,
            x_label=x_label(axis, card),
            chance=1 / len(labels) if labels else None,
            budget=budget,
            title=f"{model} on {task.get('name', '')} ({task.get('n_eval', '?')} test examples), "
            "base weights on CIM tiles",
        )
        figures = save_figure(figure, run_dir / FIGURE_STEM)
    varied = str(axis.get("varied", "sigma"))
    rule, yields = sweep_yields(points, budget)
    unit = str(axis.get("unit", ""))
    return Report(points, summary, digital, tol, figures, varied, unit, yields, rule)
