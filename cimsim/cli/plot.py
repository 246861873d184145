"""``cimsim plot``: redraw a results folder's figures and summary from its files alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cimsim.cli.common import check_budget, path_value, rich_console
from cimsim.cli.reporting import print_report, print_tolerance


def plot(
    run_dir: Annotated[
        Path,
        typer.Argument(
            parser=path_value,
            help="A results folder of `cimsim sweep`, `tolerance` or `continual`.",
        ),
    ],
    budget: Annotated[
        float, typer.Option(help="Accuracy budget in points for the tolerance mark (sweeps).")
    ] = 1.0,
) -> None:
    """Redraw a run's figures and summary from its files alone."""
    from cimsim.continual.config import SCHEMA as CONTINUAL
    from cimsim.core.io import read_json
    from cimsim.runs.harness import SCHEMA as HARNESS
    from cimsim.runs.report import write_report
    from cimsim.runs.results import CONFIG_FILE
    from cimsim.runs.tolerance import SCHEMA as TOLERANCE

    check_budget(budget)

    config = run_dir / CONFIG_FILE
    schema = read_json(config).get("schema") if config.is_file() else None
    if schema == CONTINUAL:
        from cimsim.continual.report import redraw

        for path in redraw(run_dir):
            rich_console().print(f"written: {path}")
        return
    if schema == HARNESS:
        from cimsim.runs.harness import write_harness_report

        for path in write_harness_report(run_dir):
            rich_console().print(f"written: {path}")
        return
    if schema == TOLERANCE:
        from cimsim.runs.tolerance import write_tolerance_report

        print_tolerance(write_tolerance_report(run_dir), run_dir)
        return
    print_report(write_report(run_dir, budget=budget / 100), run_dir)
