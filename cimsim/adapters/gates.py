"""Gates for continual LoRA branches (GainLoRA-style), digital like the branches they weigh.

An adapted layer computes ``W h + sum_i a_i(x) * scale * B_i A_i h``. The gate of branch ``i``
reads the input only, so no task id is needed at inference (Liang, Chen & Li, "GainLoRA", 2025):

* ``p`` (``d``): the frozen input-token embeddings of the row, mean-pooled over its tokens;
* ``o = W_down silu(W_up p)`` (``d -> hidden -> d``, no biases), a small MLP;
* ``a(x) = |2 sigmoid(4 cos(k, o)) - 1|`` with a learned key ``k`` (``d``): ``a = 0`` exactly when
  ``k`` is orthogonal to ``o``, and ``a <= 0.964``.

Keeping a new gate at 0 on old tasks' inputs (:class:`GateBank`): after each task the bank
remembers, by GPM (:mod:`cimsim.adapters.gpm`), the subspaces spanned by that task's ``p``, hidden
activations and ``o``. A new gate starts as a copy of the newest gate's MLP (the template's for the
second task), so its ``o`` on old inputs lies in the remembered output subspace, and its key starts
orthogonal to that subspace, along the new task's strongest output direction off it (GainLoRA's
initialisation, :meth:`GateBank.add_gate`). Each optimiser step's update of ``W_up``, ``W_down``
and ``k`` is then projected off the remembered input, hidden and output subspaces respectively,
so on old inputs ``o`` does not move and ``cos(k, o)`` stays 0 (up to the energy the bases leave
out).

Decision (documented in docs/continual.md): the first branch has no gate (``a_1 = 1``); it is
the base adaptation every later branch builds on, and a gate trained on a single task has nothing
to separate.

Routing: the bank hooks the model's backbone (``model.base_model``); every forward call with
``input_ids`` computes every gate for its rows and hands the values to the LoRA layers. A call that
continues from a key/value cache reuses the values of the call that built the cache, repeated per
continuation row, so a causal LM's gates are those of the prompt.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from collections.abc import Iterator
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from cimsim.adapters.gpm import extend_basis, project_off
from cimsim.adapters.lora import LoraLinear, lora_layers
from cimsim.core.draws import seeded_global_rng

SUBSPACES = ("input", "hidden", "output")


@dataclasses.dataclass(frozen=True)
class GateConfig:
    """Shape of the gates and of their memory of old tasks."""

    hidden: int = 384
    """Width of the gate MLP's hidden layer. It must stay well above what the old tasks' hidden
    activations fill at ``energy``: at 64 units and energy 0.999, one task of the default
    sequence filled 63 of them and later gates could not learn their second layer."""
    energy: float = 0.999
    """GPM threshold: fraction of an old task's feature energy the remembered subspace explains.
    At GPM's customary 0.99 new gates open on old tasks' inputs (docs/results.md, continual
    learning)."""
    lr: float = 1e-3
    """AdamW learning rate of the newest gate (GainLoRA trains its gates with the branches'
    rate). Larger steps amplify the little of an old input that the remembered subspaces leave
    out: at 1e-2 the second gate of the default sequence opened to 0.10-0.17 on older inputs."""

    def __post_init__(self) -> None:
        if self.hidden < 1:
            raise ValueError(f"gate hidden width must be >= 1, got {self.hidden}")
        if not 0 < self.energy <= 1:
            raise ValueError(f"gate energy threshold must be in (0, 1], got {self.energy}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"gate learning rate must be a positive finite number, got {self.lr}")


class Gate(nn.Module):
    """``a(p) = |2 sigmoid(4 cos(k, W_down silu(W_up p))) - 1|`` per row of ``p``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)
        self.key = nn.Parameter(torch.randn(dim) / dim**0.5)

    def features(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden (``rows, hidden``) and output (``rows, d``) activations for ``pooled``."""
        hidden = F.silu(self.up(pooled))
        return hidden, self.down(hidden)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        _, out = self.features(pooled)  # (rows, d)
        cos = F.cosine_similarity(out, self.key[None, :], dim=-1)  # (rows,)
        return (2 * torch.sigmoid(4 * cos) - 1).abs()


class GateBank(nn.Module):
    """The gates of a model's branches, keyed by branch name, and the memory of old tasks.

    Attached to the model as its ``gates`` submodule (:func:`attach_gates`), which keeps the gates
    out of analog deployment (:mod:`cimsim.chip.deploy` leaves ``gates`` digital).
    """

    def __init__(self, dim: int, config: GateConfig) -> None:
        super().__init__()
        self.config = config
        self.template = Gate(dim, config.hidden)
        self.gates = nn.ModuleDict()
        widths = {"input": dim, "hidden": config.hidden, "output": dim}
        for name in SUBSPACES:  # orthonormal columns; empty until a task is remembered
            self.register_buffer(f"basis_{name}", torch.zeros(widths[name], 0))
        self.newest: str | None = None
        self._owner: list[nn.Module] = []  # a list, so the owner is not registered as a child
        self._embeddings: list[nn.Embedding] = []
        self._layers: list[LoraLinear] = []
        self._last: dict[str, torch.Tensor] = {}
        self._records: list[dict[str, torch.Tensor]] | None = None
        self._snapshot: dict[str, torch.Tensor] = {}

    def basis(self, name: str) -> torch.Tensor:
        return cast(torch.Tensor, getattr(self, f"basis_{name}"))

    def gate(self, branch: str) -> Gate:
        return cast(Gate, self.gates[branch])

    def _source(self) -> Gate:
        """The newest gate, or the template before any gate exists."""
        return self.gate(self.newest) if self.newest is not None else self.template

    # -- life cycle -------------------------------------------------------------------------

    def add_gate(self, branch: str, pooled: torch.Tensor | None = None) -> Gate:
        """A gate for ``branch``: a copy of the newest MLP, key orthogonal to old outputs.

        With the new task's inputs ``pooled`` (``rows, d``) the key starts where the copied MLP
        maps them with the most energy outside the old tasks' output subspace (the leading right
        singular vector of the residual outputs, GainLoRA's initialisation), so the gate opens on
        its task from the first step; without them (a gate about to be loaded) it starts at a
        random direction off that subspace.
        """
        if branch in self.gates:
            raise ValueError(f"branch '{branch}' already has a gate")
        gate = copy.deepcopy(self._source())
        with torch.no_grad():
            key = project_off(self._key_direction(gate, pooled), self.basis("output"))
            if key.norm() < 1e-6 * gate.key.numel() ** 0.5:
                raise ValueError(
                    "the old tasks' gate outputs span the whole space: no new gate can be "
                    "orthogonal to them (lower the gate energy threshold or widen the model)"
                )
            gate.key.copy_(key / key.norm())
        self.gates[branch] = gate
        self.newest = branch
        self.refresh()
        return gate

    def _key_direction(self, gate: Gate, pooled: torch.Tensor | None) -> torch.Tensor:
        if pooled is None or pooled.shape[0] == 0:
            return torch.randn_like(gate.key)
        _, out = gate.features(pooled.to(gate.key))  # (rows, d)
        residual = project_off(out, self.basis("output"))  # (rows, d)
        _, _, vh = torch.linalg.svd(residual.double(), full_matrices=False)  # vh: (k, d)
        return vh[0].to(gate.key)

    def delete_gate(self, branch: str) -> None:
        del self.gates[branch]
        if self.newest == branch:
            self.newest = list(self.gates)[-1] if len(self.gates) else None

    def refresh(self) -> None:
        """Re-read the model's LoRA layers (after branches were added or deleted)."""
        model = self._model()
        self._layers = list(lora_layers(model).values()) if model is not None else []

    def _model(self) -> nn.Module | None:
        return self._owner[0] if self._owner else None

    # -- memory of old tasks ----------------------------------------------------------------

    @torch.no_grad()
    def remember(self, pooled: torch.Tensor) -> dict[str, int]:
        """Extend the bases with a finished task's inputs (``rows, d``) as the newest gate (or the
        template, before any gate) maps them. Returns the new basis sizes."""
        hidden, out = self._source().features(pooled)
        for name, features in zip(SUBSPACES, (pooled, hidden, out), strict=True):
            setattr(
                self,
                f"basis_{name}",
                extend_basis(self.basis(name), features, self.config.energy).to(pooled.device),
            )
        return self.memory_sizes()

    def memory_sizes(self) -> dict[str, int]:
        """Dimensions of the remembered input, hidden and output subspaces."""
        return {name: self.basis(name).shape[1] for name in SUBSPACES}

    def begin_step(self) -> None:
        """Remember the newest gate's parameters before an optimiser step."""
        gate = self._source()
        self._snapshot = {n: p.detach().clone() for n, p in gate.named_parameters()}

    @torch.no_grad()
    def project_step(self) -> None:
        """Project the newest gate's last update off the old tasks' subspaces."""
        gate = self._source()
        for param, before, subspace in (
            (gate.up.weight, self._snapshot["up.weight"], "input"),  # (hidden, d) acts on p
            (gate.down.weight, self._snapshot["down.weight"], "hidden"),  # (d, hidden) on h
            (gate.key, self._snapshot["key"], "output"),  # (d,) compared with o
        ):
            param.copy_(before + project_off(param - before, self.basis(subspace)))

    # -- routing ----------------------------------------------------------------------------

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """(rows, d) mean of the frozen input-token embeddings over each row's attended tokens."""
        with torch.no_grad():
            embedded = self._embeddings[0](input_ids)  # (rows, seq, d)
            if attention_mask is None:
                return embedded.mean(dim=1)
            mask = attention_mask.unsqueeze(-1).to(embedded.dtype)  # (rows, seq, 1)
            return (embedded * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def route(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, cached: bool):
        """Compute (or, for a cached continuation, repeat) the gate values of a forward call."""
        rows = input_ids.shape[0]
        if cached:  # continuation rows: each prompt's values, once per continuation of it
            values = {n: v.repeat_interleave(rows // v.shape[0]) for n, v in self._last.items()}
        else:
            pooled = self.pool(input_ids, attention_mask)
            values = {name: self.gate(name)(pooled) for name in self.gates}
            if self._records is not None:
                self._records.append(
                    {"pooled": pooled.detach(), **{n: v.detach() for n, v in values.items()}}
                )
        self._last = values
        for layer in self._layers:
            layer.gate_values = values

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[dict[str, torch.Tensor]]]:
        """Collect every routed call's pooled inputs and gate values inside the block."""
        self._records = []
        try:
            yield self._records
        finally:
            self._records = None


def _hook(bank: GateBank) -> Any:
    def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is None:
            return
        past = kwargs.get("cache", kwargs.get("past_key_values"))  # transformers' new, old name
        cached = past is not None and (
            past.get_seq_length() > 0 if hasattr(past, "get_seq_length") else bool(past)
        )
        bank.route(input_ids, kwargs.get("attention_mask"), cached)

    return pre_hook


def attach_gates(model: nn.Module, config: GateConfig, seed: int) -> GateBank:
    """Give ``model`` a gate bank (``model.gates``) that routes every forward pass.

    The template MLP is initialised from ``seed`` alone; the bank's parameters start frozen.
    """
    if hasattr(model, "gates"):
        raise ValueError("the model already has gates")
    embeddings = cast(nn.Embedding, model.get_input_embeddings())  # type: ignore[operator]
    weight = embeddings.weight
    with seeded_global_rng(seed):
        bank = GateBank(weight.shape[1], config).to(weight.device)
    bank.requires_grad_(False)
    bank._embeddings = [embeddings]
    model.add_module("gates", bank)
    bank._owner = [model]
    bank.refresh()
    backbone: nn.Module = getattr(model, "base_model", model)
    backbone.register_forward_pre_hook(_hook(bank), with_kwargs=True)
    return bank
