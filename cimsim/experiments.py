"""Declarative experiments: a TOML file that names a sweep, reproduced by ``cimsim run FILE``.

Format (every key optional except ``name``; the rest default to ``cimsim sweep``'s defaults)::

    name = "default-sweep"            # figures/<name>/ receives the figure and its data
    description = "..."
    [sweep]
    model = "minilm"
    task = "bbc-news"
    method = "lora"
    noise_model = "channel"
    noise = "0.01..0.1"               # range syntax of --noise
    seeds = 3                         # chip instances per level
    seed = 0
    [sweep.lora]                      # LoraConfig fields
    [sweep.train]                     # TrainConfig fields
    [sweep.eval]                      # EvalConfig fields

An invalid file is a one-line error naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from cimsim.errors import CimsimError
from cimsim.lora import LoraConfig
from cimsim.ranges import parse_range
from cimsim.sweep import EvalConfig, SweepConfig
from cimsim.train import TrainConfig

_NESTED = {"lora": LoraConfig, "train": TrainConfig, "eval": EvalConfig}
_RENAMED = {"noise": "sigmas", "seeds": "instances"}


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    sweep: SweepConfig
    source: Path


def load_experiment(path: Path) -> Experiment:
    """Parse and validate an experiment file."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise CimsimError(f"experiment file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise CimsimError(f"experiment file {path} is not valid TOML: {err}") from None
    name = raw.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise CimsimError(f"{path}: 'name' must be a non-empty string without '/'")
    unknown = set(raw) - {"name", "description", "sweep"}
    if unknown:
        raise CimsimError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    return Experiment(
        name, str(raw.get("description", "")), _sweep(path, raw.get("sweep", {})), path
    )


def _sweep(path: Path, table: Any) -> SweepConfig:
    if not isinstance(table, dict):
        raise CimsimError(f"{path}: [sweep] must be a table")
    fields = {f.name for f in dataclasses.fields(SweepConfig)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        field = _RENAMED.get(key, key)
        # The file speaks the CLI's words: 'noise' and 'seeds', not the config's field names.
        if field not in fields or key in _RENAMED.values():
            raise CimsimError(f"{path}: unknown key sweep.{key}")
        if field == "sigmas":
            if not isinstance(value, str):
                raise CimsimError(f"{path}: sweep.noise must be a range string like '0.01..0.1'")
            value = tuple(parse_range(value))
        elif field in _NESTED:
            value = _nested(path, key, _NESTED[field], value)
        kwargs[field] = value
    try:
        return SweepConfig(**kwargs)
    except (TypeError, ValueError) as err:
        raise CimsimError(f"{path}: invalid [sweep]: {err}") from None


def _nested(path: Path, key: str, cls: type, value: Any) -> Any:
    if not isinstance(value, dict):
        raise CimsimError(f"{path}: [sweep.{key}] must be a table")
    names = {f.name for f in dataclasses.fields(cls)}
    for field in value:
        if field not in names:
            raise CimsimError(f"{path}: unknown key sweep.{key}.{field}")
    if "target_modules" in value:
        value = {**value, "target_modules": tuple(value["target_modules"])}
    try:
        return cls(**value)
    except (TypeError, ValueError) as err:
        raise CimsimError(f"{path}: invalid [sweep.{key}]: {err}") from None
