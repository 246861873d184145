"""Design-space maps: the yield over two card fields at once, from the same chips.

``run_map(config, outer, outer_values, out_dir)`` runs one sign-off
(:func:`cimsim.runs.tolerance.run_tolerance`) per value of the ``outer`` field, over the
sign-off's own field and grid (the inner axis), each in its own sub-folder
``<outer>=<value>/``. With common chips a chip's seed depends on neither field's value
(:func:`cimsim.runs.tolerance.common_chip_seed`), so every cell of the map judges the same chips,
and each row is exactly the single-field sign-off at that outer value. Each row resumes on its
own; the map is rebuilt from the rows' files.

Files (schema ``cimsim.map/1``): ``map.json`` (the config, both axes with units, the rows'
folders), ``map.csv`` (outer, inner, passes, chips, yield, interval, lower bound, certified),
``summary.json`` (per outer value the certified inner value), ``map.png``/``.pdf`` (the yield as
a heatmap, the target-yield contour, certified cells marked).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from cimsim.chip.cards import DeviceCard
from cimsim.core.config import to_dict
from cimsim.core.errors import CimsimError
from cimsim.core.io import read_json, write_atomic
from cimsim.core.lock import LOCK_FILE, one_writer
from cimsim.core.progress import Progress, Silent
from cimsim.runs.tolerance import ToleranceConfig, run_tolerance, write_tolerance_report

SCHEMA = "cimsim.map/1"
MAP_JSON, MAP_CSV, SUMMARY_JSON, FIGURE_STEM = "map.json", "map.csv", "summary.json", "map"


def row_dir(out_dir: Path, outer: str, value: float) -> Path:
    return out_dir / f"{outer}={value:g}"


@one_writer
def run_map(
    config: ToleranceConfig,
    outer: str,
    outer_values: tuple[float, ...],
    out_dir: Path,
    *,
    cache_dir: Path,
    card: DeviceCard | None = None,
    progress: Progress | None = None,
) -> Path:
    """Run (or resume) the map into ``out_dir``; returns ``out_dir``."""
    progress = progress or Silent()
    card = card if card is not None else config.sweep.resolve_card()
    inner = config.sweep.vary
    if outer == inner:
        raise CimsimError(f"a map needs two different fields; both are {outer!r}")
    if config.signoff.chips != "common":
        raise CimsimError("a map compares cells on the same chips: use common chips")
    rows = [card.with_value(outer, value) for value in outer_values]  # bad values fail here
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "config": to_dict(config),
        "outer": {"field": outer, "values": list(outer_values), "unit": card.unit(outer)},
        "inner": {"field": inner, "values": list(config.sweep.values), "unit": card.unit(inner)},
        "card": card.to_dict(),
        "rows": [row_dir(out_dir, outer, v).name for v in outer_values],
    }
    if (out_dir / MAP_JSON).exists():
        stored = read_json(out_dir / MAP_JSON)
        if (
            stored.get("schema") != SCHEMA
            or stored.get("config") != record["config"]
            or (stored.get("outer", {}).get("field") != outer)
        ):
            raise CimsimError(f"{out_dir} holds another map; choose another --out")
        kept = sorted(set(stored["outer"]["values"]) | set(outer_values))
        record["outer"]["values"] = kept
        record["rows"] = [row_dir(out_dir, outer, v).name for v in kept]
    elif any(p.name != LOCK_FILE for p in out_dir.iterdir()):
        raise CimsimError(f"{out_dir} is not empty and holds no map; choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / MAP_JSON, json.dumps(record, indent=2, default=str) + "\n")
    for value, row_card in zip(outer_values, rows, strict=True):
        progress.log(f"{outer} = {value:g}: sign-off over {inner}")
        run_tolerance(
            config, row_dir(out_dir, outer, value), cache_dir=cache_dir, card=row_card,
            progress=progress,
        )  # fmt: skip
    write_map_report(out_dir)
    return out_dir


@dataclasses.dataclass(frozen=True)
class MapReport:
    table: Any  # pandas.DataFrame, one row per cell
    summary: dict[str, Any]
    figures: list[Path]


def write_map_report(out_dir: Path) -> MapReport:
    """``map.csv``, ``summary.json`` and the figure, from the rows' files alone."""
    import pandas as pd

    from cimsim.runs.plots import plot_map, save_figure

    record = read_json(out_dir / MAP_JSON)
    outer = record["outer"]
    cells = []
    certified = []
    for value in outer["values"]:
        folder = row_dir(out_dir, outer["field"], value)
        if not (folder / "points.jsonl").exists():
            continue
        stored = read_json(folder / "config.json")["card"]
        if _field_value(stored, outer["field"]) != value:
            raise CimsimError(f"{folder} was run at another {outer['field']}")
        report = write_tolerance_report(folder)
        best = report.certified.value if report.certified is not None else None
        certified.append({"outer": value, "certified": best, "reasons": report.reasons})
        for point in report.yields:
            cells.append({
                "outer": value, "inner": point.value, "passes": point.passes,
                "chips": point.chips, "yield": point.estimate, "low": point.low,
                "high": point.high, "lower_bound": point.lower_bound,
                "certified": point.lower_bound >= report.summary["target_yield"],
            })  # fmt: skip
    if not cells:
        raise CimsimError(f"{out_dir} holds no finished row yet")
    table = pd.DataFrame(cells)
    write_atomic(out_dir / MAP_CSV, table.to_csv(index=False))
    signoff = record["config"]["signoff"]
    summary = {
        "schema": SCHEMA,
        "card": record["card"].get("name"),
        "outer": outer,
        "inner": record["inner"],
        "budget_points": 100 * signoff["budget"],
        "target_yield": signoff["target_yield"],
        "confidence": signoff["confidence"],
        "chips": int(table["chips"].max()),
        "certified_per_row": certified,
        "rule": report.rule.text(),
    }
    write_atomic(out_dir / SUMMARY_JSON, json.dumps(summary, indent=2) + "\n")
    figures = save_figure(plot_map(table, summary), out_dir / FIGURE_STEM)
    return MapReport(table, summary, figures)


def _field_value(card: dict[str, Any], field: str) -> float | None:
    for section in ("device", "tile"):
        if field in card.get(section, {}):
            return float(card[section][field])
    return None
