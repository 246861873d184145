"""Conductance-domain device models: weights become pairs of programmed conductances (µS).

All of them run one fixed sequence per chip instance (one programming event), as aihwkit's noise
models do; each family fills in the programming-noise and drift steps:

1. Mapping, per output channel i (``s_i = max_j |W[i, j]|``, ``w_n = w / s_i`` in [-1, 1]):
   differential pair ``g+ = g_min + (g_max - g_min) max(w_n, 0)``,
   ``g- = g_min + (g_max - g_min) max(-w_n, 0)``; or, with ``differential = False``, one device
   with an offset, ``g = g_min + (g_max - g_min) (w_n + 1) / 2``.
2. Levels: with ``levels = L > 0`` each target snaps to the nearest of L equally spaced values
   in [g_min, g_max] (a cell with log2(L) bits).
3. Programming noise: ``g_prog = g_t + sigma * std(g_t) * z``, z ~ N(0, 1), clipped at 0 µS;
   ``std`` is the family's measured curve in µS and ``sigma`` scales it (1 = measured device).
4. Stuck-at faults: each device independently sticks at g_min with probability
   ``stuck_at_gmin_rate`` or at g_max with ``stuck_at_gmax_rate`` (its programming is lost).
5. Drift to ``drift_time_s`` seconds after programming (0: none), by the family's law.
6. Read-back ``w_n' = (g+ - g-) / (g_max - g_min)`` (or ``2 (g - g_min)/(g_max - g_min) - 1``),
   times ``alpha`` when ``drift_compensation`` is on: aihwkit's global drift compensation, one
   scalar per layer ``alpha = mean|W_n'(0)| / mean|W_n'(t)|`` (what a reference read-out of the
   tile right after programming and at time t measures), then ``w' = s_i * w_n'``.

Randomness comes only from the chip's generator. The aihwkit families call aihwkit's own noise
functions, which draw from torch's global generator; it is seeded from the chip generator inside
``torch.random.fork_rng`` so a chip seed alone decides the draw and the caller's RNG is untouched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import torch

from cimsim.core.draws import normal_each_, seeded_global_rng, stream_seed

from .base import NoiseModel, row_abs_max, scratch_tensor

_ZERO_CLIP = 1e-12


@contextlib.contextmanager
def _global_rng_from(generator: torch.Generator) -> Iterator[None]:
    """Seed torch's global RNG from ``generator`` for code that only knows the global one."""
    with seeded_global_rng(stream_seed(generator), generator.device):
        yield


