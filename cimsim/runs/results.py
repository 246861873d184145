"""Result files of a run: declared schema, durable appends, atomic rewrites.

A run folder holds

* ``config.json``   — the full config, schema version, seeds, environment (git commit, versions);
* ``points.jsonl``  — one JSON object per finished point, appended and fsynced as it completes;
* ``results.csv``   — the same rows as a tidy table (``POINT_COLUMNS``), rewritten atomically;
* ``summary.csv``   — mean / std / sem / min / max over chip instances per noise level;
* ``sweep.png`` and ``sweep.pdf`` — the figure; ``adapter/`` — the adapter that was evaluated.

An interrupted run leaves at worst a torn last line in ``points.jsonl``; it is dropped on resume.
Any other damaged line stops the run with an error instead of being overwritten.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from cimsim.core.errors import CimsimError
from cimsim.core.io import write_atomic

SCHEMA_VERSION = "cimsim.sweep/2"
CONFIG_FILE = "config.json"
COMPARISON_FILE = "comparison.csv"  # the table `cimsim compare` writes in its folder
POINTS_FILE = "points.jsonl"
RESULTS_CSV = "results.csv"
SUMMARY_CSV = "summary.csv"

# One row per evaluated point; ``card`` is "digital" for the noise-free reference row. ``varied``
# names the swept field and ``value`` its value (in ``value_unit``); when the field is not sigma a
# column named after it repeats the value, right after ``value_unit``.
POINT_COLUMNS = (
    "model",
    "task",
    "method",
    "card",
    "noise_model",
    "varied",
    "value",
    "value_unit",
    "sigma",
    "sigma_unit",
    "instance",
    "chip_seed",
    "accuracy",
    "n_correct",
    "n_examples",
    "broken",
    "fixed",
    "eval_seconds",
)
_PACKAGES = ("cimsim", "torch", "transformers", "peft", "aihwkit", "numpy", "scipy", "safetensors")


def environment() -> dict[str, Any]:
    """Where a number came from: interpreter, platform, package versions, git commit."""
    versions: dict[str, str | None] = {}
    for package in _PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "git": _git_state(),
        "argv": sys.argv,
        "torch_threads": _torch_threads(),
    }


def _torch_threads() -> int | None:
    """torch's intra-op thread count, when torch is already loaded (never imported here)."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def _git_state() -> dict[str, Any] | None:
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


ROW_KEYS = ("card", "accuracy")  # in every row of a sweep's and a continual run's points file
SWEEP_POINT = ("card", "varied", "value", "instance")
"""What tells one point of a sweep from another: a points file holds each at most once."""
CONTINUAL_POINT = ("method", "order", "stage", "task", "sigma", "instance")
"""The same for a continual run: one evaluation of one stage's model on one task and chip."""


def read_points(
    path: Path,
    *,
    repair: bool = False,
    required: tuple[str, ...] = ROW_KEYS,
    unique: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """All rows of a points file. A torn last line (an interrupted write) is ignored, and cut
    off the file when ``repair`` is set; a damaged line elsewhere, a row without one of the
    ``required`` keys, or a second row with the same values of the ``unique`` keys (it would be
    counted twice in every mean) is a user error."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    complete, tail = lines[:-1], lines[-1]
    rows = []
    seen: dict[tuple, int] = {}
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise CimsimError(
                f"{path}: line {number} is damaged; move the file away to start the run afresh"
            ) from None
        if not isinstance(row, dict):
            raise CimsimError(f"{path}: line {number} is not a JSON object")
        missing = [key for key in required if key not in row]
        if missing:
            raise CimsimError(f"{path}: line {number} is not a result row (no '{missing[0]}')")
        if unique:
            key = tuple(json.dumps(row.get(k), sort_keys=True) for k in unique)
            if key in seen:
                point = ", ".join(f"{k} {row.get(k)}" for k in unique)
                raise CimsimError(
                    f"{path}: line {number} repeats line {seen[key]} ({point}); remove one of them"
                )
            seen[key] = number
        rows.append(row)
    if tail.strip() and repair:
        with path.open("r+b") as f:
            f.truncate(len(raw) - len(tail))
    return rows


def replace_rows(
    path: Path, rows: list[dict[str, Any]], key: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Rewrite the JSON-lines file ``path`` with ``rows`` in place of its rows that match one of
    them on the ``key`` fields (what a resumed run computed again), atomically; return all rows.
    """
    new = {tuple(row[k] for k in key) for row in rows}
    kept = [r for r in read_points(path, required=key) if tuple(r[k] for k in key) not in new]
    kept += rows
    write_atomic(path, "".join(json.dumps(row) + "\n" for row in kept))
    return kept


def points_frame(rows: list[dict[str, Any]]):  # -> pandas.DataFrame
    """The tidy table of ``rows`` with the declared column order."""
    import pandas as pd

    # Chip seeds are 60-bit integers: built column by column so that no float64 stage (NaN for
    # the digital row's missing seed) ever rounds them.
    integer_columns = {"instance", "chip_seed", "n_correct", "n_examples", "broken", "fixed"}
    # The digital row's per-example results stay in points.jsonl only.
    extra = sorted({key for row in rows for key in row} - set(POINT_COLUMNS) - {"correct"})
    at = POINT_COLUMNS.index("value_unit") + 1
    columns = [*POINT_COLUMNS[:at], *extra, *POINT_COLUMNS[at:]]
    return pd.DataFrame(
        {
            column: pd.array(
                [row.get(column) for row in rows],
                dtype="Int64" if column in integer_columns else None,
            )
            for column in columns
        }
    )


def stored_record(out_dir: Path, schema: str, what: str) -> dict[str, Any] | None:
    """A results folder's ``config.json`` record, checked to hold a ``what`` run of ``schema``
    (None for a new folder, which is created)."""
    from cimsim.core.errors import CimsimError
    from cimsim.core.io import read_json

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CimsimError(f"cannot use {out_dir} as the results folder: {err.strerror}") from None
    if (out_dir / CONFIG_FILE).exists():
        stored = read_json(out_dir / CONFIG_FILE)
        if stored.get("schema") != schema:
            raise CimsimError(f"{out_dir} holds a '{stored.get('schema')}' run, not a {what}")
        return stored
    if (out_dir / POINTS_FILE).exists():
        raise CimsimError(f"{out_dir} has {POINTS_FILE} but no {CONFIG_FILE}; choose another --out")
    return None
