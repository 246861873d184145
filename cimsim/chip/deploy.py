"""Deploy a model's frozen base linear layers onto simulated compute-in-memory tiles.

What goes analog: every ``nn.Linear`` of the transformer's blocks (attention and MLP projections).
What stays digital: embeddings, norms, the pooler / LM head / classifier (see ``DIGITAL_MODULES``)
and every LoRA branch or gate (they sit in ideal SRAM).

The base layer is wrapped, never modified: :class:`AnalogLinear` keeps the digital ``nn.Linear`` as
``base_layer`` and holds the weights one chip instance reads back in ``programmed_weight``. A chip
instance is one programming event, fixed by its seed; ``deploy`` programs all tiles of a model with
one generator seeded by that seed, layer after layer in module order, so the seed alone decides
every weight. Re-programming another instance overwrites the same buffers (no new allocation):
a deployed chip costs the model's bytes per analog weight (4 in float32, 2 in bfloat16/float16)
on top of the digital model (a simulated periphery keeps float32 tiles plus one scale per output
channel), and nothing beyond one layer's scratch in place (``deploy(in_place=True)``). While a
chip is being programmed, the conductance models also hold scratch buffers of a few times the
largest layer, reused from layer to layer and released when the chip is done.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from cimsim.chip.tile import TileConfig, analog_linear, join_inputs, program_tiles, split_inputs
from cimsim.noise_models import ConductanceNoise, NoiseModel
from cimsim.noise_models.base import reused_scratch

# Module-name components that stay digital even though they are nn.Linear.
DIGITAL_MODULES = frozenset({"lm_head", "pooler", "classifier", "score"})
# Containers whose linear layers are LoRA branches or gates, which live in SRAM.
_DIGITAL_CONTAINERS = frozenset({"lora_A", "lora_B", "gates"})


class AnalogLinear(nn.Module):
    """A frozen ``nn.Linear`` whose weight is read from a simulated tile.

    With no chip programmed (``programmed_weight is None``) it is exactly the digital layer. With
    an ideal periphery and no read noise the forward pass is ``F.linear`` on the programmed
    weights (as fast as digital); otherwise it goes through :func:`cimsim.chip.tile.analog_linear`.
    """

    def __init__(self, base_layer: nn.Linear) -> None:
        super().__init__()
        self.base_layer = base_layer
        # (d_out, d_in) read-back weights; behind a simulated periphery instead the normalised
        # per-tile slices (tiles, width, d_out) with the factors from ADC codes back to weight
        # units (tiles, 1, d_out); see cimsim.chip.tile.program_tiles.
        self.programmed_weight: torch.Tensor | None
        self.channel_scale: torch.Tensor | None
        self.register_buffer("programmed_weight", None, persistent=False)
        self.register_buffer("channel_scale", None, persistent=False)
        self.tile = TileConfig()
        self.read_noise = 0.0
        self.read_generator: torch.Generator | None = None
        # Which chip is programmed: (noise model, seed, tile), set by ``deploy``.
        self.chip: tuple[NoiseModel, int, TileConfig] | None = None
        # After ``clear(release=False)``: the chip and its (d_out, d_in) weights, kept so that the
        # same chip comes back for free and another one is written into the same buffer.
        self._parked: tuple[tuple[NoiseModel, int, TileConfig] | None, torch.Tensor] | None = None
        # In-place mode: the digital weights, kept on the host while the chip's weights are
        # written into ``base_layer.weight`` itself (see ``program(in_place=True)``).
        self._clean: torch.Tensor | None = None

    @property
    def weight(self) -> torch.Tensor:
        """The digital target weight (some model code reads ``.weight`` for its dtype/device)."""
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    @property
    def is_exact_matmul(self) -> bool:
        """True when the periphery adds nothing, so the forward pass is ``F.linear``."""
        return self.tile.is_ideal and self.read_noise == 0

    @torch.no_grad()
    def program(
        self,
        noise: NoiseModel,
        generator: torch.Generator,
        tile: TileConfig | None = None,
        read_generator: torch.Generator | None = None,
        in_place: bool = False,
    ) -> None:
        """Program this tile once: the target is the digital weight, the result is kept.

        ``in_place`` (exact-matmul tiles only; a simulated periphery keeps its own buffers):
        the chip's weights overwrite ``base_layer.weight`` and the digital weights wait on the
        host (pinned when the layer is on a GPU) until ``clear`` copies them back, so a chip
        costs no device memory beyond the digital model and one layer's scratch."""
        weight = self.base_layer.weight
        if self._clean is not None:  # a previous in-place chip: program from the clean copy
            weight.data.copy_(self._clean)
        target = weight.detach()
        self.tile = tile or TileConfig()
        self.read_noise = noise.read_noise
        self.read_generator = read_generator
        if in_place and self.is_exact_matmul:
            if self._clean is None:
                clean = target.to("cpu", copy=True)
                self._clean = clean.pin_memory() if weight.is_cuda else clean
            self._parked = None
            self.programmed_weight = self.channel_scale = None
            programmed = program_weights(noise, target, generator, self.tile)
            weight.data.copy_(programmed)
            return
        if self._clean is not None:
            self._clean = None  # the weight holds the digital values again (copied above)
        if self.is_exact_matmul:
            out = self.programmed_weight
            if out is None and self._parked is not None:
                out = self._parked[1]
            self._parked = None
            if out is not None and (out.shape, out.device) != (target.shape, target.device):
                out = None
            self.programmed_weight = program_weights(noise, target, generator, self.tile, out)
            self.channel_scale = None
        else:
            # Behind a periphery the tiles hold normalised slices; see cimsim.chip.tile.
            # The ADC arithmetic stays float32 whatever the model's dtype.
            programmed = program_weights(noise, target.float(), generator, self.tile)
            self.programmed_weight, self.channel_scale = program_tiles(
                programmed, target.float(), self.tile
            )

    def clear(self, release: bool = True) -> None:
        """Forget the programmed weights: the layer is digital again. With ``release=False`` an
        exact-matmul chip is parked (see ``restore``); its buffer is reused by the next chip."""
        if self._clean is not None:  # an in-place chip: the digital weights come back
            self.base_layer.weight.data.copy_(self._clean)
            self._clean = None
        if release:
            self._parked = None
        elif self.programmed_weight is not None and self.is_exact_matmul:
            self._parked = (self.chip, self.programmed_weight)
        self.programmed_weight = self.channel_scale = self.chip = None
        self.tile, self.read_noise, self.read_generator = TileConfig(), 0.0, None

    def restore(self, chip: tuple[NoiseModel, int, TileConfig]) -> bool:
        """Bring back the parked weights if they are ``chip``'s; True when they were. Only chips
        with no per-read randomness are parked, so the restored chip reads exactly as before."""
        if self._parked is None or self._parked[0] != chip:
            return False
        self.programmed_weight, self._parked = self._parked[1], None
        self.chip = chip
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.programmed_weight is None:
            return self.base_layer(x)
        if self.channel_scale is None:
            return F.linear(x, self.programmed_weight, self.base_layer.bias)
        bias = self.base_layer.bias
        y = analog_linear(
            x.float(),
            self.programmed_weight,
            self.channel_scale,
            None if bias is None else bias.float(),
            self.tile,
            self.read_noise,
            self.read_generator,
        )
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        state = "digital" if self.programmed_weight is None else "programmed"
        return f"in={self.base_layer.in_features}, out={self.base_layer.out_features}, {state}"


