"""A second engine for cross-checking: deploy a model through aihwkit's own analog tile.

``aihwkit_deploy(model, card, seed)`` returns an analog copy of ``model`` made by
``aihwkit.nn.conversion.convert_to_analog`` with a ``TorchInferenceRPUConfig`` (the pure-PyTorch
inference tile, the only one that runs with torch 2.13) built from the same :class:`DeviceCard`
that :func:`cimsim.chip.deploy.deploy` simulates. It is slow and memory-hungry (aihwkit keeps the
clean reference, the programmed weights and the drift parameters of every tile), so it exists to
check cimsim's engine, not to replace it. Settings aihwkit cannot simulate raise
:class:`CimsimError` rather than silently simulating something else.

How each card field maps onto aihwkit 1.1 (cimsim name -> aihwkit setting):

What is analog: the same layers as cimsim's: every exact ``torch.nn.Linear`` (``conversion_map``
restricted to it) except those whose dotted name contains a component of
``cimsim.chip.deploy.DIGITAL_MODULES`` or a LoRA/gate container (``lora_A``, ``lora_B``, ``gates``);
those are passed by exact dotted name as ``exclude_modules``. A subclass of ``nn.Linear`` that
cimsim would map is refused (aihwkit's conversion only replaces the exact class).

Mapping (``mapping``): ``weight_scaling_omega = 1.0`` and ``weight_scaling_columnwise = True``:
each tile stores ``W / s`` with ``s`` the max ``|w|`` of the tile's slice of each output row, as
cimsim's ``program_tiles`` does. ``max_input_size = tile.rows`` and ``max_output_size =
tile.cols`` (``_UNLIMITED`` when 0); both engines cut inputs into the same near-equal pieces.

Periphery (``forward``, an ``IOParameters``): ``is_perfect = True`` when ``tile.is_ideal``.
Otherwise ``inp_res``/``out_res = 1 / (2**bits - 2)`` (-1, i.e. off, when bits = 0), so a step is
``2 * bound / (2**bits - 2)`` as in ``cimsim.chip.tile.quantise``; ``inp_bound =
tile.inp_bound`` when ``dac_bits > 0``, else -1 (cimsim clips inputs only in its DAC);
``out_bound = tile.out_bound`` when ``adc_bits > 0``, else -1 (no ADC, no saturation);
``out_noise = tile.out_noise`` (both in full-scale output units); ``noise_management =
ABS_MAX`` (cimsim's per-input ``alpha``);
``bound_management = ITERATIVE`` or ``NONE`` per ``tile.bound_management``, with
``max_bm_factor = 2**max_bound_iterations - 1`` and ``max_bm_res = inf`` so aihwkit stops after
the same number of halvings (its default would also stop once the reduction exceeds
``0.25 / DAC step``). Known difference: aihwkit's torch tile re-runs the whole batch, at the same
reduction, when any output of any input saturates, and its saturation test is ``|y| > out_bound``
before clipping; cimsim re-runs only the saturated inputs and tests ``|y| >= out_bound``.

Devices (``noise_model``), programmed on the tile's normalised weights ``W / s``:

* ``pcm``, ``reram-wan2022``: ``PCMLikeNoiseModel(prog_noise_scale=sigma)`` and
  ``ReRamWan2022NoiseModel(noise_scale=sigma)`` with a ``SinglePairConductanceConverter(g_max,
  g_min)`` (``SingleDeviceConductanceConverter`` when ``differential = False``).
* ``reram-cmo``: ``ReRamCMONoiseModel(g_max, g_min, prog_noise_scale=sigma)`` (one offset device
  per weight; ``differential = True`` is refused).
* ``rram`` (cimsim's polynomial cell): ``PCMLikeNoiseModel(prog_coeff=prog_coeffs_us)``, whose
  programming step is the same formula in µS (coefficients must be >= 0, where cimsim's clip of
  the std at 0 never acts); its power-law drift has no aihwkit twin and is refused.
* ``channel``, ``tensor``, ``multiplicative``: aihwkit has no such model, so a small
  ``BaseNoiseModel`` subclass (:class:`_GaussianProgramming`) applies cimsim's formula to the
  tile's weights: ``w_n' = w_n + (sigma * m_i / s_i) z`` with ``m_i = max_j |W[i, j]|`` over the
  whole layer row (channel) or the whole layer (tensor), and ``w_n' = w_n (1 + sigma z)``
  (multiplicative). One instance per tile carries that tile's ``m_i / s_i``.
* A conductance device maps the abs-max of each *tile slice* of a row onto ``g_max`` (aihwkit's
  converter sees one tile); cimsim maps the abs-max of the *whole row*, which differs when a row
  is split over several tiles.
* Drift: ``drift_analog_weights(drift_time_s)`` when ``drift_time_s > 0``;
  ``drift_compensation = GlobalDriftCompensation()`` when the card asks for it, else ``None``.
  aihwkit measures the compensation per tile through the periphery (a forward pass of the
  identity matrix); cimsim computes one exact factor per layer.
* Refused: ``read_noise > 0`` (the torch tile refuses ``w_noise``), ``levels > 0`` (aihwkit's
  inference noise models have no conductance levels; its DISCRETIZE weight modifier acts only in
  training), stuck-at faults (no aihwkit model).

Seeding: aihwkit draws from torch's global generator. Inside ``torch.random.fork_rng`` (so the
caller's generator is left as it was) ``torch.manual_seed(seed)`` is called right before
``program_analog_weights()``; the drift draws continue that stream, so ``seed`` alone decides the
chip. Output noise in later forward passes comes from the caller's global generator.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from aihwkit.inference.compensation.drift import GlobalDriftCompensation
from aihwkit.inference.converter.conductance import (
    SingleDeviceConductanceConverter,
    SinglePairConductanceConverter,
)
from aihwkit.inference.noise.base import BaseNoiseModel
from aihwkit.inference.noise.pcm import PCMLikeNoiseModel
from aihwkit.inference.noise.reram import ReRamCMONoiseModel, ReRamWan2022NoiseModel
from aihwkit.nn import AnalogLinear as AihwkitAnalogLinear
from aihwkit.nn.conversion import convert_to_analog
from aihwkit.simulator.configs import TorchInferenceRPUConfig
from aihwkit.simulator.parameters.enums import BoundManagementType, NoiseManagementType
from torch import nn

from cimsim.chip.cards import DeviceCard
from cimsim.chip.deploy import _DIGITAL_CONTAINERS, DIGITAL_MODULES
from cimsim.chip.deploy import AnalogLinear as CimsimAnalogLinear
from cimsim.chip.tile import TileConfig
from cimsim.core.draws import seeded_global_rng
from cimsim.core.errors import CimsimError
from cimsim.noise_models import NoiseModel
from cimsim.noise_models.conductance import (
    ConductanceNoise,
    PcmNoise,
    ReramCmoNoise,
    ReramWan2022Noise,
    RramNoise,
)
from cimsim.noise_models.gaussian import (
    ChannelRelativeNoise,
    MultiplicativeNoise,
    TensorRelativeNoise,
)

_UNLIMITED = 2**31 - 1
"""Tile size standing for "no limit" (cimsim's 0)."""
_GAUSSIAN = (ChannelRelativeNoise, TensorRelativeNoise, MultiplicativeNoise)


def aihwkit_deploy(model: nn.Module, card: DeviceCard, seed: int) -> nn.Module:
    """An analog copy of the digital ``model``, programmed as chip instance ``seed`` of ``card``
    by aihwkit's torch inference tile (``model`` itself is left untouched); in eval mode."""
    _check_supported(card.noise)
    analog_names, digital_names = _split_linears(model)
    analog = convert_to_analog(
        model,
        rpu_config(card),
        conversion_map={nn.Linear: AihwkitAnalogLinear},
        exclude_modules=digital_names,
    ).eval()
    layers = dict(analog.named_analog_layers())
    if sorted(layers) != sorted(analog_names):
        raise CimsimError("--engine aihwkit: aihwkit converted other layers than cimsim maps")
    if isinstance(card.noise, _GAUSSIAN):
        for layer in layers.values():
            _attach_gaussian(layer, card.noise)
    device = next(analog.parameters()).device
    with seeded_global_rng(seed, device):
        analog.program_analog_weights()
        drift_time_s = getattr(card.noise, "drift_time_s", 0.0)
        if drift_time_s > 0:
            analog.drift_analog_weights(drift_time_s)
    return analog


def rpu_config(card: DeviceCard) -> Any:
    """The ``TorchInferenceRPUConfig`` that simulates ``card`` (module docstring)."""
    _check_supported(card.noise)
    config = TorchInferenceRPUConfig()
    config.mapping.weight_scaling_omega = 1.0
    config.mapping.weight_scaling_columnwise = True
    config.mapping.max_input_size = card.tile.rows or _UNLIMITED
    config.mapping.max_output_size = card.tile.cols or _UNLIMITED
    _set_periphery(config.forward, card.tile)
    config.noise_model = _noise_model(card.noise)
    compensate = isinstance(card.noise, ConductanceNoise) and card.noise.drift_compensation
    config.drift_compensation = GlobalDriftCompensation() if compensate else None
    return config


def _resolution(bits: int) -> float:
    """aihwkit's ``*_res``: the step as a fraction of the half range (-1: no quantisation)."""
    return 1.0 / (2**bits - 2) if bits else -1.0


def _set_periphery(forward: Any, tile: TileConfig) -> None:
    if tile.is_ideal:
        forward.is_perfect = True
        return
    forward.inp_res = _resolution(tile.dac_bits)
    forward.out_res = _resolution(tile.adc_bits)
    forward.inp_bound = tile.inp_bound if tile.dac_bits else -1.0
    forward.out_bound = tile.out_bound if tile.adc_bits else -1.0
    forward.out_noise = tile.out_noise
    forward.noise_management = NoiseManagementType.ABS_MAX
    iterative = tile.bound_management == "iterative"
    forward.bound_management = (
        BoundManagementType.ITERATIVE if iterative else BoundManagementType.NONE
    )
    forward.max_bm_factor = 2**tile.max_bound_iterations - 1
    forward.max_bm_res = math.inf


def _check_supported(noise: NoiseModel) -> None:
    def refuse(what: str) -> None:
        raise CimsimError(f"--engine aihwkit does not support {what} (noise model '{noise.name}')")

    if noise.read_noise > 0:
        refuse("read_noise (aihwkit's torch tile refuses per-read weight noise, w_noise)")
    if isinstance(noise, _GAUSSIAN):
        return
    if not isinstance(noise, (PcmNoise, ReramWan2022Noise, ReramCmoNoise, RramNoise)):
        refuse("this noise model")
    assert isinstance(noise, ConductanceNoise)
    if noise.levels:
        refuse("conductance levels (aihwkit's inference noise models are continuous)")
    if noise.stuck_at_gmin_rate or noise.stuck_at_gmax_rate:
        refuse("stuck-at faults")
    if isinstance(noise, ReramCmoNoise) and noise.differential:
        refuse("a differential pair (ReRamCMONoiseModel maps one device per weight)")
    if isinstance(noise, RramNoise):
        if min(noise.prog_coeffs_us) < 0:
            refuse("negative prog_coeffs_us (cimsim clips the std at 0, aihwkit does not)")
        if noise.drift_time_s > noise.drift_t0_s:
            refuse("drift (cimsim's power-law drift of the rram cell has no aihwkit model)")


def _noise_model(noise: NoiseModel) -> Any:
    if isinstance(noise, _GAUSSIAN):
        return _GaussianProgramming(noise.sigma, None)  # per-tile copies: _attach_gaussian
    assert isinstance(noise, ConductanceNoise)
    g_max, g_min = noise.g_max_us, noise.g_min_us
    if isinstance(noise, ReramCmoNoise):
        return ReRamCMONoiseModel(g_max=g_max, g_min=g_min, prog_noise_scale=noise.sigma)
    pair = (
        SinglePairConductanceConverter if noise.differential else SingleDeviceConductanceConverter
    )
    converter = pair(g_max=g_max, g_min=g_min)
    if isinstance(noise, ReramWan2022Noise):
        return ReRamWan2022NoiseModel(g_converter=converter, noise_scale=noise.sigma)
    if isinstance(noise, RramNoise):
        # With explicit coefficients PCMLikeNoiseModel takes them in µS at this g_max.
        return PCMLikeNoiseModel(
            prog_coeff=list(noise.prog_coeffs_us),
            g_converter=converter,
            prog_noise_scale=noise.sigma,
        )
    return PCMLikeNoiseModel(g_converter=converter, prog_noise_scale=noise.sigma)


def _split_linears(model: nn.Module) -> tuple[list[str], list[str]]:
    """Dotted names of the linear layers cimsim maps onto tiles, and of those it keeps digital."""
    analog, digital = [], []
    for name, module in model.named_modules():
        if isinstance(module, CimsimAnalogLinear) and module.programmed_weight is not None:
            raise CimsimError("--engine aihwkit needs the digital model, not a deployed one")
        if not isinstance(module, nn.Linear):
            continue
        if set(name.split(".")) & (DIGITAL_MODULES | _DIGITAL_CONTAINERS):
            digital.append(name)
        elif type(module) is nn.Linear:
            analog.append(name)
        else:
            raise CimsimError(
                f"--engine aihwkit does not support {name} ({type(module).__name__}): aihwkit "
                "converts only torch.nn.Linear"
            )
    return analog, digital


def _attach_gaussian(layer: Any, noise: NoiseModel) -> None:
    """Give each tile of ``layer`` the per-row std of cimsim's formula in its own units."""
    weight = layer.get_weights()[0]  # (d_out, d_in), the clean weights, mapping undone
    if isinstance(noise, ChannelRelativeNoise):
        reference = weight.abs().amax(dim=1)  # (d_out,)
    elif isinstance(noise, TensorRelativeNoise):
        reference = weight.abs().max().expand(weight.shape[0])
    else:
        return  # multiplicative noise is scale-free: the shared model is already exact
    array = layer.analog_module
    out_sizes = getattr(array, "out_sizes", [weight.shape[0]])
    columns = getattr(array, "array", [[array]])
    for tiles in columns:  # one list of tiles per input slice
        start = 0
        for size, tile in zip(out_sizes, tiles, strict=True):
            scale = tile.get_mapping_scales().to(reference)  # (size,) = max |w| of the slice
            row_std = noise.sigma * reference[start : start + size] / scale
            tile.rpu_config.noise_model = _GaussianProgramming(noise.sigma, row_std)
            start += size


class _GaussianProgramming(BaseNoiseModel):
    """cimsim's Gaussian programming noise as an aihwkit noise model, on a tile's weights.

    ``w_n' = w_n + row_std_i * z`` when ``row_std`` (per output row, in the tile's normalised
    units) is given, else ``w_n' = w_n (1 + sigma z)``; ``z ~ N(0, 1)`` per weight, from torch's
    global generator as every aihwkit model. No drift.
    """

    def __init__(self, sigma: float, row_std: torch.Tensor | None) -> None:
        super().__init__()
        self.sigma = sigma
        self.row_std = row_std

    @torch.no_grad()
    def apply_programming_noise(self, weights: torch.Tensor) -> tuple[torch.Tensor, list[None]]:
        z = torch.randn_like(weights)
        if self.row_std is None:
            return weights * (1 + self.sigma * z), [None]
        return weights + self.row_std.to(weights)[:, None] * z, [None]

    def apply_drift_noise(self, weights, drift_noise_parameters, t_inference):
        raise CimsimError("--engine aihwkit: Gaussian noise models have no drift")
