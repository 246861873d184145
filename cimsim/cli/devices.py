"""``cimsim devices``: list, show and fit device cards (a sub-app of its own)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cimsim.cli.common import path_value, rich_console

devices_app = typer.Typer(
    help="Device cards: a cell and a macro in one TOML file (list, show, fit).",
    add_completion=False,
    rich_markup_mode=None,
)


@devices_app.callback(invoke_without_command=True)
def devices(ctx: typer.Context) -> None:
    """List the shipped device cards (select with --device NAME or a .toml path)."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from cimsim.chip.cards import load_card, shipped_cards

    table = Table(title="device cards (cimsim devices show NAME)")
    for column in ("name", "model", "default --noise"):
        table.add_column(column, no_wrap=True)
    table.add_column("periphery")
    table.add_column("summary")
    for name in shipped_cards():
        card = load_card(name)
        periphery = "ideal" if card.tile.is_ideal else _periphery_text(card.tile)
        table.add_row(card.name, card.noise.name, card.noise_range, periphery, card.summary)
    rich_console().print(table)


def _periphery_text(tile: Any) -> str:
    parts = [
        f"{tile.rows} rows" if tile.rows else "",
        f"DAC {tile.dac_bits} b" if tile.dac_bits else "",
        f"ADC {tile.adc_bits} b" if tile.adc_bits else "",
        f"out noise {tile.out_noise:g}" if tile.out_noise else "",
    ]
    return ", ".join(p for p in parts if p)


@devices_app.command("show")
def devices_show(
    name: Annotated[str, typer.Argument(help="A shipped card name or a .toml card file.")],
) -> None:
    """Print a card: the model's formula, every parameter with its unit, the source."""
    from cimsim.chip.cards import describe, load_card

    rich_console().print(describe(load_card(name)))


@devices_app.command("fit")
def devices_fit(
    measurements: Annotated[
        Path,
        typer.Argument(parser=path_value, help="CSV: target_us, measured_us[, time_s][, device]."),
    ],
    out: Annotated[
        Path, typer.Option(parser=path_value, help="Where to write the fitted card (.toml).")
    ],
    name: Annotated[str | None, typer.Option(help="Card name (default: the file name).")] = None,
    degree: Annotated[int, typer.Option(help="Degree of the programming-noise polynomial.")] = 2,
) -> None:
    """Fit an 'rram' card (programming noise vs conductance; drift exponent when times are
    given) to measured conductances, and write it."""
    from cimsim.chip.fit import fit_card, write_card

    card, report = fit_card(measurements, name=name or out.stem, degree=degree)
    write_card(card, out)
    rich_console().print(report.text())
    rich_console().print(f"card written to {out}; use it with: cimsim sweep --device {out}")


@devices_app.command("example-measurements")
def devices_example(
    out: Annotated[Path, typer.Argument(parser=path_value, help="Where to write the CSV.")],
) -> None:
    """Write synthetic measurements of the shipped 'rram' card: the input format of `fit`."""
    from cimsim.chip.cards import load_card
    from cimsim.chip.fit import synthetic_measurements, write_measurements

    rows = synthetic_measurements(load_card("rram"), times_s=(1.0, 3600.0, 86400.0))
    write_measurements(rows, out)
    rich_console().print(f"{len(rows)} measurements written to {out}")
