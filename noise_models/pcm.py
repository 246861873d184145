"""aihwkit's PCM-like statistical programming-noise model, with sigma scaling its noise.

Mapping (per output channel i, differential pair, as aihwkit's column-wise weight scaling does):
``g+ = g_max * max(w, 0) / max_j |W[i, j]|``, ``g- = g_max * max(-w, 0) / max_j |W[i, j]|``, in µS.
Each conductance is programmed with aihwkit's fitted noise ``g_prog = g_t + sigma * s(g_t) * z``,
``s(g_t) = (c0 + c1 (g_t/g_max) + c2 (g_t/g_max)^2) * g_max / 25 µS``, ``z ~ N(0, 1)``, clipped at
0 µS, with c = (0.26348, 1.9650, -1.1731) µS fitted on measured PCM devices (Nandakumar et al.,
ICECS 2019) and g_max = 25 µS. The read-back weight is
``(g+ - g-) / g_max * max_j |W[i, j]|``. ``sigma`` is aihwkit's ``prog_noise_scale``: 1 is the
measured device, so the interesting range is about 0.5..3, not the default 0.01..0.1. Drift and
read noise are not applied here (t_inference = 0).
"""

from __future__ import annotations

import dataclasses

import torch
from aihwkit.inference.converter.conductance import SinglePairConductanceConverter
from aihwkit.inference.noise.pcm import PCMLikeNoiseModel

from .base import NoiseModel

_ZERO_CLIP = 1e-12


@dataclasses.dataclass(frozen=True)
class PcmProgrammingNoise(NoiseModel):
    """aihwkit ``PCMLikeNoiseModel`` programming noise with ``prog_noise_scale = sigma``; µS."""

    g_max_us: float = 25.0

    name = "pcm"
    summary = "aihwkit PCMLikeNoiseModel programming noise, sigma = prog_noise_scale"
    sigma_label = "PCM programming-noise scale"
    sigma_unit = "× measured PCM (aihwkit prog_noise_scale)"
    source = "Nandakumar et al., ICECS 2019, via aihwkit 1.1 PCMLikeNoiseModel"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.g_max_us > 0:
            raise ValueError(f"pcm: g_max_us must be positive, got {self.g_max_us}")

    def _program(self, weight, generator, out):
        model = PCMLikeNoiseModel(
            g_converter=SinglePairConductanceConverter(g_max=self.g_max_us),
            prog_noise_scale=self.sigma,
        )
        scale = weight.abs().amax(dim=1, keepdim=True).clamp(min=_ZERO_CLIP)  # (d_out, 1)
        # aihwkit draws from torch's global generator; pin it to ours for this one call so that a
        # chip seed alone decides the draw, and leave the caller's global RNG state untouched.
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        devices = [weight.device] if weight.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            conductances, params = model.g_converter.convert_to_conductances(weight / scale)
            programmed = [model.apply_programming_noise_to_conductance(g) for g in conductances]
            readback = model.g_converter.convert_back_to_weights(programmed, params)
        return out.copy_(readback).mul_(scale)