@dataclasses.dataclass(frozen=True)
class ConductanceNoise(NoiseModel):
    """Base of the conductance-domain families (see the module docstring for the sequence)."""

    g_max_us: float = 25.0
    """Largest programmable conductance, µS."""
    g_min_us: float = 0.0
    """Smallest conductance, µS (on/off ratio = g_max / g_min)."""
    differential: bool = True
    """Signed weights as a pair (g+, g-); False: one device with an offset at mid-range."""
    levels: int = 0
    """Programmable levels per device (0: continuous; 2**bits for a multi-bit cell)."""
    stuck_at_gmin_rate: float = 0.0
    """Fraction of devices stuck at g_min."""
    stuck_at_gmax_rate: float = 0.0
    """Fraction of devices stuck at g_max."""
    drift_time_s: float = 0.0
    """Seconds between the end of programming and inference (0: no drift)."""
    drift_compensation: bool = False
    """Rescale each layer by aihwkit's global drift compensation factor."""

    sigma_label = "programming-noise scale"
    sigma_unit = "× measured device"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.g_min_us < self.g_max_us:
            raise ValueError(f"{self.name}: need 0 <= g_min_us < g_max_us")
        if self.levels < 0 or self.levels == 1:
            raise ValueError(f"{self.name}: levels must be 0 (continuous) or >= 2")
        rates = (self.stuck_at_gmin_rate, self.stuck_at_gmax_rate)
        if min(rates) < 0 or sum(rates) > 1:
            raise ValueError(f"{self.name}: stuck-at rates must be >= 0 and sum to <= 1")
        if not (math.isfinite(self.drift_time_s) and self.drift_time_s >= 0):
            raise ValueError(f"{self.name}: drift_time_s must be a finite number >= 0")

    @property
    def is_ideal(self) -> bool:
        # Levels, faults and drift change the weights even without programming noise.
        return (
            self.sigma == 0
            and self.levels == 0
            and self.stuck_at_gmin_rate == self.stuck_at_gmax_rate == 0
            and self.drift_time_s == 0
        )

    def _program(self, weight, generator, out):
        # Every step works on one (devices, d_out, d_in) buffer, in place where it can: a chip
        # costs a few passes over it besides the draws.
        scale = row_abs_max(weight).clamp_(min=_ZERO_CLIP)  # (d_out, 1)
        targets = self._quantise_(self._to_conductances(weight, scale))  # µS
        drifts = self.drift_time_s > 0  # drift reads the targets again, so keep them
        programmed = self._program_devices(
            targets.clone() if drifts else targets, generator, scratch=out
        )
        programmed = programmed.clamp_(min=0.0)
        for g in programmed:  # (d_out, d_in) per device, in device order
            self._stick_(g, generator)
        if not drifts:
            return self._to_weights(programmed, out).mul_(scale)
        read_back = self._to_weights(programmed, torch.empty_like(out))  # [-1, 1] before noise
        drifted = torch.stack(
            [self._drift(g, g_t, generator) for g, g_t in zip(programmed, targets, strict=True)]
        ).clamp_(min=0.0)
        drifted_back = self._to_weights(drifted, out)
        if self.drift_compensation:
            alpha = read_back.abs().mean() / drifted_back.abs().mean().clamp(min=_ZERO_CLIP)
            drifted_back.mul_(alpha)
        return drifted_back.mul_(scale)

    def _to_conductances(self, weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Target conductances (devices, d_out, d_in) in µS of ``w_n = weight / scale``."""
        span = self.g_max_us - self.g_min_us
        if not self.differential:  # g_min + span (w_n + 1) / 2
            g = scratch_tensor("conductances", (1, *weight.shape), weight)
            torch.mul(weight, span / 2 / scale, out=g[0]).add_(self.g_min_us + span / 2)
            return g
        g = scratch_tensor("conductances", (2, *weight.shape), weight)
        torch.mul(weight, span / scale, out=g[0])  # span w_n
        torch.neg(g[0], out=g[1])
        g = g.clamp_(min=0.0)  # g+ from max(w_n, 0), g- from max(-w_n, 0)
        return g.add_(self.g_min_us) if self.g_min_us else g

    def _to_weights(self, g: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Read-back ``w_n'`` (d_out, d_in) of conductances (devices, d_out, d_in), into ``out``."""
        span = self.g_max_us - self.g_min_us
        if self.differential:
            return torch.sub(g[0], g[1], out=out).div_(span)
        return torch.sub(g[0], self.g_min_us, out=out).mul_(2 / span).sub_(1)

    def _quantise_(self, g: torch.Tensor) -> torch.Tensor:
        if self.levels == 0:
            return g
        step = (self.g_max_us - self.g_min_us) / (self.levels - 1)
        return g.sub_(self.g_min_us).div_(step).round_().mul_(step).add_(self.g_min_us)

    def _stick_(self, g: torch.Tensor, generator: torch.Generator) -> None:
        if self.stuck_at_gmin_rate == self.stuck_at_gmax_rate == 0:
            return
        u = torch.rand(g.shape, generator=generator, device=g.device, dtype=g.dtype)
        upper = self.stuck_at_gmin_rate + self.stuck_at_gmax_rate
        g.masked_fill_((u >= self.stuck_at_gmin_rate) & (u < upper), self.g_max_us)
        g.masked_fill_(u < self.stuck_at_gmin_rate, self.g_min_us)

    def _program_devices(
        self, g: torch.Tensor, generator: torch.Generator, scratch: torch.Tensor
    ) -> torch.Tensor:
        """Programmed conductances (devices, d_out, d_in) of targets ``g``, device after device
        (clipping happens after); may overwrite ``g`` and use ``scratch`` (d_out, d_in)."""
        return torch.stack([self._program_conductance(device, generator) for device in g])

    def _program_conductance(self, g: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """g_t + sigma * std(g_t) * z (clipping happens after)."""
        if self.sigma == 0:
            return g.clone()
        z = torch.randn(g.shape, generator=generator, device=g.device, dtype=g.dtype)
        return g + self.sigma * self.programming_std_us(g) * z

    def programming_std_us(self, g_target: torch.Tensor) -> torch.Tensor:
        """The family's measured programming-noise std at target conductance g_t, µS."""
        raise NotImplementedError(f"{self.name} defines its own programming step")

    def _drift(
        self, g_prog: torch.Tensor, g_target: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Conductance at ``drift_time_s``, from the programmed one (and the target)."""
        raise NotImplementedError(f"{self.name} has no drift model")


def _polynomial(
    coefficients: Sequence[float], x: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """c0 + c1 x + c2 x^2 + ..., by Horner's rule on one buffer (``out`` when given)."""
    if len(coefficients) == 1:
        return torch.full_like(x, coefficients[0]) if out is None else out.fill_(coefficients[0])
    result = torch.mul(x, coefficients[-1], out=out).add_(coefficients[-2])
    for c in reversed(coefficients[:-2]):
        result = result.mul_(x).add_(c)
    return result


@dataclasses.dataclass(frozen=True)
class RramNoise(ConductanceNoise):
    """Generic filamentary RRAM cell, the model ``cimsim devices fit`` fits to measurements.

    Programming: ``g_prog = g_t + sigma * std(g_t) * z`` with
    ``std(g_t) = sum_k c_k (g_t / g_max)^k`` µS (``prog_coeffs_us`` = c_0, c_1, ...).
    Drift: ``g(t) = g_prog (t / t_0)^(-nu)``, ``nu ~ N(drift_nu_mean, drift_nu_std)`` per device,
    clipped at 0, t_0 = ``drift_t0_s``. Units: µS, seconds; nu dimensionless.
    Defaults: a 40 µS cell with 1 µS programming noise rising to 1.6 µS at g_max and a weak drift
    (nu 0.01 ± 0.005), in the range reported for HfOx RRAM (Wan et al., Nature 608, 504, 2022).
    """

    g_max_us: float = 40.0
    prog_coeffs_us: tuple[float, ...] = (1.0, 0.6)
    """Programming-noise std polynomial in g_t / g_max, µS per power."""
    drift_nu_mean: float = 0.01
    """Mean drift exponent."""
    drift_nu_std: float = 0.005
    """Device-to-device spread of the drift exponent."""
    drift_t0_s: float = 1.0
    """Time of the first read after programming, s."""

    name = "rram"
    summary = "generic RRAM: polynomial programming noise, power-law drift (fit target)"
    source = "cimsim; defaults in the range of Wan et al., Nature 608, 504 (2022)"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.prog_coeffs_us:
            raise ValueError("rram: prog_coeffs_us needs at least one coefficient")
        if self.drift_nu_std < 0 or self.drift_t0_s <= 0:
            raise ValueError("rram: drift_nu_std must be >= 0 and drift_t0_s > 0")

    def programming_std_us(self, g_target):
        return _polynomial(self.prog_coeffs_us, g_target / self.g_max_us).clamp(min=0.0)

    def _drift(self, g_prog, g_target, generator):
        if self.drift_time_s <= self.drift_t0_s:
            return g_prog.clone()
        z = torch.randn(g_prog.shape, generator=generator, device=g_prog.device, dtype=g_prog.dtype)
        nu = (self.drift_nu_mean + self.drift_nu_std * z).clamp(min=0.0)
        return g_prog * (self.drift_time_s / self.drift_t0_s) ** (-nu)


class _AihwkitFamily(ConductanceNoise):
    """A family whose programming and drift steps are aihwkit's statistical model."""

    def _aihwkit(self) -> Any:
        raise NotImplementedError

    def _program_conductance(self, g, generator):
        with _global_rng_from(generator):
            return self._aihwkit().apply_programming_noise_to_conductance(g)

    def _drift(self, g_prog, g_target, generator):
        model = self._aihwkit()
        with _global_rng_from(generator):
            coefficients = model.generate_drift_coefficients(g_target)
            return model.apply_drift_noise_to_conductance(g_prog, coefficients, self.drift_time_s)


@dataclasses.dataclass(frozen=True)
class PcmNoise(_AihwkitFamily):
    """aihwkit ``PCMLikeNoiseModel`` (Nandakumar et al., ICECS 2019), sigma = prog_noise_scale.

    Programming: ``std(g_t) = (0.26348 + 1.9650 x - 1.1731 x^2) * g_max / 25`` µS, x = g_t/g_max.
    Drift: ``g(t) = g_prog (t / 20 s)^(-nu)`` with nu depending on g_t (mean 0.049..0.1), plus
    1/f read noise accumulated to t, all as aihwkit 1.1 implements them. g_max = 25 µS.
    """

    name = "pcm"
    summary = "aihwkit PCMLikeNoiseModel: PCM programming noise and drift, sigma = prog_noise_scale"
    source = "Nandakumar et al., ICECS 2019, via aihwkit 1.1 PCMLikeNoiseModel"

    def _aihwkit(self):
        from aihwkit.inference.converter.conductance import SinglePairConductanceConverter
        from aihwkit.inference.noise.pcm import PCMLikeNoiseModel

        return PCMLikeNoiseModel(
            g_converter=SinglePairConductanceConverter(g_max=self.g_max_us),
            prog_noise_scale=self.sigma,
        )

    def _program_devices(self, g, generator, scratch):
        """aihwkit's PCM programming step, evaluated in place (fresh buffers cost page faults).

        aihwkit draws each device's z from the global generator, which ``_global_rng_from``
        seeds from the chip generator; here each device gets a generator seeded the same way,
        so a chip seed gives the same chip as aihwkit's function would (tested), and the two
        devices' draws are filled side by side.
        """
        if self.sigma == 0:
            return g
        model = self._aihwkit()
        streams = [torch.Generator(device=g.device).manual_seed(stream_seed(generator)) for _ in g]
        z = scratch_tensor("draws", tuple(g.shape), g)  # (devices, d_out, d_in)
        normal_each_(list(zip(z, streams, strict=True)))
        # sigma std(g) = sigma sum_k c_k (g / g_max)^k g_max / g_ref: one polynomial in g, µS.
        g_max, g_ref = model.g_max, model.prog_coeff_g_max_reference
        coefficients = [
            self.sigma * c * g_max / g_ref / g_max**k for k, c in enumerate(model.prog_coeff)
        ]
        for device, z_device in zip(g, z, strict=True):
            device.addcmul_(_polynomial(coefficients, device, out=scratch), z_device)
        return g


@dataclasses.dataclass(frozen=True)
class ReramWan2022Noise(_AihwkitFamily):
    """aihwkit ``ReRamWan2022NoiseModel``: ReRAM data of Wan et al., Nature 608, 504 (2022).

    Programming: ``std(g_t)`` a 4th-order polynomial in g_t/g_max fitted to the published
    figures (µS, referenced to g_max = 40 µS), scaled by sigma. Drift: conductances re-drawn
    around the target with the polynomial fitted at t; aihwkit has fits only at t = 1 s, 1 day and
    2 days, so ``drift_time_s`` must be 0, 1, 86400 or 172800.
    """

    g_max_us: float = 40.0

    name = "reram-wan2022"
    summary = "aihwkit ReRamWan2022NoiseModel: RRAM programming noise and relaxation"
    source = "Wan et al., Nature 608, 504 (2022), via aihwkit 1.1 ReRamWan2022NoiseModel"
    drift_times_s: ClassVar[tuple[float, ...]] = (0.0, 1.0, 86400.0, 172800.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.drift_time_s not in self.drift_times_s:
            raise ValueError(
                f"reram-wan2022: drift_time_s must be one of {self.drift_times_s} (aihwkit's fits)"
            )

    def _aihwkit(self):
        from aihwkit.inference.converter.conductance import SinglePairConductanceConverter
        from aihwkit.inference.noise.reram import ReRamWan2022NoiseModel

        return ReRamWan2022NoiseModel(
            g_converter=SinglePairConductanceConverter(g_max=self.g_max_us),
            noise_scale=self.sigma,
        )


@dataclasses.dataclass(frozen=True)
class ReramCmoNoise(_AihwkitFamily):
    """aihwkit ``ReRamCMONoiseModel``: CMO/HfOx ReRAM of IBM Research Zurich (Falcone et al.).

    One device per weight with an offset (``differential = False``), as aihwkit maps it.
    Programming: ``g_prog = g_t + sigma * std(g_t) * z`` with
    ``std(g_t) = 0.00081107 + 0.00106879 g_t`` µS (aihwkit's default acceptance range 2e-2 is not
    among its fitted keys, so it uses the tightest, 0.2 %). No clipping at 0. Drift: a
    conductance-independent relaxation, mean shift -0.089 µS per e-fold of t and spread
    (0.042 ln t + 0.412) µS, plus read noise, clipped to [g_min, g_max]. g_min 9, g_max 88.2 µS.
    """

    g_max_us: float = 88.199997
    g_min_us: float = 9.0
    differential: bool = False

    name = "reram-cmo"
    summary = "aihwkit ReRamCMONoiseModel: CMO/HfOx ReRAM programming noise and relaxation"
    source = "Falcone et al. (IBM Research Zurich), via aihwkit 1.1 ReRamCMONoiseModel"

    def _aihwkit(self):
        from aihwkit.inference.noise.reram import ReRamCMONoiseModel

        return ReRamCMONoiseModel(
            g_max=self.g_max_us, g_min=self.g_min_us, prog_noise_scale=self.sigma
        )
