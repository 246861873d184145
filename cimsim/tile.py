"""The periphery of a crossbar tile: DAC, ADC, output noise, read noise, tile splitting.

One analog MVM, per tile and per input vector (the convention of aihwkit's inference tiles,
``IOParameters`` with abs-max noise management and per-channel weight scaling):

1. Split: a layer with ``d_in > rows`` is cut into ``ceil(d_in / rows)`` near-equal tiles along
   its input; each tile computes its partial output through its own DAC/ADC, and the partial
   outputs are summed digitally. Splitting the outputs over ``cols`` changes no number (every
   output column has its own ADC anyway), so ``cols`` is recorded but needs no simulation.
2. Noise management: ``alpha = max_j |x_j|`` over the tile's slice; ``x_n = x / alpha``.
3. DAC (``dac_bits = b > 0``): ``x_q = clip(round(x_n / r_in) r_in, -inp_bound, inp_bound)`` with
   ``r_in = 2 inp_bound / (2^b - 2)``: 2^b - 1 levels, symmetric around 0.
4. MVM on normalised weights ``W_n = W' / s`` (s = the max |w| of the target over the tile's
   slice of the channel, so |W_n| <= ~1):
   ``y_n = W_n x_q``, in units of one full-scale weight times one full-scale input.
5. Read noise (cycle-to-cycle, ``read_noise`` of the device): a fresh weight error of std
   ``read_noise`` (in the same full-scale units) for every read is, for each output,
   exactly a Gaussian of std ``read_noise * ||x_q||_2``; it is drawn in that form (cheap).
6. Output noise: ``+ out_noise * z`` (std in full-scale output units).
7. ADC (``adc_bits = b > 0``): ``y_q = clip(round(y / r_out) r_out, -out_bound, out_bound)``,
   ``r_out = 2 out_bound / (2^b - 2)``. With ``bound_management = "iterative"`` an input vector
   whose output saturates (its rounded code lies beyond the last one) is re-run at half its
   scale, up to ``max_bound_iterations`` times, as aihwkit's iterative bound management does.
8. ``y = s * alpha * y_q``, summed over tiles, plus the digital bias.

With every periphery setting ideal (the default), this is exactly ``F.linear(x, W', b)``.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch

_ZERO_CLIP = 1e-12
BOUND_MANAGEMENT = ("none", "iterative")


@dataclasses.dataclass(frozen=True)
class TileConfig:
    """A crossbar macro: tile size and periphery. Zero means "ideal" / "unlimited"."""

    rows: int = 0
    """Inputs per tile (0: one tile per layer); larger layers are split and summed digitally."""
    cols: int = 0
    """Outputs per tile (0: unlimited); recorded, no effect on the numbers (see module doc)."""
    dac_bits: int = 0
    """Input DAC resolution in bits (0: ideal)."""
    inp_bound: float = 1.0
    """DAC range, in units of the input vector's abs-max."""
    adc_bits: int = 0
    """Output ADC resolution in bits (0: ideal)."""
    out_bound: float = 20.0
    """ADC range in full-scale output units (aihwkit's default 20); used when adc_bits > 0."""
    out_noise: float = 0.0
    """Additive output noise std, full-scale output units."""
    bound_management: str = "none"
    """'none': saturated outputs clip; 'iterative': re-run saturated inputs at half scale."""
    max_bound_iterations: int = 10
    """Most halvings of an input under iterative bound management."""

    def __post_init__(self) -> None:
        for field in ("rows", "cols", "dac_bits", "adc_bits"):
            if getattr(self, field) < 0:
                raise ValueError(f"tile: {field} must be >= 0")
        for field in ("dac_bits", "adc_bits"):
            if getattr(self, field) == 1:
                raise ValueError(f"tile: {field} must be 0 (ideal) or >= 2")
        for field in ("inp_bound", "out_bound"):
            value = getattr(self, field)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"tile: {field} must be a positive finite number")
        if not (math.isfinite(self.out_noise) and self.out_noise >= 0):
            raise ValueError("tile: out_noise must be a finite number >= 0")
        if self.bound_management not in BOUND_MANAGEMENT:
            raise ValueError(f"tile: bound_management must be one of {BOUND_MANAGEMENT}")

    @property
    def is_ideal(self) -> bool:
        """True when a forward pass is exactly the digital one with the programmed weights."""
        return self.dac_bits == 0 and self.adc_bits == 0 and self.out_noise == 0

    def n_tiles(self, d_in: int) -> int:
        return 1 if self.rows == 0 else math.ceil(d_in / self.rows)


