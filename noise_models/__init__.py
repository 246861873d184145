"""The registry of noise models, selected by name (``--noise-model``).

Each model is a frozen dataclass (see :mod:`.base`) whose docstring states its formula, symbols,
units and source. ``get_noise_model(name, sigma)`` builds one; ``NOISE_MODELS`` lists them.
"""

from __future__ import annotations

from cimsim.core.errors import CimsimError

from .base import NoiseModel
from .conductance import ConductanceNoise, PcmNoise, ReramCmoNoise, ReramWan2022Noise, RramNoise
from .gaussian import ChannelRelativeNoise, MultiplicativeNoise, TensorRelativeNoise

DEFAULT_NOISE_MODEL = "channel"

NOISE_MODELS: dict[str, type[NoiseModel]] = {
    cls.name: cls
    for cls in (
        ChannelRelativeNoise,
        TensorRelativeNoise,
        MultiplicativeNoise,
        PcmNoise,
        ReramWan2022Noise,
        ReramCmoNoise,
        RramNoise,
    )
}


def get_noise_model(name: str, sigma: float = 0.0) -> NoiseModel:
    """The registered model ``name`` at noise level ``sigma``; unknown names are a user error."""
    try:
        cls = NOISE_MODELS[name]
    except KeyError:
        raise CimsimError(
            f"unknown noise model '{name}'; choose one of: {', '.join(NOISE_MODELS)}"
        ) from None
    try:
        return cls(sigma=sigma)
    except ValueError as err:
        raise CimsimError(str(err)) from None


__all__ = [
    "DEFAULT_NOISE_MODEL",
    "NOISE_MODELS",
    "ConductanceNoise",
    "NoiseModel",
    "get_noise_model",
]
