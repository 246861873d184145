"""``cimsim spec-sheet RUN_DIR...``: one page for a design review, from result folders alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def spec_sheet(
    run_dirs: Annotated[
        list[Path],
        typer.Argument(help="Sign-off, sensitivity, placement (--place-from) and map folders."),
    ],
    out: Annotated[Path, typer.Option(help="Folder for spec-sheet.md/.pdf.")] = Path("spec-sheet"),
    title: Annotated[str | None, typer.Option(help="The sheet's title.")] = None,
) -> None:
    """Write spec-sheet.md and spec-sheet.pdf: the deployment and card with units, certified
    tolerances with intervals, sensitivity ranking, placement, maps, rules and environment."""
    from cimsim.runs.specsheet import write_spec_sheet

    for path in write_spec_sheet(list(run_dirs), out, title):
        print(f"written: {path}")
