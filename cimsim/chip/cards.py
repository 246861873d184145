"""Device cards: a cell and a macro as a hardware team describes them, in one TOML file.

A card names a noise model and its parameters and, optionally, the tile periphery::

    name = "my-rram"                  # defaults to the file name
    summary = "one line"
    source = "where the numbers come from"
    noise = "0.5..3"                  # default --noise range for this card (sigma's axis)
    [device]
    model = "rram"                    # a registered noise model (cimsim noise-models)
    sigma = 1.0                       # ... and any of its fields
    [tile]
    rows = 512                        # any TileConfig field (cimsim.chip.tile)

Shipped cards live in ``noise_models/cards/`` and are selected by name; a user's card by path.
Every numeric field of ``[device]`` and ``[tile]`` can be swept with ``--vary FIELD=RANGE``.
A card that does not validate is a one-line error naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import typing
from pathlib import Path
from typing import Any

from cimsim.chip.tile import TileConfig
from cimsim.core.config import field_value
from cimsim.core.errors import CimsimError
from cimsim.core.io import read_toml
from cimsim.core.ranges import parse_range
from cimsim.noise_models import NOISE_MODELS, NoiseModel

DEFAULT_CARD = "channel"

# Units of the fields a sweep can vary, for axis labels and help (sigma's is the model's own).
FIELD_UNITS = {
    "read_noise": "× max|W[row,:]| per read",
    "g_max_us": "µS",
    "g_min_us": "µS",
    "levels": "levels per device",
    "stuck_at_gmin_rate": "fraction of devices",
    "stuck_at_gmax_rate": "fraction of devices",
    "drift_time_s": "s after programming",
    "drift_nu_mean": "drift exponent",
    "drift_nu_std": "drift exponent",
    "drift_t0_s": "s",
    "rows": "inputs per tile",
    "cols": "outputs per tile",
    "dac_bits": "bits",
    "adc_bits": "bits",
    "inp_bound": "× input abs-max",
    "out_bound": "full-scale outputs",
    "out_noise": "full-scale outputs",
    "max_bound_iterations": "halvings",
}


@dataclasses.dataclass(frozen=True)
class DeviceCard:
    """A noise model with its parameters, and the tile periphery it sits behind."""

    name: str
    summary: str
    source: str
    noise_range: str
    noise: NoiseModel
    tile: TileConfig = TileConfig()
    origin: str = ""

    def numeric_fields(self) -> dict[str, str]:
        """Field name -> 'device' or 'tile', for every field ``--vary`` accepts."""
        fields = {}
        for section, config in (("device", self.noise), ("tile", self.tile)):
            hints = typing.get_type_hints(type(config))
            for field in dataclasses.fields(config):
                if hints[field.name] in (int, float):
                    fields[field.name] = section
        return fields

    def unit(self, field: str) -> str:
        return self.noise.sigma_unit if field == "sigma" else FIELD_UNITS.get(field, "")

    def with_value(self, field: str, value: float) -> DeviceCard:
        """This card with ``field`` (a device or tile field) set to ``value``."""
        fields = self.numeric_fields()
        if field not in fields:
            raise CimsimError(
                f"card '{self.name}' has no numeric field '{field}'; "
                f"choose one of: {', '.join(sorted(fields))}"
            )
        config = self.noise if fields[field] == "device" else self.tile
        if typing.get_type_hints(type(config))[field] is int:
            if value != int(value):
                raise CimsimError(f"{field} takes whole numbers, got {value}")
            value = int(value)
        try:
            changed = dataclasses.replace(config, **{field: value})
        except ValueError as err:
            raise CimsimError(f"{field} = {value}: {err}") from None
        if fields[field] == "device":
            return dataclasses.replace(self, noise=changed)
        return dataclasses.replace(self, tile=changed)

    def to_dict(self) -> dict[str, Any]:
        """The card as its TOML tables (JSON-ready), for result files and hashing."""
        device = {"model": self.noise.name, **dataclasses.asdict(self.noise)}
        return {
            "name": self.name,
            "summary": self.summary,
            "source": self.source,
            "noise": self.noise_range,
            "device": {k: list(v) if isinstance(v, tuple) else v for k, v in device.items()},
            "tile": dataclasses.asdict(self.tile),
        }


def cards_dir() -> Path:
    return Path(str(importlib.resources.files("cimsim.noise_models") / "cards"))


def shipped_cards() -> list[str]:
    return sorted(p.stem for p in cards_dir().glob("*.toml"))


def load_card(name_or_path: str) -> DeviceCard:
    """A shipped card by name, or a card file by path."""
    shipped = cards_dir() / f"{name_or_path}.toml"
    if shipped.is_file():
        return _read(shipped, str(shipped))
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return _read(path, str(path))
    raise CimsimError(
        f"unknown device card '{name_or_path}'; choose one of: {', '.join(shipped_cards())}, "
        "or give a .toml card file"
    )


def _read(path: Path, origin: str) -> DeviceCard:
    raw = read_toml(path, "device card")
    return card_from_dict(raw, origin=origin, default_name=path.stem)


def card_from_dict(raw: dict[str, Any], *, origin: str, default_name: str = "") -> DeviceCard:
    """Validate the tables of a card; errors name ``origin`` and the field."""
    unknown = set(raw) - {"name", "summary", "source", "noise", "device", "tile"}
    if unknown:
        raise CimsimError(f"device card {origin}: unknown key(s) {', '.join(sorted(unknown))}")
    device = raw.get("device")
    if not isinstance(device, dict) or "model" not in device:
        raise CimsimError(f"device card {origin}: needs a [device] table with a 'model'")
    device = dict(device)
    model = device.pop("model")
    if model not in NOISE_MODELS:
        raise CimsimError(
            f"device card {origin}: device.model '{model}' is not one of {', '.join(NOISE_MODELS)}"
        )
    noise = _build(NOISE_MODELS[model], device, f"device card {origin}", "device")
    tile_table = raw.get("tile") or {}
    if not isinstance(tile_table, dict):
        raise CimsimError(f"device card {origin}: 'tile' must be a table ([tile])")
    tile = _build(TileConfig, dict(tile_table), f"device card {origin}", "tile")
    noise_range = str(raw.get("noise", "0.01..0.1"))
    parse_range(noise_range, what=f"device card {origin}: noise")
    return DeviceCard(
        name=str(raw.get("name") or default_name),
        summary=str(raw.get("summary", "")),
        source=str(raw.get("source", "")),
        noise_range=noise_range,
        noise=noise,
        tile=tile,
        origin=origin,
    )


def _build(cls: type, values: dict[str, Any], where: str, section: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in names:
            raise CimsimError(f"{where}: unknown field {section}.{key}")
        expected = hints[key]
        if typing.get_origin(expected) is tuple:
            numbers = isinstance(value, list) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
            )
            if not numbers:
                raise CimsimError(f"{where}: {section}.{key} must be a list of numbers")
            values[key] = tuple(float(v) for v in value)
        else:
            try:
                values[key] = field_value(cls, key, value)
            except TypeError as err:
                raise CimsimError(f"{where}: {section}.{key} {err}") from None
    try:
        return cls(**values)
    except ValueError as err:
        raise CimsimError(f"{where}: {err}") from None


def describe(card: DeviceCard) -> str:
    """What ``cimsim devices show`` prints: the formula, every parameter with its unit, sources."""
    lines = [f"{card.name}: {card.summary}", f"source: {card.source}", f"file: {card.origin}"]
    lines += ["", f"model '{card.noise.name}' ({type(card.noise).__name__}):"]
    lines += ["  " + line.strip() for line in (type(card.noise).__doc__ or "").strip().splitlines()]
    lines += ["", f"default sweep: --noise {card.noise_range} (sigma in {card.noise.sigma_unit})"]
    lines += ["", "[device]"]
    for key, value in card.to_dict()["device"].items():
        unit = card.unit(key)
        lines.append(f"  {key} = {value!r}" + (f"   [{unit}]" if unit else ""))
    lines += ["", "[tile]" + ("   (ideal periphery)" if card.tile.is_ideal else "")]
    for key, value in dataclasses.asdict(card.tile).items():
        unit = card.unit(key)
        lines.append(f"  {key} = {value!r}" + (f"   [{unit}]" if unit else ""))
    return "\n".join(lines)
