"""Device cards: every shipped card loads and deploys, round trips, and bad cards name the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from cimsim.chip.cards import card_from_dict, describe, load_card, shipped_cards
from cimsim.core.errors import CimsimError


@pytest.mark.parametrize("name", shipped_cards())
def test_shipped_cards_load_describe_and_program(name: str) -> None:
    card = load_card(name)
    assert card.name == name and card.summary and card.source
    text = describe(card)
    assert card.noise.sigma_unit in text and "[tile]" in text
    weight = torch.randn(16, 64)
    programmed = card.noise.program(weight, torch.Generator().manual_seed(0))
    assert programmed.shape == weight.shape and torch.isfinite(programmed).all()


@pytest.mark.parametrize("name", shipped_cards())
def test_cards_round_trip_through_their_dict(name: str) -> None:
    card = load_card(name)
    again = card_from_dict(card.to_dict(), origin=card.origin)
    assert again.to_dict() == card.to_dict()
    assert again.noise == card.noise and again.tile == card.tile


def test_with_value_changes_one_field_and_keeps_the_rest() -> None:
    card = load_card("rram-macro")
    changed = card.with_value("adc_bits", 6.0)
    assert changed.tile.adc_bits == 6 and isinstance(changed.tile.adc_bits, int)
    assert changed.noise == card.noise
    drifted = card.with_value("drift_time_s", 3600)
    assert drifted.noise.drift_time_s == 3600.0 and drifted.tile == card.tile
    assert "sigma" in card.numeric_fields() and "stuck_at_gmax_rate" in card.numeric_fields()
    assert card.unit("drift_time_s") == "s after programming"


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "card.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[device\n", "not valid TOML"),
        ('colour = "red"\n[device]\nmodel = "rram"\n', "unknown key(s) colour"),
        ('name = "x"\n', "needs a [device] table"),
        ('[device]\nmodel = "memristor"\n', "device.model 'memristor' is not one of"),
        ('[device]\nmodel = "rram"\nsigma = "high"\n', "device.sigma must be float"),
        ('[device]\nmodel = "rram"\nlevles = 16\n', "unknown field device.levles"),
        ('[device]\nmodel = "rram"\ng_min_us = 50.0\n', "g_min_us < g_max_us"),
        ('[device]\nmodel = "rram"\nprog_coeffs_us = ["a"]\n', "list of numbers"),
        ('[device]\nmodel = "rram"\nprog_coeffs_us = "1,2"\n', "list of numbers"),
        ('[device]\nmodel = "channel"\n[tile]\nadc_bits = 1\n', "adc_bits must be 0"),
        ('[device]\nmodel = "channel"\n[tile]\nadc_bits = 1000\n', "in 2..24"),
        ('[device]\nmodel = "channel"\n[tile]\nmax_bound_iterations = -1\n', ">= 1"),
        ('tile = [1]\n[device]\nmodel = "channel"\n', "'tile' must be a table"),
        ('[device]\nmodel = "channel"\n[tile]\nrows = 1.5\n', "tile.rows must be int"),
        ('noise = "0.1..0.01"\n[device]\nmodel = "channel"\n', "runs backwards"),
    ],
)
def test_bad_cards_are_one_line_errors_naming_the_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(CimsimError, match=re.escape(message)) as caught:
        load_card(path)
    assert "\n" not in str(caught.value) and path in str(caught.value)


def test_unknown_card_lists_the_shipped_ones() -> None:
    with pytest.raises(CimsimError, match="channel, multiplicative, pcm"):
        load_card("nosuchcard")


def test_a_users_card_by_path(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'name = "lab"\nnoise = "0.5..2:4"\n[device]\nmodel = "rram"\nsigma = 1.0\n'
        "prog_coeffs_us = [0.5, 1]\n[tile]\nrows = 256\nadc_bits = 6\n",
    )
    card = load_card(path)
    assert (card.name, card.noise.prog_coeffs_us, card.tile.rows) == ("lab", (0.5, 1.0), 256)
