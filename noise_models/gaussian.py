"""Gaussian programming noise, fixed for the life of a chip instance.

Three conventions for the scale of the noise; ``z ~ N(0, 1)`` is drawn independently per weight,
once per chip instance (one programming event):

* ``channel``:        w' = w + sigma * max_j |W[i, j]| * z   (per output channel i; the default)
* ``tensor``:         w' = w + sigma * max_ij |W[i, j]| * z  (whole weight matrix)
* ``multiplicative``: w' = w * (1 + sigma * z)

The channel-relative form is the convention of IBM's analog foundation-model work (Büchel et al.,
"Analog Foundation Models", IBM Research, 2025), where the programming error of a cell is a
fraction of the conductance range and each output channel is scaled to use the full range. It
hits small weights as hard as large ones, so it is far more damaging than the multiplicative form,
which leaves near-zero weights almost untouched (DESIGN.md: on MiniLM, multiplicative sigma 0.2
costs < 2 points while channel sigma 0.1 halves accuracy).
"""

from __future__ import annotations

import dataclasses

import torch

from .base import NoiseModel, row_abs_max


def _standard_normal(
    weight: torch.Tensor, generator: torch.Generator, out: torch.Tensor
) -> torch.Tensor:
    """Fill ``out`` with z ~ N(0, 1), one draw per weight, in place."""
    return torch.randn(
        weight.shape, generator=generator, out=out, dtype=weight.dtype, device=weight.device
    )


@dataclasses.dataclass(frozen=True)
class ChannelRelativeNoise(NoiseModel):
    """w' = w + sigma * max_j |W[i, j]| * z, z ~ N(0, 1); sigma dimensionless (fraction of the
    per-output-channel absolute maximum). Source: Büchel et al., Analog Foundation Models (2025)."""

    name = "channel"
    summary = "Gaussian, std = sigma x per-output-channel abs-max (default)"
    sigma_label = "programming-noise std"
    sigma_unit = "× max|W[row,:]|"
    source = "Büchel et al., 'Analog Foundation Models' (IBM Research, 2025)"

    def _program(self, weight, generator, out):
        scale = row_abs_max(weight)  # (d_out, 1)
        return _standard_normal(weight, generator, out).mul_(scale * self.sigma).add_(weight)


@dataclasses.dataclass(frozen=True)
class TensorRelativeNoise(NoiseModel):
    """w' = w + sigma * max_ij |W[i, j]| * z, z ~ N(0, 1); sigma dimensionless (fraction of the
    whole matrix's absolute maximum, i.e. one conductance range per tile)."""

    name = "tensor"
    summary = "Gaussian, std = sigma x per-tensor abs-max"
    sigma_label = "programming-noise std"
    sigma_unit = "× max|W|"
    source = "per-layer scaling as in Joshi et al., Nature Communications 11, 2473 (2020)"

    def _program(self, weight, generator, out):
        scale = weight.abs().max()
        return _standard_normal(weight, generator, out).mul_(scale * self.sigma).add_(weight)


@dataclasses.dataclass(frozen=True)
class MultiplicativeNoise(NoiseModel):
    """w' = w * (1 + sigma * z), z ~ N(0, 1); sigma dimensionless (relative std of each weight)."""

    name = "multiplicative"
    summary = "Gaussian, w * (1 + sigma z): relative to each weight"
    sigma_label = "relative weight-noise std"
    sigma_unit = "× |w|"
    source = "generic relative device-variation model (no single source)"

    def _program(self, weight, generator, out):
        return _standard_normal(weight, generator, out).mul_(self.sigma).add_(1.0).mul_(weight)
