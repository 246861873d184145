"""A mixed placement recommended from a sensitivity table and verified by the sign-off.

:func:`run_placement` ranks one grouping's layer groups by the accuracy they recover when kept
digital (``recovery`` in a sensitivity run's ``table.csv``, at the value nearest the target),
then keeps the first 1, 2, ... of them digital and runs the full sign-off
(:func:`cimsim.runs.tolerance.run_tolerance`, same chips, grid and rule) for each, until the
certified tolerance reaches the target. Greedy: the set is the top of one ranking, not the
smallest of all sets; each step is a real sign-off, so what is reported is measured, not
predicted. ``placement.json`` records every step (groups, layers kept digital, analog fraction,
certified value, its folder).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from cimsim.chip.placement import any_of
from cimsim.core.errors import CimsimError
from cimsim.core.io import read_json, write_atomic
from cimsim.core.lock import one_writer
from cimsim.core.progress import Progress, Silent
from cimsim.runs.tolerance import ToleranceConfig, run_tolerance, write_tolerance_report

PLACEMENT_JSON = "placement.json"


def ranked_groups(sensitivity_dir: Path, grouping: str, value: float) -> list[dict[str, Any]]:
    """The groups of ``grouping`` at the sensitivity run's value nearest ``value``, most
    recovering first, each with its tiles and analog weights."""
    import pandas as pd

    table_file = sensitivity_dir / "table.csv"
    if not table_file.exists():
        raise CimsimError(f"{sensitivity_dir} holds no sensitivity table (table.csv)")
    table = pd.read_csv(table_file)
    table = table[table["grouping"] == grouping]
    if table.empty:
        raise CimsimError(f"{sensitivity_dir} has no '{grouping}' groups")
    nearest = min(table["value"].unique(), key=lambda v: abs(v - value))
    groups = read_json(sensitivity_dir / "config.json")["groups"][grouping]
    rows = table[table["value"] == nearest].sort_values("recovery", ascending=False)
    return [
        {"group": str(r.group), "recovery": float(r.recovery), "at": float(nearest),
         "tiles": groups[str(r.group)]["tiles"]}
        for r in rows.itertuples()
    ]  # fmt: skip


@one_writer
def run_placement(
    config: ToleranceConfig,
    sensitivity_dir: Path,
    target: float,
    out_dir: Path,
    *,
    cache_dir: Path,
    grouping: str = "kind",
    max_groups: int = 4,
    card: Any = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Keep the top 1, 2, ... groups digital until the certified tolerance reaches ``target``
    (at most ``max_groups``); returns the record written to ``out_dir / placement.json``."""
    progress = progress or Silent()
    if config.sweep.digital is not None:
        raise CimsimError("--place-from chooses the digital layers itself: drop --digital")
    ranking = ranked_groups(sensitivity_dir, grouping, target)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps: list[dict[str, Any]] = []
    record: dict[str, Any] = {
        "target": target, "grouping": grouping, "sensitivity": str(sensitivity_dir),
        "ranking": [{k: g[k] for k in ("group", "recovery", "at")} for g in ranking],
        "steps": steps, "reached": None,
        "rule": "greedy: the top k groups by recovery kept digital, k = 1, 2, ...; each step "
                "a full sign-off on the same chips",
    }  # fmt: skip
    larger_is_better = None
    for k in range(1, min(max_groups, len(ranking)) + 1):
        chosen = ranking[:k]
        tiles = sorted({t for g in chosen for t in g["tiles"]})
        step = dataclasses.replace(
            config, sweep=dataclasses.replace(config.sweep, digital=any_of(tiles))
        )
        folder = out_dir / f"digital-{k}"
        progress.log(f"sign-off with {', '.join(g['group'] for g in chosen)} digital")
        run_tolerance(step, folder, cache_dir=cache_dir, card=card, progress=progress)
        report = write_tolerance_report(folder)
        larger_is_better = report.larger_is_better
        placement = read_json(folder / "config.json")["placement"]
        certified = report.certified.value if report.certified is not None else None
        steps.append({
            "groups": [g["group"] for g in chosen], "digital_layers": tiles,
            "analog_fraction": placement["analog_fraction"], "certified_value": certified,
            "folder": folder.name,
        })  # fmt: skip
        write_atomic(out_dir / PLACEMENT_JSON, json.dumps(record, indent=2) + "\n")
        if certified is not None and (
            certified <= target if larger_is_better else certified >= target
        ):
            record["reached"] = steps[-1]
            break
    write_atomic(out_dir / PLACEMENT_JSON, json.dumps(record, indent=2) + "\n")
    return record