def quantise(x: torch.Tensor, bits: int, bound: float) -> torch.Tensor:
    """Clip to [-bound, bound] and round to 2^bits - 1 symmetric levels (bits 0: untouched)."""
    if bits == 0:
        return x
    step = 2 * bound / (2**bits - 2)
    return (x / step).round().mul(step).clamp(-bound, bound)


@functools.lru_cache(maxsize=64)
def _split_index(d_in: int, rows: int) -> torch.Tensor:
    """(tiles, width) source column of every tile position; ``d_in`` marks padding.

    Inputs are split into near-equal pieces, the first ``d_in % tiles`` one longer (aihwkit's
    rule: 300 inputs on 128-row tiles are 100 + 100 + 100, not 128 + 128 + 44).
    """
    n_tiles = math.ceil(d_in / rows) if rows else 1
    base, extra = divmod(d_in, n_tiles)
    width = base + (extra > 0)
    index = torch.full((n_tiles, width), d_in, dtype=torch.long)
    start = 0
    for t in range(n_tiles):
        size = base + (t < extra)
        index[t, :size] = torch.arange(start, start + size)
        start += size
    return index


def split_inputs(matrix: torch.Tensor, tile: TileConfig) -> torch.Tensor:
    """(..., d_in) -> (..., tiles, width), zero where a shorter tile is padded."""
    d_in = matrix.shape[-1]
    index = _split_index(d_in, tile.rows if tile.rows and tile.rows < d_in else 0)
    n_tiles, width = index.shape
    if n_tiles * width == d_in:  # an even split is a free view
        return matrix.unflatten(-1, (n_tiles, width))
    padded = torch.nn.functional.pad(matrix, (0, 1))  # column d_in is the zero padding
    return padded[..., index.to(matrix.device)]


def join_inputs(slices: torch.Tensor, d_in: int, tile: TileConfig) -> torch.Tensor:
    """Inverse of :func:`split_inputs`: (..., tiles, width) -> (..., d_in), padding dropped."""
    index = _split_index(d_in, tile.rows if tile.rows and tile.rows < d_in else 0)
    flat = slices.flatten(-2)  # (..., tiles * width)
    out = flat.new_zeros(*flat.shape[:-1], d_in + 1)
    out[..., index.flatten().to(flat.device)] = flat
    return out[..., :d_in]


def output_unit(tile: TileConfig) -> float:
    """One ADC step in full-scale output units (1 without an ADC): the unit tiles compute in."""
    return 2 * tile.out_bound / (2**tile.adc_bits - 2) if tile.adc_bits else 1.0


