"""How much room the gates' input leaves a new task, per task order and GPM energy threshold.

    .venv/bin/python experiments/continual/gate_inputs.py [--model minilm] [--energies 0.99,0.999]

A GainLoRA gate reads ``p``, the mean of the frozen input-token embeddings of a row
(:meth:`cimsim.adapters.gates.GateBank.pool`), and may learn only on what the old tasks'
remembered input subspace ``M`` leaves out, the residual ``r = p - M M^T p``
(:mod:`cimsim.adapters.gpm`). For each task after the first, with ``M`` built from the earlier
tasks' training inputs (1000 each, as ``cimsim continual`` remembers them), this prints, as
medians over 200 test rows per task:

* ``dim``: the size of ``M``;
* ``resid``: ``||r|| / ||p||`` on the new task's rows, then on each older task's rows; a gate can
  only separate them as far as these differ;
* ``along u``: ``|<r, u>| / ||p||`` with ``u`` the new task's mean training residual, the one
  direction in which new and old rows differ most.

The rows are the ones the model reads (the prompted text pair of an encoder, a causal LM's
prompt), recorded through the gates' own routing hook.
"""

from __future__ import annotations

import argparse
from typing import cast

import torch

from cimsim.adapters.gpm import extend_basis, project_off
from cimsim.continual.config import DEFAULT_TASKS, ContinualConfig
from cimsim.continual.learners import Learner
from cimsim.core.paths import default_cache_dir
from cimsim.eval.models import load_model
from cimsim.eval.scoring import make_scorer
from cimsim.eval.tasks import load_task

TRAIN_ROWS, TEST_ROWS, BATCH = 1000, 200, 64


def pooled_rows(
    model_name: str, tasks: list[str], max_length: int
) -> dict[tuple[str, str], torch.Tensor]:
    """(task, split) -> the gate inputs ``p`` (rows, d) of that split's subset."""
    loaded = load_model(model_name, device="cpu")
    scorer = make_scorer(loaded, max_length, prompted=True)
    lora = ContinualConfig().lora.resolve(loaded.lora_targets)
    learner = Learner("gated", scorer, loaded.model, lora, seed=0)  # a gate bank, no branch yet
    rows = {}
    for name in tasks:
        task = load_task(name, cache_dir=default_cache_dir())
        for split, data in (
            ("train", task.train.subset(TRAIN_ROWS, seed=0)),
            ("test", task.test.subset(TEST_ROWS, seed=0)),
        ):
            records = learner.gate_records(task, data.texts, BATCH)
            rows[name, split] = torch.cat([r["pooled"] for r in records])
    return rows


def relative(part: torch.Tensor, whole: torch.Tensor) -> float:
    """Median over rows of ``||part|| / ||whole||`` (``part``: rows, d, or rows)."""
    norm = part.norm(dim=1) if part.dim() == 2 else part.abs()
    return (norm / whole.norm(dim=1)).median().item()


def room(
    rows: dict[tuple[str, str], torch.Tensor], order: list[str], energy: float
) -> list[dict[str, object]]:
    """Per task after the first: the remembered subspace's size and the medians of ``resid``
    and ``along u`` on its own test rows, then on each older task's (see the module docstring)."""
    basis: torch.Tensor | None = None
    found: list[dict[str, object]] = []
    for k, name in enumerate(order):
        if basis is not None:
            mean = project_off(rows[name, "train"], basis).mean(0)
            u = mean / mean.norm()
            seen = [name, *order[:k]]
            tests = [rows[t, "test"] for t in seen]
            found.append(
                {
                    "task": name,
                    "dim": basis.shape[1],
                    "resid": [relative(project_off(x, basis), x) for x in tests],
                    "along_u": [relative(project_off(x, basis) @ u, x) for x in tests],
                }
            )
        basis = extend_basis(basis, rows[name, "train"], energy)
    return found


def report(rows: dict[tuple[str, str], torch.Tensor], order: list[str], energy: float) -> str:
    cells = []
    for k, cell in enumerate(room(rows, order, energy), start=2):
        resid, along = cast(list[float], cell["resid"]), cast(list[float], cell["along_u"])
        cells.append(
            f"task {k}: dim {cell['dim']}, resid {resid[0]:.3f} vs "
            + "/".join(f"{v:.3f}" for v in resid[1:])
            + f", along u {along[0]:.4f} vs "
            + "/".join(f"{v:.4f}" for v in along[1:])
        )
    return " | ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS))
    parser.add_argument("--energies", default="0.99,0.995,0.999")
    parser.add_argument("--max-length", type=int, default=64)
    args = parser.parse_args()
    tasks = args.tasks.split(",")
    rows = pooled_rows(args.model, tasks, args.max_length)
    for order in (tasks, tasks[::-1]):
        print(" > ".join(order))
        for energy in (float(e) for e in args.energies.split(",")):
            print(f"  energy {energy}: {report(rows, order, energy)}")


if __name__ == "__main__":
    main()
