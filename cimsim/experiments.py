"""Declarative experiments: a TOML file that names a sweep, reproduced by ``cimsim run FILE``.

Format (every key optional except ``name``; the rest default to ``cimsim sweep``'s defaults, and
the keys are the command line's words)::

    name = "default-sweep"            # figures/<name>/ receives the figure and its data
    description = "..."
    [sweep]
    model = "minilm"
    task = "bbc-news"
    method = "lora"
    card = "channel"                  # device card: shipped name or .toml path
    noise = "0.01..0.1"               # --noise: sigma's values (default: the card's range)
    vary = "adc_bits=4..8:5"          # --vary: sweep another card field (noise: one sigma)
    seeds = 3                         # chip instances per value
    seed = 0
    engine = "cimsim"
    [sweep.lora]                      # LoraConfig fields
    [sweep.train]                     # TrainConfig fields
    [sweep.eval]                      # EvalConfig fields

An invalid file is a one-line error naming the file and the field.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from cimsim.devices import DEFAULT_CARD, load_card
from cimsim.errors import CimsimError
from cimsim.lora import LoraConfig
from cimsim.results import read_toml
from cimsim.sweep import EvalConfig, SweepConfig, parse_axis
from cimsim.train import TrainConfig

_NESTED = {"lora": LoraConfig, "train": TrainConfig, "eval": EvalConfig}
_SCALARS = {"model", "task", "method", "adapter", "card", "seed", "engine"}
_AXIS = {"noise", "vary", "seeds"}


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    sweep: SweepConfig
    source: Path


def load_experiment(path: Path) -> Experiment:
    """Parse and validate an experiment file."""
    raw = read_toml(path, "experiment file")
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
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key in _NESTED:
            kwargs[key] = _nested(path, key, _NESTED[key], value)
        elif key in _SCALARS:
            kwargs[key] = value
        elif key not in _AXIS:
            raise CimsimError(f"{path}: unknown key sweep.{key}")
    for key in ("noise", "vary"):
        if key in table and not isinstance(table[key], str):
            raise CimsimError(f"{path}: sweep.{key} must be a string like '0.01..0.1'")
    card = load_card(str(kwargs.get("card", DEFAULT_CARD)))
    field, values, sigma = parse_axis(card, table.get("noise"), table.get("vary"))
    kwargs.update(vary=field, values=values, sigma=sigma)
    if "seeds" in table:
        kwargs["instances"] = table["seeds"]
    try:
        return SweepConfig(**kwargs)
    except (TypeError, ValueError) as err:
        raise CimsimError(f"{path}: invalid [sweep]: {err}") from None


def _nested(path: Path, key: str, cls: type, value: Any, section: str = "sweep") -> Any:
    """The ``cls`` config of table ``[section.key]``; a one-line error naming a bad field."""
    if not isinstance(value, dict):
        raise CimsimError(f"{path}: [{section}.{key}] must be a table")
    names = {f.name for f in dataclasses.fields(cls)}
    for field in value:
        if field not in names:
            raise CimsimError(f"{path}: unknown key {section}.{key}.{field}")
    if "target_modules" in value:
        value = {**value, "target_modules": tuple(value["target_modules"])}
    try:
        return cls(**value)
    except (TypeError, ValueError) as err:
        raise CimsimError(f"{path}: invalid [{section}.{key}]: {err}") from None
