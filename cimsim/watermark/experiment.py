"""Watermark experiments as TOML files, run by ``cimsim run FILE`` like sweeps.

Format (every key optional except ``name``)::

    name = "watermark-minilm"          # figures/<name>/ receives the figure and its data
    description = "..."
    [watermark]                        # the kit: KitConfig's fields
    model = "minilm"
    task = "bbc-news"
    checks = 6
    [watermark.watermark]              # WatermarkConfig: bits, seed (the key), rank, steps, ...
    [watermark.lora]                   # LoraConfig of the task branch
    [watermark.train]                  # TrainConfig of the task branch
    [watermark.eval]                   # EvalConfig
    [sweep]                            # the verification sweep: WatermarkSweepConfig's fields
    signature = "0110100111000101"
    card = "channel"
    noise = "0.005..0.04:8"
    seeds = 20
    budget = 0.02                      # as a fraction, like the config field

The kit goes to ``runs/<name>/kit`` (reused when it exists), the sweep to ``runs/<name>/sweep``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from cimsim.adapters.lora import LoraConfig
from cimsim.adapters.train import TrainConfig
from cimsim.adapters.watermark import WatermarkConfig
from cimsim.core.config import to_dict
from cimsim.core.errors import CimsimError
from cimsim.core.io import read_json, read_toml, write_atomic
from cimsim.core.ranges import parse_range
from cimsim.eval.config import EvalConfig
from cimsim.runs.experiments import experiment_name, nested_config, scalar_field
from cimsim.watermark.kit import INDEX, KitConfig
from cimsim.watermark.sweep import WatermarkSweepConfig

SECTION = "watermark"
_NESTED = {"lora": LoraConfig, "train": TrainConfig, "eval": EvalConfig,
           "watermark": WatermarkConfig}  # fmt: skip
_SCALARS = {"model", "task", "method", "checks"}
PUBLISHED = ("watermark.png", "watermark.pdf", "summary.csv", "summary.json", "results.csv",
             "points.jsonl", "config.json")  # fmt: skip


def is_watermark(path: Path) -> bool:
    """True when the experiment file describes a watermark experiment."""
    return SECTION in read_toml(path, "experiment file")


def load_watermark(path: Path) -> tuple[str, str, KitConfig, WatermarkSweepConfig]:
    """Name, description, kit config and sweep config of a watermark experiment file."""
    raw = read_toml(path, "experiment file")
    name = experiment_name(path, raw)
    unknown = set(raw) - {"name", "description", SECTION, "sweep"}
    if unknown:
        raise CimsimError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    kit: dict[str, Any] = {}
    for key, value in _table(path, raw, SECTION).items():
        if key in _NESTED:
            kit[key] = nested_config(path, key, _NESTED[key], value, SECTION)
        elif key in _SCALARS:
            kit[key] = scalar_field(path, SECTION, KitConfig, key, value)
        else:
            raise CimsimError(f"{path}: unknown key {SECTION}.{key}")
    sweep: dict[str, Any] = {}
    for key, value in _table(path, raw, "sweep").items():
        if key == "noise":
            if not isinstance(value, str):
                raise CimsimError(f"{path}: sweep.noise must be a string like '0.005..0.04:8'")
            sweep["values"] = tuple(parse_range(value))
        elif key == "seeds":
            sweep["instances"] = scalar_field(path, "sweep", WatermarkSweepConfig, "instances",
                                              value)  # fmt: skip
        elif key in {"signature", "card", "seed", "budget", "confidence", "target"}:
            sweep[key] = scalar_field(path, "sweep", WatermarkSweepConfig, key, value)
        else:
            raise CimsimError(f"{path}: unknown key sweep.{key}")
    if "signature" not in sweep:
        raise CimsimError(f"{path}: [sweep] needs the signature to read")
    try:
        description = str(raw.get("description", ""))
        return name, description, KitConfig(**kit), WatermarkSweepConfig(**sweep)
    except (TypeError, ValueError) as err:
        raise CimsimError(f"{path}: invalid experiment: {err}") from None


def _table(path: Path, raw: dict[str, Any], section: str) -> dict[str, Any]:
    table = raw.get(section, {})
    if not isinstance(table, dict):
        raise CimsimError(f"{path}: [{section}] must be a table")
    return table


def kit_matches(kit_dir: Path, config: KitConfig) -> bool:
    """Whether ``kit_dir`` holds a finished kit of ``config`` (device aside)."""
    if not (kit_dir / INDEX).is_file():
        return False
    stored = read_json(kit_dir / INDEX)["config"]
    mine = to_dict(config)
    stored.pop("compute_device", None)
    mine.pop("compute_device", None)
    if stored != mine:
        raise CimsimError(f"{kit_dir} holds a kit of another config; remove it or rename the file")
    return True


def publish_watermark(name: str, experiment: Path, kit_dir: Path, out_dir: Path,
                      figures_dir: Path) -> Path:  # fmt: skip
    """The sweep's figure and data, the kit's digital checks (not its key) and the experiment
    file into ``figures_dir / name``."""
    target = figures_dir / name
    target.mkdir(parents=True, exist_ok=True)
    for file in PUBLISHED:
        shutil.copy(out_dir / file, target / file)
    record = read_json(kit_dir / INDEX)
    public = {k: record[k] for k in ("schema", "config", "model", "task", "task_adapter",
                                     "checks", "environment")}  # fmt: skip
    public["training"] = {"seconds": record["training"]["seconds"],
                          "final": record["training"]["log"][-10:]}  # fmt: skip
    write_atomic(target / "kit.json", json.dumps(public, indent=2) + "\n")
    shutil.copy(experiment, target / "experiment.toml")
    return target
