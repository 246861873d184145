"""Continual experiments as TOML files, run by ``cimsim run FILE`` like sweeps.

Format (every key optional except ``name``; the keys are ``cimsim continual``'s words)::

    name = "continual-minilm"          # figures/<name>/ receives the figures and their data
    description = "..."
    [continual]
    model = "minilm"
    tasks = ["bbc-news", "movie", "tweets-intensity"]
    methods = ["gated", "seq-lora", "sum", "olora", "joint"]
    objective = "lora"                 # lora | noise-aware | halora
    orders = 2
    card = "channel"
    noise = "0.02..0.08:4"             # sigmas of the evaluation chips
    seeds = 3                          # chip instances per sigma
    seed = 0
    lam_orth = 0.5
    [continual.lora]                   # LoraConfig fields
    [continual.train]                  # TrainConfig fields
    [continual.gate]                   # GateConfig fields
    [continual.eval]                   # EvalConfig fields
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from cimsim.adapters.gates import GateConfig
from cimsim.adapters.lora import LoraConfig
from cimsim.adapters.train import TrainConfig
from cimsim.continual.config import ContinualConfig
from cimsim.core.errors import CimsimError
from cimsim.core.io import read_toml
from cimsim.core.ranges import parse_range
from cimsim.eval.config import EvalConfig
from cimsim.runs.experiments import experiment_name, nested_config, scalar_field

SECTION = "continual"
_NESTED = {"lora": LoraConfig, "train": TrainConfig, "gate": GateConfig, "eval": EvalConfig}
_SCALARS = {"model", "objective", "orders", "card", "seed", "lam_orth", "memory_size", "prompted"}
_LISTS = {"tasks", "methods"}


def is_continual(path: Path) -> bool:
    """True when the experiment file describes a continual experiment."""
    return SECTION in read_toml(path, "experiment file")


def load_continual(path: Path) -> tuple[str, str, ContinualConfig]:
    """Name, description and config of a continual experiment file."""
    raw = read_toml(path, "experiment file")
    name = experiment_name(path, raw)
    unknown = set(raw) - {"name", "description", SECTION, "executor"}
    if unknown:
        raise CimsimError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    table = raw[SECTION]
    if not isinstance(table, dict):
        raise CimsimError(f"{path}: [{SECTION}] must be a table")
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key in _NESTED:
            kwargs[key] = nested_config(path, key, _NESTED[key], value, SECTION)
        elif key in _LISTS:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise CimsimError(f"{path}: {SECTION}.{key} must be a list of names")
            kwargs[key] = tuple(value)
        elif key in _SCALARS:
            kwargs[key] = scalar_field(path, SECTION, ContinualConfig, key, value)
        elif key == "noise":
            if not isinstance(value, str):
                raise CimsimError(f"{path}: {SECTION}.noise must be a string like '0.02..0.08:4'")
            kwargs["values"] = tuple(parse_range(value))
        elif key == "seeds":
            kwargs["instances"] = scalar_field(path, SECTION, ContinualConfig, "instances", value)
        else:
            raise CimsimError(f"{path}: unknown key {SECTION}.{key}")
    try:
        return name, str(raw.get("description", "")), ContinualConfig(**kwargs)
    except (TypeError, ValueError, CimsimError) as err:
        raise CimsimError(f"{path}: invalid [{SECTION}]: {err}") from None


PUBLISHED = (
    "results.csv", "metrics.csv", "summary.csv", "gates.csv", "matrices.png", "matrices.pdf",
    "ap_ft.png", "ap_ft.pdf", "config.json", "points.jsonl", "training.jsonl",
)  # fmt: skip
"""What figures/<name>/ receives from a continual results folder (those that exist)."""


def publish_continual(name: str, experiment: Path, out_dir: Path, figures_dir: Path) -> Path:
    """Copy the finished results in ``out_dir`` and the experiment file into
    ``figures_dir / name``; returns that folder."""
    target = figures_dir / name
    target.mkdir(parents=True, exist_ok=True)
    for file in PUBLISHED:
        if (out_dir / file).exists():
            shutil.copy(out_dir / file, target / file)
    shutil.copy(experiment, target / "experiment.toml")
    return target
