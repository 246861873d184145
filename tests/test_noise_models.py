"""Noise models: empirical statistics against each documented formula, seeds, validation."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from cimsim.core.errors import CimsimError
from cimsim.noise_models import NOISE_MODELS, get_noise_model
from cimsim.noise_models.base import reused_scratch, scratch_tensor


def _weight(d_out: int = 256, d_in: int = 4096, seed: int = 0) -> torch.Tensor:
    # Rows with very different scales, so a per-tensor convention cannot pass a per-row test.
    g = torch.Generator().manual_seed(seed)
    scales = torch.logspace(-3, 0, d_out).unsqueeze(1)  # (d_out, 1)
    return torch.randn(d_out, d_in, generator=g) * scales


def _program(name: str, sigma: float, weight: torch.Tensor, seed: int = 1) -> torch.Tensor:
    return get_noise_model(name, sigma).program(weight, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("sigma", [0.01, 0.05, 0.2])
def test_channel_noise_std_is_sigma_times_row_absmax(sigma: float) -> None:
    weight = _weight()
    error = _program("channel", sigma, weight) - weight
    normalised = error / weight.abs().amax(dim=1, keepdim=True)  # (d_out, d_in), std sigma
    # Pooled over 1M draws the sample std is within 0.07% (1 s.d.) of sigma: 3% is generous.
    assert normalised.std().item() == pytest.approx(sigma, rel=0.03)
    # Per row, 4096 draws give a sample std within 1.1% (1 s.d.); 6% is over 5 s.d. for each of
    # the 256 rows, whose scales span three decades.
    per_row = normalised.std(dim=1)  # (d_out,)
    assert torch.allclose(per_row, torch.full_like(per_row, sigma), rtol=0.06)
    assert error.mean(dim=1).abs().max() < 4 * sigma * weight.abs().amax() / 64


@pytest.mark.parametrize("sigma", [0.01, 0.1])
def test_tensor_noise_std_is_sigma_times_tensor_absmax(sigma: float) -> None:
    weight = _weight()
    error = _program("tensor", sigma, weight) - weight
    assert error.std().item() == pytest.approx(sigma * weight.abs().max().item(), rel=0.01)
    # Same absolute std on every row, whatever the row's own scale.
    per_row = error.std(dim=1)
    assert per_row.max() / per_row.min() < 1.15


@pytest.mark.parametrize("sigma", [0.05, 0.2])
def test_multiplicative_noise_is_relative_to_each_weight(sigma: float) -> None:
    weight = _weight()
    relative = _program("multiplicative", sigma, weight) / weight - 1
    assert relative.std().item() == pytest.approx(sigma, rel=0.01)
    assert relative.mean().abs().item() < 0.01 * sigma


def test_pcm_matches_aihwkit_programming_polynomial() -> None:
    # One row, so its abs-max is 1: weight w > 0 is g+ = 25 uS * w and g- = 0 uS.
    levels = torch.tensor([0.1, 0.5, 1.0]).repeat_interleave(20000)
    weight = levels.unsqueeze(0)  # (1, 60000)
    c0, c1, c2 = 0.26348, 1.9650, -1.1731
    for sigma in (0.5, 1.0, 2.0):
        programmed = _program("pcm", sigma, weight)
        for level in (0.1, 0.5, 1.0):
            error_us = (programmed[0, levels == level] - level) * 25.0  # read-back error in uS
            std_plus = sigma * (c0 + c1 * level + c2 * level**2)
            # g- is programmed at 0 uS and clipped at 0: a half-normal with scale sigma*c0,
            # mean sigma*c0/sqrt(2 pi) and variance (sigma*c0)^2 (1/2 - 1/(2 pi)).
            std_minus = sigma * c0 * (0.5 - 1 / (2 * math.pi)) ** 0.5
            assert error_us.std().item() == pytest.approx(math.hypot(std_plus, std_minus), rel=0.03)
            expected_mean = -sigma * c0 / math.sqrt(2 * math.pi)
            assert error_us.mean().item() == pytest.approx(expected_mean, abs=0.05 * sigma)


@pytest.mark.parametrize("sigma", [0.5, 1.0])
def test_pcm_chip_is_the_one_aihwkits_own_programming_step_gives(sigma: float) -> None:
    # cimsim evaluates aihwkit's formula itself; with the same chip seed it must give the chip
    # that aihwkit's function gives when the global generator is seeded from the chip generator.
    from aihwkit.inference.converter.conductance import SinglePairConductanceConverter
    from aihwkit.inference.noise.pcm import PCMLikeNoiseModel

    weight = _weight(64, 300)
    model = PCMLikeNoiseModel(
        g_converter=SinglePairConductanceConverter(g_max=25.0), prog_noise_scale=sigma
    )
    chip = torch.Generator().manual_seed(7)
    scale = weight.abs().amax(dim=1, keepdim=True)
    devices = []
    for g_target in (25.0 * (weight / scale).clamp(min=0), 25.0 * (-weight / scale).clamp(min=0)):
        seed = int(torch.randint(0, 2**62, (1,), generator=chip))
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            devices.append(model.apply_programming_noise_to_conductance(g_target))
    expected = (devices[0] - devices[1]) / 25.0 * scale
    programmed = _program("pcm", sigma, weight, seed=7)
    assert torch.allclose(programmed, expected, rtol=1e-5, atol=1e-6 * scale.max().item())


@pytest.mark.parametrize("name", sorted(NOISE_MODELS))
def test_sigma_zero_is_exactly_the_target(name: str) -> None:
    weight = _weight(32, 64)
    assert torch.equal(_program(name, 0.0, weight), weight)


@pytest.mark.parametrize("name", sorted(NOISE_MODELS))
def test_same_seed_same_chip_different_seed_different_chip(name: str) -> None:
    weight = _weight(32, 64)
    sigma = 1.0 if name == "pcm" else 0.05
    first, again = _program(name, sigma, weight, seed=3), _program(name, sigma, weight, seed=3)
    other = _program(name, sigma, weight, seed=4)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_pcm_leaves_the_global_rng_untouched() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _program("pcm", 1.0, _weight(8, 16))
    assert torch.equal(torch.rand(3), expected)


def test_program_writes_into_out_without_allocating() -> None:
    weight = _weight(16, 32)
    out = torch.empty_like(weight)
    result = get_noise_model("channel", 0.1).program(weight, torch.Generator().manual_seed(0), out)
    assert result.data_ptr() == out.data_ptr()


@pytest.mark.parametrize("sigma", [-0.1, float("nan"), float("inf")])
def test_invalid_sigma_is_a_user_error(sigma: float) -> None:
    with pytest.raises(CimsimError, match="sigma"):
        get_noise_model("channel", sigma)


def test_unknown_model_lists_the_choices() -> None:
    with pytest.raises(CimsimError, match="channel, tensor, multiplicative, pcm"):
        get_noise_model("gaussian")


@pytest.mark.parametrize("name", sorted(NOISE_MODELS))
def test_every_model_documents_formula_unit_and_source(name: str) -> None:
    cls = NOISE_MODELS[name]
    assert cls.sigma_unit and cls.source and cls.summary
    assert cls.__doc__ and "sigma" in cls.__doc__
    model = cls(sigma=0.1)
    assert model.describe()["sigma_unit"] == cls.sigma_unit
    assert dataclasses.replace(model, sigma=0.2).sigma == 0.2
    assert name in cls.axis_label() and cls.sigma_unit in cls.axis_label()


# ---------------------------------------------------------------- conductance-domain families


def _rram(**fields: object):
    from cimsim.noise_models import NOISE_MODELS

    return NOISE_MODELS["rram"](**fields)


@pytest.mark.parametrize("levels", [2, 4, 16])
def test_levels_snap_the_pair_to_a_grid(levels: int) -> None:
    weight = _weight(64, 512)
    programmed = _rram(sigma=0.0, levels=levels).program(weight, torch.Generator())
    normalised = programmed / weight.abs().amax(dim=1, keepdim=True)
    grid = normalised * (levels - 1)  # g+ - g- on a pair of L-level devices: k / (L - 1)
    assert torch.allclose(grid, grid.round(), atol=1e-4)
    assert len(grid.round().unique()) <= 2 * levels - 1


@pytest.mark.parametrize("rate", [0.01, 0.05])
def test_stuck_at_rates(rate: float) -> None:
    weight = torch.zeros(256, 1024)
    weight[:, 0] = 1.0  # every row has full scale 1; all other targets are g+ = g- = g_min
    stuck_high = _rram(sigma=0.0, stuck_at_gmax_rate=rate).program(weight, torch.Generator())
    # A zero weight reads back non-zero when either of its two devices sticks at g_max.
    hit = (stuck_high[:, 1:] != 0).float().mean().item()
    assert hit == pytest.approx(1 - (1 - rate) ** 2, rel=0.05)  # 261k draws: s.e. < 2%
    full = torch.ones(256, 1024)
    stuck_low = _rram(sigma=0.0, stuck_at_gmin_rate=rate).program(full, torch.Generator())
    # A full-scale weight loses it when its g+ device sticks at g_min (its g- is there anyway).
    lost = (stuck_low == 0).float().mean().item()
    assert lost == pytest.approx(rate, rel=0.05)


@pytest.mark.parametrize("t", [10.0, 3600.0, 86400.0 * 365])
def test_rram_drift_follows_the_power_law(t: float) -> None:
    weight = _weight(32, 256)
    model = _rram(sigma=0.0, drift_nu_mean=0.05, drift_nu_std=0.0, drift_t0_s=1.0, drift_time_s=t)
    drifted = model.program(weight, torch.Generator())
    assert torch.allclose(drifted, weight * t**-0.05, rtol=1e-4, atol=1e-7)
    compensated = dataclasses.replace(model, drift_compensation=True)
    assert torch.allclose(compensated.program(weight, torch.Generator()), weight, rtol=1e-4)


def test_drift_spread_is_per_device() -> None:
    weight = torch.ones(64, 2048)
    model = _rram(sigma=0.0, drift_nu_mean=0.05, drift_nu_std=0.01, drift_time_s=1e4)
    ratio = model.program(weight, torch.Generator().manual_seed(0))
    nu = -ratio.log() / math.log(1e4)  # g- is at 0 and does not drift: g+ alone reads back
    assert nu.mean().item() == pytest.approx(0.05, rel=0.01)
    assert nu.std().item() == pytest.approx(0.01, rel=0.03)


def test_reram_wan2022_only_at_fitted_times() -> None:
    from cimsim.noise_models import NOISE_MODELS

    NOISE_MODELS["reram-wan2022"](sigma=1.0, drift_time_s=86400.0)
    with pytest.raises(ValueError, match="one of"):
        NOISE_MODELS["reram-wan2022"](sigma=1.0, drift_time_s=3600.0)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"g_min_us": 50.0}, "g_min_us < g_max_us"),
        ({"levels": 1}, "levels must be 0"),
        ({"stuck_at_gmin_rate": 0.6, "stuck_at_gmax_rate": 0.6}, "sum to <= 1"),
        ({"drift_time_s": -1.0}, "drift_time_s"),
        ({"read_noise": -0.1}, "read_noise"),
    ],
)
def test_conductance_validation(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _rram(sigma=1.0, **fields)


def test_rram_programming_std_follows_its_polynomial() -> None:
    coefficients = (0.8, 1.2, -0.5)  # µS at x = g / g_max = 0, per x, per x^2
    levels = torch.tensor([0.25, 0.5, 1.0]).repeat_interleave(20000)
    weight = levels.unsqueeze(0)  # (1, 60000): one row, full scale 1, so g+ = 40 µS * w
    programmed = _rram(sigma=1.5, prog_coeffs_us=coefficients).program(
        weight, torch.Generator().manual_seed(0)
    )
    for level in (0.25, 0.5, 1.0):
        error_us = (programmed[0, levels == level] - level) * 40.0
        std_plus = 1.5 * (0.8 + 1.2 * level - 0.5 * level**2)
        std_minus = 1.5 * 0.8 * (0.5 - 1 / (2 * math.pi)) ** 0.5  # g- at 0 µS, clipped
        assert error_us.std().item() == pytest.approx(math.hypot(std_plus, std_minus), rel=0.03)


@pytest.mark.parametrize(
    "name, changes",
    [
        ("pcm", {}),
        ("pcm", {"drift_time_s": 3600.0, "drift_compensation": True}),
        ("rram", {"levels": 16, "stuck_at_gmax_rate": 0.01}),
        ("reram-cmo", {"drift_time_s": 3600.0}),  # one device per weight
    ],
)
def test_reused_scratch_changes_no_weight_and_keeps_one_buffer_per_slot(name, changes) -> None:
    model = dataclasses.replace(get_noise_model(name, 1.0), **changes)
    weights = [_weight(64, 96, seed=0), _weight(32, 128, seed=1), _weight(64, 96, seed=2)]
    fresh_generator, reused_generator = torch.Generator(), torch.Generator()
    fresh_generator.manual_seed(3)
    reused_generator.manual_seed(3)
    fresh = [model.program(w, fresh_generator) for w in weights]
    with reused_scratch():
        reused = [model.program(w, reused_generator) for w in weights]
        first = scratch_tensor("conductances", (2, 8), weights[0])
        again = scratch_tensor("conductances", (4,), weights[0])
        assert again.data_ptr() == first.data_ptr()  # one buffer, handed out again
        for slot in ("conductances", "draws"):  # no programmed weight may live in a scratch
            scratch_tensor(slot, (2, 64, 96), weights[0]).fill_(math.nan)  # the largest layer
    for a, b in zip(fresh, reused, strict=True):
        assert torch.equal(a, b)  # the same chip, bit for bit
