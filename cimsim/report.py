"""Turn a run folder's files into its summary table and figure, from the files alone.

Used at the end of a sweep and by ``cimsim plot RUN_DIR``; needs no model, no task data and no
network: ``config.json`` and ``points.jsonl`` are enough.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from cimsim.analysis import Tolerance, digital_accuracy, summarize, tolerance
from cimsim.errors import CimsimError
from cimsim.noise_models import NOISE_MODELS
from cimsim.plots import plot_sweep, save_figure
from cimsim.results import (
    CONFIG_FILE,
    POINTS_FILE,
    RESULTS_CSV,
    SUMMARY_CSV,
    points_frame,
    read_json,
    read_points,
    write_atomic,
)

FIGURE_STEM = "sweep"


@dataclasses.dataclass(frozen=True)
class Report:
    points: pd.DataFrame
    summary: pd.DataFrame
    digital: float | None
    tolerance: Tolerance | None
    figures: list[Path]
    sigma_unit: str


def write_report(run_dir: Path, *, budget: float = 0.01) -> Report:
    """Rewrite ``results.csv``, ``summary.csv`` and ``sweep.png``/``.pdf`` of ``run_dir``."""
    if not run_dir.is_dir():
        raise CimsimError(f"{run_dir} is not a results folder")
    record = read_json(run_dir / CONFIG_FILE)
    rows = read_points(run_dir / POINTS_FILE)
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
    noise_name = record.get("config", {}).get("noise_model", "")
    noise_cls = NOISE_MODELS.get(noise_name)
    unit = noise_cls.sigma_unit if noise_cls else str(record.get("noise", {}).get("sigma_unit", ""))
    tol = tolerance(summary, digital, budget) if digital is not None and len(summary) else None
    figures: list[Path] = []
    if len(summary):
        labels = record.get("task", {}).get("label_names") or []
        model = record.get("model", {}).get("name", "")
        task = record.get("task", {}).get("name", "")
        n_eval = record.get("task", {}).get("n_eval", "?")
        figure = plot_sweep(
            points,
            sigma_label=noise_cls.axis_label() if noise_cls else None,
            chance=1 / len(labels) if labels else None,
            budget=budget,
            title=f"{model} on {task} ({n_eval} test examples), base weights on CIM tiles",
        )
        figures = save_figure(figure, run_dir / FIGURE_STEM)
    return Report(points, summary, digital, tol, figures, unit)
