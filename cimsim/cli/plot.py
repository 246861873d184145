"""``cimsim plot``: redraw a results folder's figures and summary from its files alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cimsim.cli.common import check_budget, path_value, rich_console
from cimsim.cli.reporting import print_report


def plot(
    run_dir: Annotated[
        Path,
        typer.Argument(
            parser=path_value, help="A results folder of `cimsim sweep` or `cimsim continual`."
        ),
    ],
    budget: Annotated[
        float, typer.Option(help="Accuracy budget in points for the tolerance mark (sweeps).")
    ] = 1.0,
) -> None:
    """Redraw a run's figures and summary from its files alone."""
    from cimsim.continual.config import SCHEMA as CONTINUAL
    from cimsim.core.io import read_json
    from cimsim.runs.report import write_report
    from cimsim.runs.results import CONFIG_FILE

    check_budget(budget)

    config = run_dir / CONFIG_FILE
    if config.is_file() and read_json(config).get("schema") == CONTINUAL:
        from cimsim.continual.report import redraw

        for path in redraw(run_dir):
            rich_console().print(f"written: {path}")
        return
    print_report(write_report(run_dir, budget=budget / 100), run_dir)


