"""LoRA branches in peft's vocabulary, on top of any base layer (digital or analog).

A :class:`LoraLinear` wraps an untouched ``base_layer`` and adds, per adapter name,
``scale * B(A(dropout(x)))`` with ``A: (r, d_in)``, ``B: (d_out, r)``, ``scale = alpha / r``.
``B`` starts at zero, so a new branch is an exact no-op. The branches are digital (SRAM): when the
base layer is later wrapped by :class:`cimsim.chip.deploy.AnalogLinear`, only ``base_layer``
changes.

Adapters are written and read in peft's ``save_pretrained`` format (``adapter_config.json`` +
``adapter_model.safetensors`` with keys ``base_model.model.<module>.lora_A.weight``), so
``peft.PeftModel.from_pretrained(base, path)`` loads a cimsim adapter and cimsim loads peft's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from cimsim.core.errors import CimsimError
from cimsim.core.io import save_tensors

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PEFT_PREFIX = "base_model.model."


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    """Shape of the LoRA branches (peft's field names)."""

    r: int = 8
    """Rank of each branch."""
    lora_alpha: float = 16.0
    """Scale numerator: the branch output is multiplied by lora_alpha / r."""
    lora_dropout: float = 0.0
    """Dropout on the branch input during training."""
    target_modules: tuple[str, ...] = ()
    """Module names (last component, or full dotted name) that get a branch; empty: the model's
    default (query and value projections)."""

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {self.r}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.lora_dropout}")
        if not (math.isfinite(self.lora_alpha) and self.lora_alpha > 0):
            raise ValueError(f"LoRA alpha must be a positive finite number, got {self.lora_alpha}")

    def resolve(self, default_targets: tuple[str, ...]) -> LoraConfig:
        """This config with the model's default targets filled in where none were given."""
        if self.target_modules:
            return self
        return dataclasses.replace(self, target_modules=default_targets)

    @property
    def scaling(self) -> float:
        return self.lora_alpha / self.r


