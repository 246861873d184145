"""Save and load all of a model's LoRA branches (and their gates) at once.

Layout of a branches folder::

    branches.json          # schema, branch names in order, which are active, the gate config
    <branch>/              # one peft adapter per branch: PeftModel.from_pretrained(base, <branch>)
    gates.safetensors      # the gate bank (template, one gate per gated branch, GPM bases)

Each branch folder is a complete peft adapter, so any one branch can be used without cimsim.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import nn

from cimsim.adapters.gates import GateBank, GateConfig, attach_gates
from cimsim.adapters.lora import (
    adapter_names,
    load_adapter,
    lora_layers,
    save_adapter,
    set_adapters,
)
from cimsim.core.errors import CimsimError
from cimsim.core.io import save_tensors

SCHEMA = "cimsim.branches/1"
INDEX = "branches.json"
GATES = "gates.safetensors"


def active_adapters(model: nn.Module) -> list[str]:
    """The names of the active branches, in the order they were added."""
    active = {n for layer in lora_layers(model).values() for n in layer.active_adapters}
    return [n for n in adapter_names(model) if n in active]


def save_branches(
    model: nn.Module, path: Path, lora_configs: dict[str, Any], *, base_model_name_or_path: str
) -> Path:
    """Write every branch of ``model`` (``lora_configs``: branch -> LoraConfig) and its gates."""
    path.mkdir(parents=True, exist_ok=True)
    names = adapter_names(model)
    for name in names:
        save_adapter(
            model,
            path / name,
            lora_configs[name],
            base_model_name_or_path=base_model_name_or_path,
            adapter_name=name,
        )
    bank: GateBank | None = getattr(model, "gates", None)
    index: dict[str, Any] = {
        "schema": SCHEMA,
        "branches": names,
        "active": active_adapters(model),
        "gates": None,
    }
    if bank is not None:
        state = {k: v.detach().cpu().contiguous() for k, v in bank.state_dict().items()}
        save_tensors(state, path / GATES)
        index["gates"] = {
            "hidden": bank.config.hidden,
            "energy": bank.config.energy,
            "gated": list(bank.gates),
            "newest": bank.newest,
        }
    (path / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return path


def load_branches(model: nn.Module, path: Path) -> list[str]:
    """Add every branch (and the gates) saved in ``path`` to ``model``; returns the names."""
    path = Path(path)
    try:
        index = json.loads((path / INDEX).read_text())
    except FileNotFoundError:
        raise CimsimError(f"{path}: no {INDEX} (not a cimsim branches folder)") from None
    except (OSError, ValueError) as err:
        raise CimsimError(f"{path}: cannot read {INDEX}: {err}") from None
    if not isinstance(index, dict) or index.get("schema") != SCHEMA:
        raise CimsimError(f"{path}/{INDEX} is not a {SCHEMA} index")
    for name in index["branches"]:
        load_adapter(model, path / name, adapter_name=name)
    set_adapters(model, list(index["active"]))
    gates = index.get("gates")
    if gates:
        try:
            state = load_file(str(path / GATES))
        except (FileNotFoundError, OSError, ValueError) as err:
            raise CimsimError(f"{path}: cannot read {GATES}: {err}") from None
        config = GateConfig(hidden=int(gates["hidden"]), energy=float(gates["energy"]))
        bank = attach_gates(model, config, seed=0)
        for name in gates["gated"]:
            bank.add_gate(name)
        for key in [k for k in state if k.startswith("basis_")]:
            setattr(bank, key, state.pop(key).to(bank.template.key.device))
        try:
            missing, unexpected = bank.load_state_dict(state, strict=False)
        except RuntimeError as err:
            raise CimsimError(f"{path}: {GATES} does not fit this model: {err}") from None
        missing = [k for k in missing if not k.startswith("basis_")]
        if missing or unexpected:
            raise CimsimError(
                f"{path}: {GATES} does not fit its index: {(missing + unexpected)[0]}"
            )
        bank.newest = gates["newest"]
    return list(index["branches"])
