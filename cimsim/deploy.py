"""Deploy a model's frozen base linear layers onto simulated compute-in-memory tiles.

What goes analog: every ``nn.Linear`` of the transformer's blocks (attention and MLP projections).
What stays digital: embeddings, norms, the pooler / LM head / classifier (see ``DIGITAL_MODULES``)
and every LoRA branch or gate (they sit in ideal SRAM).

The base layer is wrapped, never modified: :class:`AnalogLinear` keeps the digital ``nn.Linear`` as
``base_layer`` and holds the weights one chip instance reads back in ``programmed_weight``. A chip
instance is one programming event, fixed by its seed; ``deploy`` programs all tiles of a model with
one generator seeded by that seed, layer after layer in module order, so the seed alone decides
every weight. Re-programming another instance overwrites the same buffers (no new allocation).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from cimsim.noise_models import NoiseModel

# Module-name components that stay digital even though they are nn.Linear.
DIGITAL_MODULES = frozenset({"lm_head", "pooler", "classifier", "score"})
# Containers whose linear layers are LoRA branches or gates, which live in SRAM.
_DIGITAL_CONTAINERS = frozenset({"lora_A", "lora_B", "gates"})


class AnalogLinear(nn.Module):
    """A frozen ``nn.Linear`` whose weight is read from a simulated tile.

    With no chip programmed (``programmed_weight is None``) it is exactly the digital layer.
    """

    def __init__(self, base_layer: nn.Linear) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.programmed_weight: torch.Tensor | None
        self.register_buffer("programmed_weight", None, persistent=False)

    @property
    def weight(self) -> torch.Tensor:
        """The digital target weight (some model code reads ``.weight`` for its dtype/device)."""
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    @torch.no_grad()
    def program(self, noise: NoiseModel, generator: torch.Generator) -> None:
        """Program this tile once: the target is the digital weight, the result is kept."""
        target = self.base_layer.weight.detach()
        self.programmed_weight = noise.program(target, generator, out=self.programmed_weight)

    def clear(self) -> None:
        """Forget the programmed weights: the layer is digital again."""
        self.programmed_weight = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = (
            self.base_layer.weight if self.programmed_weight is None else self.programmed_weight
        )
        return F.linear(x, weight, self.base_layer.bias)

    def extra_repr(self) -> str:
        state = "digital" if self.programmed_weight is None else "programmed"
        return f"in={self.base_layer.in_features}, out={self.base_layer.out_features}, {state}"


def attach_tiles(model: nn.Module) -> list[AnalogLinear]:
    """Wrap each eligible base linear in an :class:`AnalogLinear` (idempotent); return all tiles."""
    targets = []
    for name, module in model.named_modules():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        parts = set(name.split("."))
        if (
            isinstance(module, nn.Linear)
            and not isinstance(parent, AnalogLinear)
            and not parts & (DIGITAL_MODULES | _DIGITAL_CONTAINERS)
        ):
            targets.append((parent, child, module))
    for parent, child, module in targets:
        setattr(parent, child, AnalogLinear(module))
    return analog_layers(model)


def analog_layers(model: nn.Module) -> list[AnalogLinear]:
    """All tiles of ``model`` in module order (the order chips are programmed in)."""
    return [m for m in model.modules() if isinstance(m, AnalogLinear)]


def chip_generator(seed: int, device: torch.device | str) -> torch.Generator:
    """The one generator that programs a whole chip instance."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


@torch.no_grad()
def deploy(model: nn.Module, noise: NoiseModel, seed: int) -> nn.Module:
    """Program ``model``'s base weights as chip instance ``seed`` under ``noise``; return ``model``.

    Deploys in place (tiles are attached on first use). ``undeploy`` makes it digital again.
    """
    tiles = attach_tiles(model)
    if not tiles:
        raise ValueError("deploy: the model has no linear layer to map onto tiles")
    generator = chip_generator(seed, tiles[0].base_layer.weight.device)
    for tile in tiles:
        tile.program(noise, generator)
    return model


def undeploy(model: nn.Module) -> nn.Module:
    """Make every tile digital again (the programmed buffers are released)."""
    for tile in analog_layers(model):
        tile.clear()
    return model


@contextlib.contextmanager
def deployed(model: nn.Module, noise: NoiseModel, seed: int) -> Iterator[nn.Module]:
    """``with deployed(model, noise, seed):`` runs the model as that chip instance."""
    deploy(model, noise, seed)
    try:
        yield model
    finally:
        undeploy(model)


def count_analog_weights(model: nn.Module) -> int:
    """How many weights sit on tiles (after ``attach_tiles``)."""
    return sum(tile.base_layer.weight.numel() for tile in analog_layers(model))