def program_weights(
    noise: NoiseModel,
    target: torch.Tensor,
    generator: torch.Generator,
    tile: TileConfig,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The (d_out, d_in) weights one chip reads back.

    A conductance device maps each tile's slice of a row onto its full conductance range (each
    tile is its own crossbar, as in aihwkit), so rows split over tiles are programmed slice by
    slice. The weight-domain models keep their own definitions (the ``channel`` model's scale is
    the whole row's max |w|, as DESIGN.md defines sigma).

    A bfloat16 or float16 target is programmed in float32 (the same draws as the float32
    model's, up to the target's rounding) and the result cast to the target's dtype, so the
    chip costs the model's bytes per weight, not four.
    """
    if target.dtype != torch.float32:  # bf16/fp16 models: drawn in float32, then cast
        programmed = program_weights(noise, target.float(), generator, tile)
        return programmed.to(target.dtype) if out is None else out.copy_(programmed)
    d_out, d_in = target.shape
    if not isinstance(noise, ConductanceNoise) or tile.n_tiles(d_in) == 1:
        return noise.program(target, generator, out=out)
    slices = split_inputs(target, tile)  # (d_out, tiles, width), zero-padded
    programmed = noise.program(slices.reshape(-1, slices.shape[-1]), generator)
    return join_inputs(programmed.view_as(slices), d_in, tile)  # padding dropped


def attach_tiles(model: nn.Module) -> list[AnalogLinear]:
    """Wrap each eligible base linear in an :class:`AnalogLinear` (idempotent); return all tiles."""
    for name, module in _eligible(model):
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, AnalogLinear(module))
    return analog_layers(model)


def _eligible(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The base linears not yet wrapped that go onto tiles, by module path."""
    targets = []
    for name, module in model.named_modules():
        parent = model.get_submodule(name.rpartition(".")[0])
        if (
            isinstance(module, nn.Linear)
            and not isinstance(parent, AnalogLinear)
            and not set(name.split(".")) & (DIGITAL_MODULES | _DIGITAL_CONTAINERS)
        ):
            targets.append((name, module))
    return targets


def tile_weights(model: nn.Module) -> list[tuple[str, int]]:
    """``(tile name, weights)`` of every layer that is or would be a tile, without attaching
    any (names as in :func:`named_tiles`)."""
    layers = [(n, t.base_layer) for n, t in _named(model)] + _eligible(model)
    return [(_tile_name(name), layer.weight.numel()) for name, layer in layers]


def analog_layers(model: nn.Module) -> list[AnalogLinear]:
    """All tiles of ``model`` in module order (the order chips are programmed in)."""
    return [m for m in model.modules() if isinstance(m, AnalogLinear)]


def chip_generator(seed: int, device: torch.device | str) -> torch.Generator:
    """The one generator that programs a whole chip instance."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def _read_seed(seed: int) -> int:
    """A second stream for per-read noise, decorrelated from the programming stream."""
    return (seed * 6364136223846793005 + 1442695040888963407) % 2**63


@torch.no_grad()
def deploy(
    model: nn.Module,
    noise: NoiseModel,
    seed: int,
    tile: TileConfig | None = None,
    digital: Callable[[str], bool] | None = None,
    in_place: bool = False,
) -> nn.Module:
    """Program ``model``'s base weights as chip instance ``seed`` under ``noise``, behind the
    periphery of ``tile`` (default: ideal); return ``model``.

    ``in_place`` writes the chip into the base weights themselves (:meth:`AnalogLinear.program`),
    for models whose weights fill the device; ``undeploy`` restores them bit for bit. Until
    then the model object holds the chip: do not save it while deployed.

    Deploys in place (tiles are attached on first use). ``undeploy`` makes it digital again.
    Programming draws and per-read draws (read and output noise) come from two generators
    derived from ``seed``, so the same seed replays the same chip and the same reads.

    ``digital`` (mixed placement) is called with each tile's name (:func:`named_tiles`); the
    tiles it accepts stay digital. They are programmed all the same and then cleared, so every
    analog tile holds exactly the weights it holds on the all-analog chip ``seed`` (per-read
    draws, which follow the order of the reads, are the same only when no tile is digital).
    """
    layers = attach_tiles(model)
    if not layers:
        raise ValueError("deploy: the model has no linear layer to map onto tiles")
    chip = (noise, seed, tile or TileConfig())
    if (
        not in_place
        and digital is None
        and all(layer._parked is not None and layer._parked[0] == chip for layer in layers)
    ):
        for layer in layers:  # the same chip was parked by undeploy(release=False): no work
            layer.restore(chip)
        return model
    device = layers[0].base_layer.weight.device
    generator = chip_generator(seed, device)
    read_generator = chip_generator(_read_seed(seed), device)
    with reused_scratch():  # one set of scratch buffers for the whole chip
        for layer in layers:
            layer.program(noise, generator, tile, read_generator, in_place)
            layer.chip = chip
    if digital is not None:
        for name, layer in named_tiles(model):
            if digital(name):
                layer.clear()
    return model


@torch.no_grad()
def redraw(
    model: nn.Module,
    noise: NoiseModel,
    seed: int,
    tile: TileConfig | None,
    which: Callable[[str], bool],
) -> None:
    """Program again, as if on another chip ``seed``, only the tiles of a deployed ``model``
    whose names ``which`` accepts; the others keep their chip (a per-chip diagnosis: does a
    fresh draw of these layers alone restore the chip?)."""
    chosen = [(name, layer) for name, layer in named_tiles(model) if which(name)]
    if not chosen:
        return
    device = chosen[0][1].base_layer.weight.device
    generator = chip_generator(seed, device)
    read_generator = chip_generator(_read_seed(seed), device)
    with reused_scratch():
        for _, layer in chosen:
            layer.program(noise, generator, tile, read_generator)
            layer.chip = (noise, seed, tile or TileConfig())


def named_tiles(model: nn.Module) -> list[tuple[str, AnalogLinear]]:
    """``(name, tile)`` for every tile in programming order. The name is the wrapped layer's
    module path with peft's wrapping removed (``base_model.model.`` and ``.base_layer``), e.g.
    ``bert.encoder.layer.0.attention.self.query``: what placement patterns match."""
    return [(_tile_name(name), tile) for name, tile in _named(model)]


def _named(model: nn.Module) -> list[tuple[str, AnalogLinear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, AnalogLinear)]


def _tile_name(path: str) -> str:
    return path.removeprefix("base_model.model.").removesuffix(".base_layer")


def undeploy(model: nn.Module, release: bool = True) -> nn.Module:
    """Make every tile digital again. The programmed buffers are released, or with
    ``release=False`` parked: the next ``deploy`` of the same chip restores it without
    reprogramming, and any other chip is written into the same buffers (training that programs
    a fresh chip every step allocates nothing after the first)."""
    for tile in analog_layers(model):
        tile.clear(release)
    return model


@contextlib.contextmanager
def deployed(
    model: nn.Module, noise: NoiseModel, seed: int, tile: TileConfig | None = None
) -> Iterator[nn.Module]:
    """``with deployed(model, noise, seed):`` runs the model as that chip instance."""
    deploy(model, noise, seed, tile)
    try:
        yield model
    finally:
        undeploy(model)


def count_analog_weights(model: nn.Module) -> int:
    """How many weights sit on tiles (after ``attach_tiles``)."""
    return sum(tile.base_layer.weight.numel() for tile in analog_layers(model))