def program_tiles(
    weight: torch.Tensor, target: torch.Tensor, tile: TileConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tile normalised programmed weights, tile-major for ``bmm``: (tiles, width, d_out), and
    each (tile, channel)'s full scale (tiles, 1, d_out): max |w| of the target over that tile's
    slice of the row. Each tile maps its own slice onto the full conductance range (aihwkit's
    column-wise weight scaling). The weights are stored in units of one ADC step
    (:func:`output_unit`), so the matrix product lands directly on the ADC's code scale."""
    scale = split_inputs(target, tile).abs().amax(dim=-1).clamp(min=_ZERO_CLIP)  # (d_out, tiles)
    weight_n = split_inputs(weight, tile) / (scale[..., None] * output_unit(tile))
    return weight_n.permute(1, 2, 0).contiguous(), scale.T.unsqueeze(1).contiguous()


def analog_linear(
    x: torch.Tensor,
    weight_n: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor | None,
    tile: TileConfig,
    read_noise: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """``F.linear`` through the tile periphery (module docstring), with ``weight_n, scale`` from
    :func:`program_tiles`."""
    d_out = weight_n.shape[-1]
    slices = split_inputs(x.reshape(-1, x.shape[-1]), tile).transpose(0, 1)  # (tiles, n, width)
    alpha = slices.abs().amax(dim=-1, keepdim=True).clamp(min=_ZERO_CLIP)  # (tiles, n, 1)
    partial = _tile_outputs(slices / alpha, weight_n, tile, read_noise, generator)
    # (tiles, n, d_out): from ADC steps back to weight x input units
    out = partial.mul_(alpha * output_unit(tile)).mul_(scale)
    out = out[0] if out.shape[0] == 1 else out.sum(dim=0)  # digital sum over tiles
    if bias is not None:
        out = out.add_(bias)
    return out.view(*x.shape[:-1], d_out)


def _tile_outputs(
    x_n: torch.Tensor,
    weight_n: torch.Tensor,
    tile: TileConfig,
    read_noise: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Normalised outputs of every tile, (tiles, n, d_out).

    Iterative bound management re-runs, at half the input scale each time, only the (tile,
    input) rows whose output saturated; aihwkit's torch tile re-runs the whole batch when any row
    saturates, which changes the other rows' noise but not their expected value.
    """
    raw, saturated = _one_pass(x_n, weight_n, tile, read_noise, generator)
    if tile.bound_management == "none" or saturated is None:
        return raw
    factor = torch.ones_like(x_n[..., :1])  # (tiles, n, 1): how much each input was reduced
    for _ in range(tile.max_bound_iterations):
        if not saturated.any():
            break
        factor = torch.where(saturated, factor * 2, factor)
        again, still = _one_pass(x_n / factor, weight_n, tile, read_noise, generator)
        raw = torch.where(saturated, again, raw)
        assert still is not None  # an ADC is present whenever rows can saturate
        saturated = saturated & still  # (tiles, n, 1): rows that must halve once more
    return raw.mul_(factor)


def _one_pass(
    x_n: torch.Tensor,
    weight_n: torch.Tensor,
    tile: TileConfig,
    read_noise: float,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """DAC -> MVM -> read and output noise -> ADC, for inputs (tiles, n, width); returns the
    outputs in ADC steps (:func:`output_unit`) and which rows saturated the ADC (None without)."""
    unit = output_unit(tile)
    x_q = quantise(x_n, tile.dac_bits, tile.inp_bound)
    y = torch.bmm(x_q, weight_n)  # (tiles, n, d_out), in ADC steps
    if read_noise > 0 or tile.out_noise > 0:
        noise = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        if read_noise == 0:
            y.add_(noise, alpha=tile.out_noise / unit)
        else:
            # Read noise (std read_noise * ||x_q||) and output noise (std out_noise) are
            # independent Gaussians: one draw with the combined std is the same distribution.
            norm = x_q.norm(dim=-1, keepdim=True)  # (tiles, n, 1)
            std = (read_noise * norm).square_().add_(tile.out_noise**2).sqrt_().div_(unit)
            y.addcmul_(noise, std)
    if tile.adc_bits == 0:
        return y, None
    # The ADC, in place on the output's (large) tensor: round to the nearest code. A row
    # saturates when its rounded code lies beyond the last one (aihwkit's test, before clipping).
    codes = y.round_()
    top = 2 ** (tile.adc_bits - 1) - 1
    saturated = (codes.amax(dim=-1, keepdim=True) > top) | (codes.amin(dim=-1, keepdim=True) < -top)
    return codes.clamp_(-top, top), saturated
