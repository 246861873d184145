"""How each continual method grows, trains and freezes its branches, task after task.

* ``gated`` (GainLoRA): a new branch and a new gate per task (the first branch is ungated); only
  the newest branch and gate train, and the gate's updates are projected off old tasks'
  subspaces (:mod:`cimsim.adapters.gates`). After a task, the bank remembers that task's inputs.
* ``seq-lora``: one branch, trained on task after task (the forgetting baseline).
* ``sum``: a new branch per task, older branches frozen, all summed with weight 1 (no gates).
* ``olora`` (O-LoRA, Wang et al., 2023): as ``sum`` plus the orthogonality loss
  ``lam_orth * sum_old ||A_old A_new^T||_F^2`` over the LoRA layers, which pushes the new branch's
  input subspace off the old ones'.
* ``joint``: one branch trained on all tasks at once (the upper bound, one stage).

Every method trains with any objective of :mod:`cimsim.adapters.objectives` (``lora``,
``noise-aware``, ``halora``: noise-robust continual learning).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cimsim.adapters.gates import GateBank, GateConfig, attach_gates
from cimsim.adapters.lora import LoraConfig, add_lora, lora_layers, set_adapters, train_only
from cimsim.core.draws import seeded_global_rng
from cimsim.eval.scoring import EncoderScorer, Scorer
from cimsim.eval.tasks import Task

METHODS = ("gated", "seq-lora", "sum", "olora", "joint")
SINGLE_BRANCH = ("seq-lora", "joint")
SHARED_BRANCH = "default"


def branch_names(tasks: Sequence[str]) -> dict[str, str]:
    """Task -> branch name: the task's name (a file's stem), made a valid module name, unique."""
    names: dict[str, str] = {}
    for task in tasks:
        name = re.sub(r"[^A-Za-z0-9_]", "_", Path(task).stem) or "task"
        while name in names.values():
            name += "_"
        names[task] = name
    return names


def branch_seed(seed: int, stage: int) -> int:
    """Seed of the branch (and gate key) initialised at ``stage``."""
    return int(hashlib.sha256(f"branch/{seed}/{stage}".encode()).hexdigest()[:15], 16)


class Learner:
    """One method's branches on one model, for one task order."""

    def __init__(
        self,
        method: str,
        scorer: Scorer,
        model: nn.Module,
        lora: LoraConfig,
        *,
        seed: int,
        gate: GateConfig | None = None,
        lam_orth: float = 0.5,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown continual method '{method}'")
        self.method, self.scorer, self.model, self.lora = method, scorer, model, lora
        self.seed, self.lam_orth = seed, lam_orth
        self.bank: GateBank | None = (
            attach_gates(model, gate or GateConfig(), seed) if method == "gated" else None
        )
        self.branches: list[str] = []
        self._last_read: tuple[tuple[str, tuple[str, ...]], torch.Tensor | None] | None = None

    def begin(
        self,
        stage: int,
        name: str,
        task: Task | None = None,
        texts: Sequence[str] = (),
        batch_size: int = 64,
    ) -> None:
        """Add (or reuse) the branch of task ``name`` and make only it (and its gate) train.

        A new gate's key starts from the inputs the model reads for ``texts`` of ``task`` (the
        new task's training texts; see :meth:`cimsim.adapters.gates.GateBank.add_gate`).
        """
        if self.method in SINGLE_BRANCH:
            if not self.branches:
                self._add_branch(SHARED_BRANCH, stage)
        else:
            self._add_branch(name, stage)
        train_only(self.model, self.branches[-1])
        if self.bank is not None and stage > 0:
            pooled = self._text_inputs(task, texts, batch_size) if task is not None else None
            with seeded_global_rng(branch_seed(self.seed, stage)):
                gate = self.bank.add_gate(self.branches[-1], pooled)
            gate.requires_grad_(True)
            self.bank.begin_step()
        if isinstance(self.scorer, EncoderScorer):
            self.scorer.log_scale.requires_grad_(True)

    def _add_branch(self, name: str, stage: int) -> None:
        with seeded_global_rng(branch_seed(self.seed, stage)):
            add_lora(self.model, self.lora, name)
        self.branches.append(name)
        if self.bank is not None:
            self.bank.refresh()

    def param_groups(self) -> list[dict]:
        """Optimiser groups with their own learning rate: the newest gate's."""
        if self.bank is None or self.bank.newest != self.branches[-1]:
            return []
        gate = self.bank.gate(self.bank.newest)
        return [{"params": list(gate.parameters()), "lr": self.bank.config.lr}]

    def regulariser(self) -> torch.Tensor | None:
        """O-LoRA's orthogonality loss for the newest branch (None for other methods)."""
        if self.method != "olora" or len(self.branches) < 2:
            return None
        new, old = self.branches[-1], self.branches[:-1]
        terms = []
        for layer in lora_layers(self.model).values():
            a_new: torch.Tensor = layer.lora_A[new].weight  # type: ignore[assignment]  # (r, d)
            for name in old:
                a_old: torch.Tensor = layer.lora_A[name].weight  # type: ignore[assignment]
                a_old = a_old.detach()  # (r_old, d)
                terms.append((a_old @ a_new.T).square().sum())  # ||A_old A_new^T||_F^2
        return self.lam_orth * torch.stack(terms).sum()

    def after_step(self) -> None:
        """Project the newest gate's update off old tasks (gated, from the second task on)."""
        if self.bank is not None and self.bank.newest == self.branches[-1]:
            self.bank.project_step()
            self.bank.begin_step()

    @torch.no_grad()
    def end(self, task: Task, texts: Sequence[str], batch_size: int) -> None:
        """Freeze the finished task; the gated bank remembers the inputs it saw for it."""
        for param in self.model.parameters():
            param.requires_grad_(False)
        if self.bank is None:
            return
        with self.bank.recording() as label_rows:
            prepared = self.scorer.prepare(task)  # an encoder embeds the label descriptions
        text_inputs = self._text_inputs(task, texts, batch_size, prepared)
        # The few label rows are remembered on their own: inside the texts' energy budget they
        # would be left out, and a new gate opening on them would move every old task's anchors.
        label_inputs = torch.cat([r["pooled"] for r in label_rows]) if label_rows else None
        for inputs in (text_inputs, label_inputs):
            if inputs is not None:
                self.bank.remember(inputs)

    def _text_inputs(
        self, task: Task, texts: Sequence[str], batch_size: int, prepared: Any = None
    ) -> torch.Tensor | None:
        """The gate inputs ``p`` (rows, d) of ``texts``, None for no texts. They depend on the
        frozen token embeddings alone, so the new task's rows read for its key at :meth:`begin`
        are remembered at :meth:`end` without reading them again."""
        key = (task.name, tuple(texts))
        if self._last_read is None or self._last_read[0] != key:
            records = self.gate_records(task, texts, batch_size, prepared)
            pooled = torch.cat([r["pooled"] for r in records]) if records else None
            self._last_read = (key, pooled)
        return self._last_read[1]

    @torch.no_grad()
    def gate_records(
        self, task: Task, texts: Sequence[str], batch_size: int, prepared: Any = None
    ) -> list[dict[str, torch.Tensor]]:
        """Pooled inputs and gate values of the rows the model reads for ``texts`` (label-side
        rows excluded)."""
        assert self.bank is not None, "only the gated method has gates"
        if prepared is None:
            prepared = self.scorer.prepare(task)
        with self.bank.recording() as records:
            for start in range(0, len(texts), batch_size):
                self.scorer(texts[start : start + batch_size], task, prepared)
        return records

    def state(self) -> dict[str, torch.Tensor]:
        """A copy of everything the method has trained so far (branches, gates, temperature)."""
        return {
            k: v.detach().clone()
            for k, v in self.scorer.state_dict().items()
            if ".lora_" in k or (".gates." in k and ".basis_" not in k) or k == "log_scale"
        }

    def show(self, stage_state: dict[str, torch.Tensor], n_branches: int) -> None:
        """Put the model back as it was after a stage: its weights and its first branches."""
        self.scorer.load_state_dict(stage_state, strict=False)
        set_adapters(self.model, self.branches[:n_branches])
