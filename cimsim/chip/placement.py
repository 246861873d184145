"""Mixed placement: which base layers sit on analog tiles and which are kept digital.

A placement is a regular expression over tile names (:func:`cimsim.chip.deploy.named_tiles`,
e.g. ``bert.encoder.layer.3.attention.self.query`` or ``model.layers.0.mlp.down_proj``); the
tiles it matches (``re.search``) stay digital. Layer groups name the same tiles by what a
hardware team asks about: each module, each module kind (q, k, v, o, MLP in and out), each
block, or a user's own patterns.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from cimsim.core.errors import CimsimError

# Module kinds by the end of the tile name (BERT-style encoders, Llama/GPT-style decoders).
_KINDS = (
    (r"attention\.self\.query$|\.q_proj$|\.query$", "q"),
    (r"attention\.self\.key$|\.k_proj$|\.key$", "k"),
    (r"attention\.self\.value$|\.v_proj$|\.value$", "v"),
    (r"attention\.output\.dense$|\.o_proj$|\.out_proj$|attn\.c_proj$", "o"),
    (r"intermediate\.dense$|\.gate_proj$|\.up_proj$|\.fc1$|mlp\.c_fc$", "mlp_in"),
    (r"\.output\.dense$|\.down_proj$|\.fc2$|mlp\.c_proj$", "mlp_out"),
)
KINDS = tuple(kind for _, kind in _KINDS)
_BLOCK = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")
GROUPINGS = ("kind", "block", "module")


def kind_of(name: str) -> str:
    """The module kind of a tile name (``other`` for a projection none of the patterns know)."""
    for pattern, kind in _KINDS:
        if re.search(pattern, name):
            return kind
    return "other"


def block_of(name: str) -> int | None:
    """The transformer block a tile belongs to (None outside the numbered blocks)."""
    match = _BLOCK.search(name)
    return int(match.group(1)) if match else None


def compile_pattern(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as error:
        raise CimsimError(f"--digital {pattern!r} is not a regular expression: {error}") from None


@dataclasses.dataclass(frozen=True)
class Placement:
    """Tiles whose names ``pattern`` matches stay digital; ``None`` keeps every tile analog."""

    pattern: str | None = None

    def __post_init__(self) -> None:
        if self.pattern is not None:
            compile_pattern(self.pattern)

    def __call__(self, name: str) -> bool:
        return self.pattern is not None and re.search(self.pattern, name) is not None

    @property
    def predicate(self) -> Placement | None:
        """What :func:`cimsim.chip.deploy.deploy` takes as ``digital`` (None: all analog)."""
        return self if self.pattern is not None else None


def any_of(names: Iterable[str]) -> str:
    """One pattern matching exactly the tile names given."""
    return "|".join(f"^{re.escape(name)}$" for name in sorted(names))


def layer_groups(names: list[str], by: str | list[str]) -> dict[str, list[str]]:
    """Tile names grouped: ``by`` is one of :data:`GROUPINGS` or a list of patterns (each a
    group of the names it matches). Groups keep the order of their first tile; empty groups
    are an error, since a pattern that matches nothing is a mistake."""
    groups: dict[str, list[str]] = {}
    if isinstance(by, list):
        for pattern in by:
            compiled = compile_pattern(pattern)
            matched = [name for name in names if compiled.search(name)]
            if not matched:
                raise CimsimError(f"the group {pattern!r} matches no analog layer")
            groups[pattern] = matched
        return groups
    if by not in GROUPINGS:
        raise CimsimError(f"unknown grouping {by!r}: use {', '.join(GROUPINGS)} or patterns")
    for name in names:
        if by == "module":
            key = name
        elif by == "kind":
            key = kind_of(name)
        else:
            block = block_of(name)
            key = "other" if block is None else f"block {block}"
        groups.setdefault(key, []).append(name)
    return groups


def placement_record(tiles: list[tuple[str, int]], placement: Placement) -> dict[str, object]:
    """What result files record of a placement: the pattern, the tiles kept digital and the
    analog weights that remain (``tiles``: name and weight count of every tile)."""
    total = sum(count for _, count in tiles)
    digital = [name for name, _ in tiles if placement(name)]
    analog = sum(count for name, count in tiles if not placement(name))
    return {
        "digital_pattern": placement.pattern,
        "digital_layers": digital,
        "analog_weights": analog,
        "tile_weights": total,
        "analog_fraction": analog / total if total else 0.0,
    }
