"""The tile periphery: ideal settings are exact, DAC/ADC steps and saturation, noise draws."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from cimsim.chip.deploy import deploy, deployed
from cimsim.chip.tile import TileConfig, analog_linear, program_tiles, quantise, split_inputs
from cimsim.eval.models import load_model
from cimsim.noise_models import get_noise_model


def _layer(d_out: int = 48, d_in: int = 300, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(d_out, d_in, generator=g) * 0.05
    x = torch.randn(64, d_in, generator=g)
    return weight, x


def _run(weight, x, tile, read_noise=0.0, seed=0):
    weight_n, scale = program_tiles(weight, weight, tile)
    generator = torch.Generator().manual_seed(seed)
    return analog_linear(x, weight_n, scale, None, tile, read_noise, generator)


@pytest.mark.parametrize("rows", [0, 7, 64, 100, 128, 299, 300, 512])
def test_ideal_periphery_with_any_tile_size_is_digital(rows: int) -> None:
    weight, x = _layer()
    y = _run(weight, x, TileConfig(rows=rows))
    assert torch.allclose(y, x @ weight.T, atol=1e-5)


@pytest.mark.parametrize("rows", [0, 64, 300])
def test_noise_off_deployment_with_any_tile_size_equals_digital(
    tiny_bert_dir: Path, rows: int
) -> None:
    loaded = load_model(str(tiny_bert_dir))
    inputs = loaded.tokenizer(["a goal late on", "shares fell"], padding=True, return_tensors="pt")
    with torch.no_grad():
        digital = loaded.model(**inputs).last_hidden_state
        with deployed(loaded.model, get_noise_model("channel", 0.0), 3, TileConfig(rows=rows)):
            assert torch.allclose(loaded.model(**inputs).last_hidden_state, digital, atol=1e-5)


def test_split_is_near_equal_like_aihwkit() -> None:
    x = torch.arange(1.0, 301.0)[None]  # (1, 300)
    pieces = split_inputs(x, TileConfig(rows=128))  # 300 inputs on 128-row tiles
    assert pieces.shape == (1, 3, 100)
    assert torch.equal(pieces.flatten(), x.flatten())
    uneven = split_inputs(torch.arange(1.0, 11.0)[None], TileConfig(rows=4))  # 4 + 3 + 3
    assert uneven.shape == (1, 3, 4)
    assert uneven[0, :, -1].tolist() == [4.0, 0.0, 0.0]  # zero padding after shorter tiles


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_quantiser_levels_steps_and_saturation(bits: int) -> None:
    values = quantise(torch.linspace(-3, 3, 20001), bits, 2.0)
    levels = values.unique()
    step = 2 * 2.0 / (2**bits - 2)
    assert len(levels) == 2**bits - 1  # symmetric, zero included
    assert torch.allclose(levels.diff(), torch.full((len(levels) - 1,), step), atol=1e-5)
    assert values.min() == -2.0 and values.max() == 2.0  # saturates at the bound
    assert quantise(torch.tensor([0.26 * step]), bits, 2.0).item() == 0.0


def test_adc_saturation_clips_and_iterative_bound_management_recovers() -> None:
    weight, x = _layer(d_in=256)
    exact = x @ weight.T
    clipped = TileConfig(adc_bits=8, out_bound=1.0)
    managed = TileConfig(adc_bits=8, out_bound=1.0, bound_management="iterative")
    error = (_run(weight, x, clipped) - exact).abs().max() / exact.abs().max()
    error_managed = (_run(weight, x, managed) - exact).abs().max() / exact.abs().max()
    assert error > 0.3  # outputs beyond one full-scale unit are cut
    assert error_managed < 0.05


def test_dac_and_adc_error_has_the_quantisation_size() -> None:
    # With an 8-bit DAC only, each input moves by at most half a step of its abs-max.
    weight, x = _layer(d_in=256)
    y = _run(weight, x, TileConfig(dac_bits=8))
    step = 2 / 254 * x.abs().amax(dim=1, keepdim=True)  # (n, 1)
    bound = 0.5 * step * weight.abs().sum(dim=1)  # worst case per output
    assert ((y - x @ weight.T).abs() <= bound + 1e-5).all()


@pytest.mark.parametrize("inp_bound", [0.5, 1.0, 2.0])
def test_dac_codes_equal_the_documented_quantiser(inp_bound: float) -> None:
    # The engine feeds integer DAC codes; the module docstring's formula quantises x / alpha.
    weight, x = _layer(d_in=256)
    y = _run(weight, x, TileConfig(dac_bits=6, inp_bound=inp_bound))
    alpha = x.abs().amax(dim=1, keepdim=True)  # (n, 1)
    x_q = quantise(x / alpha, 6, inp_bound) * alpha
    assert torch.allclose(y, x_q @ weight.T, atol=1e-5)


def test_output_noise_has_its_std_in_full_scale_units() -> None:
    weight, x = _layer(d_out=64, d_in=256)
    tile = TileConfig(out_noise=0.05)
    y = _run(weight, x, tile)
    # y = s * alpha * (y_n + 0.05 z): the error divided by s * alpha is N(0, 0.05^2).
    scale = weight.abs().amax(dim=1)  # (d_out,)
    alpha = x.abs().amax(dim=1, keepdim=True)  # (n, 1)
    z = (y - x @ weight.T) / (scale * alpha)
    assert z.std().item() == pytest.approx(0.05, rel=0.05)  # 4096 draws: 1.1% s.e.


def test_read_noise_is_per_read_and_programming_noise_is_per_chip(tiny_bert_dir: Path) -> None:
    loaded = load_model(str(tiny_bert_dir))
    inputs = loaded.tokenizer(["a goal late on"], return_tensors="pt")

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return loaded.model(**inputs).last_hidden_state

    programming_only = get_noise_model("channel", 0.05)
    deploy(loaded.model, programming_only, seed=1)
    assert torch.equal(forward(), forward())  # the chip is fixed: reads repeat exactly
    with_reads = get_noise_model("channel", 0.05)
    with_reads = type(with_reads)(sigma=0.05, read_noise=0.02)
    deploy(loaded.model, with_reads, seed=1)
    first, second = forward(), forward()
    assert not torch.equal(first, second)  # every read draws afresh
    deploy(loaded.model, with_reads, seed=1)
    assert torch.equal(forward(), first)  # the same chip seed replays the same reads


def test_read_noise_std_matches_a_fresh_weight_error_per_read() -> None:
    weight, x = _layer(d_out=64, d_in=256)
    y = _run(weight, x, TileConfig(), read_noise=0.03)
    # Equivalent weight noise: each output's error is N(0, (0.03 * s_i * ||x||)^2).
    scale = weight.abs().amax(dim=1)
    norm = x.norm(dim=1, keepdim=True)
    z = (y - x @ weight.T) / (0.03 * scale * norm)
    assert z.std().item() == pytest.approx(1.0, rel=0.05)
    assert abs(z.mean().item()) < 0.05


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rows", -1, "rows must be >= 0"),
        ("adc_bits", 1, "adc_bits must be 0"),
        ("out_bound", 0.0, "out_bound must be a positive"),
        ("out_noise", float("nan"), "out_noise must be a finite"),
        ("bound_management", "sometimes", "bound_management must be one of"),
    ],
)
def test_tile_validation(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TileConfig(**{field: value})


@pytest.mark.parametrize("bound_management", ["none", "iterative"])
def test_backward_runs_through_the_periphery(bound_management: str) -> None:
    # Noise-aware training back-propagates through analog layers: in-place steps must not
    # overwrite a tensor autograd saved.
    weight, x = _layer()
    tile = TileConfig(rows=128, dac_bits=8, adc_bits=8, out_noise=0.04, out_bound=2.0)
    tile = dataclasses.replace(tile, bound_management=bound_management)
    x.requires_grad_(True)
    _run(weight, x, tile).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
