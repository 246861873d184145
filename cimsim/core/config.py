"""Frozen configs, nested by concern, and their JSON round trip.

Every config is a frozen dataclass whose fields are plain values, tuples or other configs, so
``from_dict(cls, to_dict(c)) == c`` holds for all of them (tested). Each field's help text is the
docstring string literal right below it, as in peft's configs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config dataclass."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


# Fields whose default changed when they were added: a stored config that lacks one was run with
# the value here, not with today's default. (A causal LM's prompt was tokenized in parts.)
FORMER_VALUES: dict[str, Any] = {"prompt_tokens": "parts"}


def with_defaults(stored: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``stored`` (a config written by an older version) with the fields added since at their
    ``defaults`` (``to_dict`` of the default config), or at their :data:`FORMER_VALUES`, at every
    level of nesting."""
    former = {k: v for k, v in FORMER_VALUES.items() if k in defaults and k not in stored}
    merged = {**defaults, **stored, **former}
    for key, default in defaults.items():
        if isinstance(default, dict) and isinstance(stored.get(key), dict):
            merged[key] = with_defaults(stored[key], default)
    return merged


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild ``cls`` from ``to_dict``'s output; unknown keys are an error."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
    kwargs = {key: _coerce(hints[key], value) for key, value in data.items()}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _coerce(options[0], value)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value)  # type: ignore[arg-type]
    if origin is tuple and isinstance(value, list):
        item = typing.get_args(hint)[0]
        return tuple(_coerce(item, v) for v in value)
    if hint is float and isinstance(value, int):
        return float(value)
    return value


def field_value(cls: type, key: str, value: Any) -> Any:
    """``value`` as field ``key`` of dataclass ``cls`` takes it from a TOML file: an integer where
    a float is expected becomes a float; a bool, int, float or str field given another type
    raises ``TypeError`` naming the expected type (other fields pass as they are)."""
    expected = typing.get_type_hints(cls)[key]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    simple = expected in (bool, int, float, str)
    if simple and type(value) is not expected:  # bool is not an int here, nor an int a float
        raise TypeError(f"must be {expected.__name__}, got {value!r}")
    return value


def config_hash(config: Any, length: int = 12) -> str:
    """A short stable hash of a config (or any JSON-ready value)."""
    data = to_dict(config) if dataclasses.is_dataclass(config) else config
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]