class LoraLinear(nn.Module):
    """``base_layer(x) + sum over active adapters of scale * B(A(dropout(x)))``."""

    def __init__(self, base_layer: nn.Module, in_features: int, out_features: int) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.in_features, self.out_features = in_features, out_features
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()
        self.lora_dropout = nn.ModuleDict()
        self.scaling: dict[str, float] = {}
        self.active_adapters: list[str] = []
        self.disabled = False
        # Per-row weight of a branch, set by a gate bank before each forward
        # (cimsim.adapters.gates): adapter name -> (rows,) tensor. A branch without an entry has
        # weight 1.
        self.gate_values: dict[str, torch.Tensor] = {}
        # The rank components of a branch that a forward's gradient reaches (routed()): adapter
        # name -> (r,) bool. The output is the same; the other components are constants.
        self.routes: dict[str, torch.Tensor] = {}
        # fused(): run the active branches as one low-rank product of their concatenated
        # factors (one pass over the input instead of one per branch; sums in another order).
        self.fused = False

    def add_adapter(self, name: str, config: LoraConfig) -> None:
        """Add branch ``name``; it starts as an exact no-op (B = 0) and becomes active."""
        if name in self.lora_A:
            raise ValueError(f"adapter '{name}' already exists")
        weight = self.weight
        a = nn.Linear(self.in_features, config.r, bias=False, device=weight.device)
        b = nn.Linear(config.r, self.out_features, bias=False, device=weight.device)
        # peft's default: A ~ Kaiming-uniform(a=sqrt(5)), B = 0.
        nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5))
        nn.init.zeros_(b.weight)
        self.lora_A[name], self.lora_B[name] = a, b
        self.lora_dropout[name] = (
            nn.Dropout(config.lora_dropout) if config.lora_dropout > 0 else nn.Identity()
        )
        self.scaling[name] = config.scaling
        self.active_adapters.append(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)  # (..., d_out)
        if self.disabled:
            return out
        if self.fused and not self.gate_values and not self.routes and self.active_adapters:
            return out + self._fused_delta(x).to(out.dtype)
        for name in self.active_adapters:
            a, b = self.lora_A[name], self.lora_B[name]
            # The branch keeps its own dtype (float32 on a bfloat16/float16 base: SRAM weights
            # trained at full precision); its input and output are cast across.
            h = self.lora_dropout[name](x).to(a.weight.dtype)
            route = self.routes.get(name)
            if route is None:
                low = b(a(h))  # (rows, ..., d_out)
            else:
                a_w: torch.Tensor = a.weight  # type: ignore[assignment]  # (r, d_in)
                b_w: torch.Tensor = b.weight  # type: ignore[assignment]  # (d_out, r)
                wa = torch.where(route[:, None], a_w, a_w.detach())  # (r, d_in)
                wb = torch.where(route[None, :], b_w, b_w.detach())  # (d_out, r)
                low = nn.functional.linear(nn.functional.linear(h, wa), wb)
            delta = (low * self.scaling[name]).to(out.dtype)  # (rows, ..., d_out)
            gate = self.gate_values.get(name)
            if gate is not None:
                delta = delta * gate.view(-1, *(1,) * (delta.dim() - 1))  # (rows, 1, ..., 1)
            out = out + delta
        return out

    def _fused_delta(self, x: torch.Tensor) -> torch.Tensor:
        """Every active branch at once: ``[B_1 s_1, B_2 s_2, ...] [A_1; A_2; ...] x``."""
        parts = [(*self.factors(n), self.scaling[n]) for n in self.active_adapters]
        a = torch.cat([a for a, _, _ in parts])  # (sum r, d_in)
        b = torch.cat([b * scale for _, b, scale in parts], dim=1)  # (d_out, sum r)
        h = self.lora_dropout[self.active_adapters[0]](x).to(a.dtype)
        return nn.functional.linear(nn.functional.linear(h, a), b)  # (..., d_out)

    def factors(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Branch ``name``'s weights ``A: (r, d_in)`` and ``B: (d_out, r)`` (parameters)."""
        a: torch.Tensor = self.lora_A[name].weight  # type: ignore[assignment]
        b: torch.Tensor = self.lora_B[name].weight  # type: ignore[assignment]
        return a, b

    def delete_adapter(self, name: str) -> None:
        """Remove branch ``name`` (active or not)."""
        if name not in self.lora_A:
            raise ValueError(f"adapter '{name}' does not exist")
        for part in (self.lora_A, self.lora_B, self.lora_dropout):
            del part[name]
        del self.scaling[name]
        self.gate_values.pop(name, None)
        if name in self.active_adapters:
            self.active_adapters.remove(name)

    @property
    def weight(self) -> torch.Tensor:
        return cast(torch.Tensor, self.base_layer.weight)

    @property
    def bias(self) -> torch.Tensor | None:
        return cast("torch.Tensor | None", self.base_layer.bias)


def _matches(name: str, targets: tuple[str, ...]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def lora_layers(model: nn.Module) -> dict[str, LoraLinear]:
    """Module name -> LoRA layer, in module order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoraLinear)}


def add_lora(model: nn.Module, config: LoraConfig, adapter_name: str = "default") -> list[str]:
    """Give every target linear of ``model`` a branch ``adapter_name``; return the module names.

    Freezes everything that is not a LoRA branch. Raises ``ValueError`` when nothing matches.
    """
    if not config.target_modules:
        raise ValueError("LoRA needs target modules (resolve the model's defaults first)")
    existing = lora_layers(model)
    names = [n for n in existing if _matches(n, config.target_modules)]
    for name, module in list(model.named_modules()):
        if name in existing or not _matches(name, config.target_modules):
            continue
        if not isinstance(module, nn.Linear):
            raise ValueError(f"LoRA target '{name}' is a {type(module).__name__}, not a Linear")
        parent_name, _, child = name.rpartition(".")
        setattr(
            model.get_submodule(parent_name),
            child,
            LoraLinear(module, module.in_features, module.out_features),
        )
        names.append(name)
    if not names:
        raise ValueError(f"no module of the model matches LoRA targets {config.target_modules}")
    layers = lora_layers(model)
    for name in names:
        layers[name].add_adapter(adapter_name, config)
    for param_name, param in model.named_parameters():
        param.requires_grad_(".lora_A." in param_name or ".lora_B." in param_name)
    return names


def adapter_names(model: nn.Module) -> list[str]:
    """Every branch name of the model, in the order the branches were added."""
    names: dict[str, None] = {}
    for layer in lora_layers(model).values():
        names.update(dict.fromkeys(layer.lora_A))
    return list(names)


def set_adapters(model: nn.Module, names: list[str]) -> None:
    """Make exactly ``names`` active (peft's ``set_adapter`` with several names)."""
    known = adapter_names(model)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"no adapter named {unknown[0]!r}; the model has {known}")
    for layer in lora_layers(model).values():
        layer.active_adapters = [n for n in names if n in layer.lora_A]


def delete_adapter(model: nn.Module, name: str) -> None:
    """Remove branch ``name`` from every layer."""
    layers = [layer for layer in lora_layers(model).values() if name in layer.lora_A]
    if not layers:
        raise ValueError(f"no adapter named {name!r}; the model has {adapter_names(model)}")
    for layer in layers:
        layer.delete_adapter(name)


def train_only(model: nn.Module, name: str) -> None:
    """Freeze every parameter except branch ``name``'s factors (peft: train the newest adapter)."""
    if name not in adapter_names(model):
        raise ValueError(f"no adapter named {name!r}; the model has {adapter_names(model)}")
    for param_name, param in model.named_parameters():
        parts = param_name.split(".")
        param.requires_grad_(
            len(parts) >= 3 and parts[-3] in ("lora_A", "lora_B") and parts[-2] == name
        )


def split_rank(rank: int) -> int:
    """The number of rank components in the first of the two halves :func:`routed` routes to."""
    return (rank + 1) // 2


@contextlib.contextmanager
def routed(model: nn.Module, half: int) -> Iterator[None]:
    """Within the block, gradients reach only one half of every branch's rank components:
    ``half`` 0 the first :func:`split_rank` of them (rows of A, columns of B), 1 the rest. Two
    passes routed to different halves train disjoint parts of one branch, whose outputs are
    unchanged: together the halves are one rank-r branch."""
    layers = lora_layers(model).values()
    for layer in layers:
        for name, a in layer.lora_A.items():
            weight: torch.Tensor = a.weight  # type: ignore[assignment]  # (r, d_in)
            rank = weight.shape[0]
            first = torch.arange(rank, device=weight.device) < split_rank(rank)  # (r,)
            layer.routes[name] = first if half == 0 else ~first
    try:
        yield
    finally:
        for layer in layers:
            layer.routes.clear()


@contextlib.contextmanager
def fused(model: nn.Module) -> Iterator[None]:
    """Inside the block every LoRA layer runs its active branches as one product (for models
    with many branches active at once; the result differs from the branch-by-branch sum only
    in rounding). Branches with gates or routes keep the branch-by-branch path."""
    with _every_layer(model, "fused"):
        yield


@contextlib.contextmanager
def disable_adapters(model: nn.Module) -> Iterator[None]:
    """Run the base model alone inside the block."""
    with _every_layer(model, "disabled"):
        yield


@contextlib.contextmanager
def _every_layer(model: nn.Module, flag: str) -> Iterator[None]:
    """Set boolean ``flag`` on every LoRA layer inside the block, clear it after."""
    layers = list(lora_layers(model).values())
    for layer in layers:
        setattr(layer, flag, True)
    try:
        yield
    finally:
        for layer in layers:
            setattr(layer, flag, False)


def adapter_state_dict(model: nn.Module, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """The branch weights under peft's saved key names (adapter name dropped)."""
    state = {}
    for name, layer in lora_layers(model).items():
        if adapter_name in layer.lora_A:
            for part in ("lora_A", "lora_B"):
                weight = getattr(layer, part)[adapter_name].weight
                state[f"{_PEFT_PREFIX}{name}.{part}.weight"] = weight.detach().cpu().contiguous()
    return state


def save_adapter(
    model: nn.Module,
    path: Path,
    config: LoraConfig,
    *,
    base_model_name_or_path: str,
    adapter_name: str = "default",
) -> Path:
    """Write ``adapter_name`` in peft's format into directory ``path`` (created)."""
    path.mkdir(parents=True, exist_ok=True)
    peft_config: dict[str, Any] = {
        "peft_type": "LORA",
        "task_type": None,
        "base_model_name_or_path": base_model_name_or_path,
        "r": config.r,
        "lora_alpha": config.lora_alpha,
        "lora_dropout": config.lora_dropout,
        "target_modules": list(config.target_modules),
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "use_rslora": False,
        "use_dora": False,
        "modules_to_save": None,
    }
    save_tensors(adapter_state_dict(model, adapter_name), path / ADAPTER_WEIGHTS)
    (path / ADAPTER_CONFIG).write_text(json.dumps(peft_config, indent=2) + "\n")
    return path


def read_adapter_config(path: Path) -> LoraConfig:
    """The LoRA shape stored in a peft adapter directory; a user error if missing or corrupt."""
    config_file = Path(path) / ADAPTER_CONFIG
    try:
        raw = json.loads(config_file.read_text())
    except FileNotFoundError:
        raise CimsimError(f"adapter {path}: no {ADAPTER_CONFIG} (not a peft adapter)") from None
    except (OSError, ValueError) as err:
        raise CimsimError(f"adapter {path}: cannot read {ADAPTER_CONFIG}: {err}") from None
    if not isinstance(raw, dict) or raw.get("peft_type") != "LORA":
        raise CimsimError(f"adapter {path}: {ADAPTER_CONFIG} is not a LoRA adapter config")
    targets = raw.get("target_modules")
    if isinstance(targets, str):
        raise CimsimError(f"adapter {path}: regex target_modules are not supported: {targets}")
    try:
        return LoraConfig(
            r=int(raw["r"]),
            lora_alpha=float(raw["lora_alpha"]),
            lora_dropout=float(raw.get("lora_dropout", 0.0)),
            target_modules=tuple(targets or ()),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise CimsimError(f"adapter {path}: invalid {ADAPTER_CONFIG}: {err}") from None


def load_adapter(model: nn.Module, path: Path, adapter_name: str = "default") -> LoraConfig:
    """Add branch ``adapter_name`` to ``model`` and fill it from a peft adapter directory."""
    path = Path(path)
    config = read_adapter_config(path)
    try:
        state = load_file(str(path / ADAPTER_WEIGHTS))
    except FileNotFoundError:
        raise CimsimError(f"adapter {path}: no {ADAPTER_WEIGHTS}") from None
    except (SafetensorError, OSError, ValueError) as err:
        raise CimsimError(f"adapter {path}: corrupt {ADAPTER_WEIGHTS}: {err}") from None
    try:
        add_lora(model, config, adapter_name)
    except ValueError as err:
        raise CimsimError(f"adapter {path} does not fit this model: {err}") from None
    expected = adapter_state_dict(model, adapter_name)
    missing = sorted(set(expected) - set(state))
    if missing:
        raise CimsimError(f"adapter {path} does not fit this model: no weights for {missing[0]}")
    layers = lora_layers(model)
    with torch.no_grad():
        for key in expected:
            module_name, part = key[len(_PEFT_PREFIX) :].rsplit(".", 2)[:2]
            target = getattr(layers[module_name], part)[adapter_name].weight
            if target.shape != state[key].shape:
                raise CimsimError(
                    f"adapter {path} does not fit this model: {key} has shape "
                    f"{tuple(state[key].shape)}, the model needs {tuple(target.shape)}"
                )
            target.copy_(state[key])
    return config
