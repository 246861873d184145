"""The contract every noise model fulfils: program a target weight matrix once per chip instance.

A noise model is a frozen dataclass whose only sweepable field is ``sigma``; its class attributes
say what sigma means (``sigma_label``, ``sigma_unit``) so that every result column, plot axis and
help text can name the model and the unit. Weights follow ``torch.nn.Linear``: shape
``(d_out, d_in)``, one row per output channel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

import torch

_scratch = threading.local()


def row_abs_max(weight: torch.Tensor) -> torch.Tensor:
    """``max_j |W[i, j]|`` as (d_out, 1): one pass over ``weight``, no copy of ``|W|``."""
    low, high = torch.aminmax(weight, dim=1, keepdim=True)  # (d_out, 1) each
    return torch.maximum(high, -low)


@contextlib.contextmanager
def reused_scratch() -> Iterator[None]:
    """Inside the block, :func:`scratch_tensor` buffers are kept and handed out again.

    A fresh tensor of several MB is mapped anew by the allocator and costs a page fault per 4 KiB
    on first touch, about as much as drawing its Gaussians; programming a chip layer after layer
    would pay that for every layer. ``deploy`` programs a chip inside this block, so the buffers
    are sized once by the largest layer and released when the chip is done.
    """
    previous = getattr(_scratch, "pool", None)
    _scratch.pool = {} if previous is None else previous
    try:
        yield
    finally:
        _scratch.pool = previous


def scratch_tensor(slot: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """An uninitialised ``shape`` tensor with ``like``'s dtype and device, for intermediate values.

    Inside :func:`reused_scratch` it is a view of the block's buffer for ``slot``, overwritten
    by the next ``scratch_tensor(slot, ...)``: only for values that are dead once the calling
    step returns. Outside the block it is a fresh tensor.
    """
    pool: dict[str, torch.Tensor] | None = getattr(_scratch, "pool", None)
    if pool is None:
        return like.new_empty(shape)
    numel = math.prod(shape)
    buffer = pool.get(slot)
    if (
        buffer is None
        or buffer.numel() < numel
        or (buffer.dtype, buffer.device) != (like.dtype, like.device)
    ):
        buffer = pool[slot] = like.new_empty(numel)
    return buffer[:numel].view(shape)


@dataclasses.dataclass(frozen=True)
class NoiseModel(ABC):
    """Base class: ``program(weight, generator)`` returns the weight as the chip reads it back."""

    sigma: float = 0.0
    """Programming-noise level; its meaning and unit are the model's (``sigma_unit``)."""
    read_noise: float = 0.0
    """Cycle-to-cycle read noise: std of a fresh per-read weight error, as a fraction of the
    output channel's max |w|, drawn anew for every input vector (every forward pass)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    sigma_label: ClassVar[str]
    sigma_unit: ClassVar[str]
    source: ClassVar[str]

    def __post_init__(self) -> None:
        if not (isinstance(self.sigma, (int, float)) and math.isfinite(self.sigma)):
            raise ValueError(f"{self.name}: sigma must be a finite number, got {self.sigma!r}")
        if self.sigma < 0:
            raise ValueError(f"{self.name}: sigma must be non-negative, got {self.sigma}")
        if not (math.isfinite(self.read_noise) and self.read_noise >= 0):
            raise ValueError(f"{self.name}: read_noise must be a finite number >= 0")

    @property
    def is_ideal(self) -> bool:
        """True when programming returns the target weights exactly."""
        return self.sigma == 0.0

    @torch.no_grad()
    def program(
        self, weight: torch.Tensor, generator: torch.Generator, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Program ``weight`` (d_out, d_in) once; write into ``out`` when given (no allocation).

        ``generator`` must live on ``weight.device``; it is the only source of randomness, so one
        generator state is one chip instance.
        """
        if weight.dim() != 2:
            raise ValueError(
                f"{self.name}: expected a (d_out, d_in) weight, got {tuple(weight.shape)}"
            )
        if out is None:
            out = torch.empty_like(weight)
        if self.is_ideal:
            return out.copy_(weight)
        return self._program(weight, generator, out)

    @abstractmethod
    def _program(
        self, weight: torch.Tensor, generator: torch.Generator, out: torch.Tensor
    ) -> torch.Tensor:
        """Write the programmed weight into ``out`` and return it (sigma > 0 here)."""

    def describe(self) -> dict[str, Any]:
        """Everything a result file needs to say which physics produced a number."""
        return {
            "noise_model": self.name,
            "sigma": self.sigma,
            "sigma_unit": self.sigma_unit,
            "params": dataclasses.asdict(self),
        }

    @classmethod
    def axis_label(cls) -> str:
        """Plot axis text: the symbol, what it is relative to, and the model name."""
        return f"σ, {cls.sigma_label} [{cls.sigma_unit}] ({cls.name})"
