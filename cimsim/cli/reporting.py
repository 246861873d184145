"""Running a sweep, comparison or continual run behind progress bars and printing what it found:
the one place the commands that run (sweep, compare, continual, run) share their output."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from cimsim.cli.common import EXIT_INTERRUPTED, progress_bars, rich_console


def run_sweep_and_report(
    config: Any,
    card: Any,
    out_dir: Path,
    cache_dir: Path,
    budget: float,
    methods: tuple[str, ...] | None = None,
) -> None:
    """Run the sweep (or, with ``methods``, the comparison) on ``card`` (``config``'s card,
    resolved once by the caller) behind progress bars, then report."""
    from cimsim.runs.compare import run_compare, write_comparison
    from cimsim.runs.report import write_report
    from cimsim.runs.results import read_points
    from cimsim.runs.sweep import run_sweep

    try:
        with progress_bars() as progress:
            if methods is None:
                run_sweep(config, out_dir, cache_dir=cache_dir, card=card, progress=progress)
            else:
                run_compare(
                    config, methods, out_dir, cache_dir=cache_dir, card=card, progress=progress
                )
    except KeyboardInterrupt:
        saved = sum(len(read_points(path)) for path in out_dir.glob("**/points.jsonl"))
        print(
            f"cimsim: interrupted; {saved} finished points are saved in {out_dir}; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if methods is None:
        print_report(write_report(out_dir, budget=budget), out_dir)
        return
    for method in methods:  # each method's own folder gets its summary and figure too
        write_report(out_dir / method, budget=budget)
    paths = write_comparison(out_dir, methods, budget)
    rich_console().print((out_dir / "comparison.md").read_text())
    for path in paths:
        rich_console().print(f"written: {path}")


def print_report(report: Any, out_dir: Path) -> None:
    import pandas as pd
    from rich.table import Table

    symbol = "σ" if report.varied == "sigma" else report.varied
    table = Table(title=f"accuracy over chip instances ({symbol} in {report.unit})")
    for column in ("method", "card", symbol, "mean", "± std", "min", "max", "n"):
        table.add_column(column, justify="right")
    for row in report.summary.itertuples():
        std = "–" if pd.isna(row.std) else f"{row.std:.3f}"  # NaN or NA with one instance
        table.add_row(
            row.method,
            row.card,
            f"{row.value:.4g}",
            f"{row.mean:.3f}",
            std,
            f"{row.min:.3f}",
            f"{row.max:.3f}",
            str(row.n),
        )
    console = rich_console()
    console.print(table)
    if report.digital is not None:
        console.print(f"digital (noise-free) accuracy: {report.digital:.3f}")
    if report.tolerance is not None:
        console.print(f"tolerance: {report.tolerance.text(report.unit)}")
    console.print(f"results: {out_dir}/results.csv, summary.csv, config.json")
    for path in report.figures:
        console.print(f"figure:  {path}")


def run_continual_and_report(config: Any, out_dir: Path, cache_dir: Path) -> None:
    """Run (or resume) behind progress bars, then print the AP/FT summary."""
    import pandas as pd

    from cimsim.continual.runner import run_continual
    from cimsim.runs.results import read_points

    try:
        with progress_bars() as progress:
            run_continual(config, out_dir, cache_dir=cache_dir, progress=progress)
    except KeyboardInterrupt:
        saved = len(read_points(out_dir / "points.jsonl"))
        print(
            f"cimsim: interrupted; {saved} finished evaluations are saved in {out_dir}; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    summary = pd.read_csv(out_dir / "summary.csv")
    console = rich_console()
    console.print(
        "AP (mean final accuracy) and FT (forgetting), mean ± std over chips and task orders; "
        "sigma in the card's unit:"
    )
    console.print(summary.round(3).to_string(index=False))
    for name in ("results.csv", "metrics.csv", "summary.csv", "matrices.png", "ap_ft.png"):
        console.print(f"written: {out_dir / name}")
