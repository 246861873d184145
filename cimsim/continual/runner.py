"""Run a continual-learning experiment: methods x task orders x (digital + chips per sigma).

For each task order and method, a fresh model learns the tasks one after another
(:mod:`cimsim.continual.learners`); after each stage the trained state is kept and every task seen
so far is evaluated digitally. Then each chip instance is programmed once (the base weights of a
deployed chip do not change while tasks arrive) and every stage's branches are evaluated on it.
Chip seeds are those of :func:`cimsim.runs.sweep.chip_seed`, so all methods and orders meet the very
same chips (paired). ``joint`` does not depend on the order and runs for the first order only.

Files in the results folder (schema ``cimsim.continual/1``):

* ``config.json``: the config, the device card, the environment of every session;
* ``points.jsonl`` / ``results.csv``: one row per (method, order, stage, task, chip), appended as
  it finishes; a rerun with the same config skips what is there (a method and order whose rows are
  incomplete are retrained; training is deterministic given the seed);
* ``gates.csv``: gated only, per final branch and task, the gate values on that task's test rows;
* ``metrics.csv``: AP and FT per method, order and chip; ``summary.csv``: their mean and std;
* ``matrices.png``/``.pdf`` (digital accuracy matrices) and ``ap_ft.png``/``.pdf`` (AP and FT
  against sigma, per method); ``branches/<method>/order<k>/``: every branch in peft format.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import torch

from cimsim.chip.cards import DeviceCard
from cimsim.continual.config import (
    CONFIG_FILE,
    GRID_FIELDS,
    POINTS_FILE,
    SCHEMA,
    ContinualConfig,
)
from cimsim.continual.learners import Learner, branch_names
from cimsim.core.config import to_dict
from cimsim.core.errors import CimsimError
from cimsim.core.io import append_point, read_json, write_atomic
from cimsim.core.lock import one_writer
from cimsim.core.progress import Progress, Silent
from cimsim.runs.results import CONTINUAL_POINT, environment, read_points, replace_rows
from cimsim.runs.sweep import chip_seed


def task_orders(tasks: tuple[str, ...], n: int, seed: int) -> list[tuple[str, ...]]:
    """``n`` distinct orders: as given, reversed, then permutations drawn with ``seed``."""
    orders = [tasks, tasks[::-1]][:n]
    rng = random.Random(seed)
    while len(orders) < n:
        candidate = tuple(rng.sample(tasks, len(tasks)))
        if candidate not in orders:
            orders.append(candidate)
    return orders


def _prepare(config: ContinualConfig, out_dir: Path) -> tuple[dict[str, Any], list[dict]]:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CimsimError(f"cannot use {out_dir} as the results folder: {err.strerror}") from None
    record: dict[str, Any] = {}
    if (out_dir / CONFIG_FILE).exists():
        record = read_json(out_dir / CONFIG_FILE)
        if record.get("schema") != SCHEMA:
            raise CimsimError(f"{out_dir / CONFIG_FILE} is not a {SCHEMA} record")
        stored = record.get("config")
        if not isinstance(stored, dict):
            raise CimsimError(f"{out_dir / CONFIG_FILE} is damaged: its 'config' is not an object")
        defaults = to_dict(ContinualConfig())
        new = {k: v for k, v in to_dict(config).items() if k not in GRID_FIELDS}
        changed = []
        for key, value in new.items():
            was = stored.get(key, defaults[key])  # a field added since that run: its default
            if isinstance(was, dict) and isinstance(defaults[key], dict):
                was = {**defaults[key], **was}
            if was != value:
                changed.append(key)
        if changed:
            raise CimsimError(
                f"{out_dir} holds a run with another config ({', '.join(changed)} differ); "
                "choose another --out"
            )
    elif (out_dir / POINTS_FILE).exists():
        raise CimsimError(f"{out_dir} has {POINTS_FILE} but no {CONFIG_FILE}; choose another --out")
    record["schema"] = SCHEMA
    record["config"] = to_dict(config)
    return record, read_points(out_dir / POINTS_FILE, repair=True, unique=CONTINUAL_POINT)


@one_writer
def run_continual(
    config: ContinualConfig,
    out_dir: Path,
    *,
    cache_dir: Path,
    progress: Progress | None = None,
    executor: Any = None,
) -> Path:
    """Run (or resume) the experiment into ``out_dir``; returns ``out_dir``. ``executor``
    (:class:`cimsim.runs.executors.RayExecutor`) runs each (method, task order) on a worker,
    which trains and evaluates it in a scratch folder and sends back its rows and branches;
    this process stays the only writer of ``out_dir``."""
    from cimsim.continual.report import write_outputs
    from cimsim.eval.tasks import load_task

    progress = progress or Silent()
    card = config.resolve_card()  # a card or value it refuses fails before any work
    train_card = config.train.load_noise_card() if config.objective != "lora" else None
    record, rows = _prepare(config, out_dir)
    tasks = {name: load_task(name, cache_dir=cache_dir) for name in config.tasks}
    run = _Run(config, card, train_card, out_dir, tasks, rows, progress)
    record["card"] = card.to_dict()
    record["tasks"] = {
        n: {"source": t.source, "fingerprint": t.fingerprint, "n_eval": len(run.tests[n])}
        for n, t in tasks.items()
    }
    record["axis"] = {"noise_model": card.noise.name, "sigma_unit": card.noise.sigma_unit}
    record.setdefault("sessions", []).append({"started": time.time(), **environment()})
    write_atomic(out_dir / CONFIG_FILE, json.dumps(record, indent=2, default=str) + "\n")
    units = [
        (method, index, order)
        for index, order in enumerate(task_orders(config.tasks, config.orders, config.seed))
        for method in config.methods
        if method != "joint" or index == 0  # joint does not depend on the order
    ]
    if executor is None:
        for unit in units:
            run.method_on_order(*unit)
    else:
        items = [
            (*unit, [r for r in rows if (r["method"], r["order"]) == unit[:2]])
            for unit in units
            if not run.finished(*unit)
        ]
        args = (config, card, train_card, str(cache_dir))
        for result in executor.map(_order_worker, args, _remote_order, items):
            run.merge(result)
    write_outputs(out_dir, rows, config, card)
    return out_dir


def _order_worker(
    config: ContinualConfig, card: DeviceCard, train_card: DeviceCard | None, cache_dir: str
) -> tuple[ContinualConfig, DeviceCard, DeviceCard | None, dict[str, Any]]:
    """A distributed worker's state: the tasks, loaded once."""
    from cimsim.eval.tasks import load_task

    tasks = {name: load_task(name, cache_dir=Path(cache_dir)) for name in config.tasks}
    return config, card, train_card, tasks


def _remote_order(state: tuple, item: tuple) -> dict[str, Any]:
    """One method on one order, run into a scratch folder: what it wrote, to send back."""
    import shutil
    import tempfile

    config, card, train_card, tasks = state
    method, index, order, known = item
    scratch = Path(tempfile.mkdtemp(prefix="cimsim-continual-"))
    try:
        run = _Run(config, card, train_card, scratch, tasks, list(known), Silent())
        run.method_on_order(method, index, order)
        branches = scratch / "branches"
        return {
            "unit": (method, index),
            "points": run.rows[len(known) :],
            "training": read_points(scratch / "training.jsonl", required=("method", "order")),
            "gates": read_points(scratch / "gates.jsonl", required=("method", "order")),
            "branches": {
                str(f.relative_to(scratch)): f.read_bytes()
                for f in sorted(branches.rglob("*"))
                if f.is_file()
            },
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _Run:
    """One experiment's shared state: tasks, test subsets, the rows written so far."""

    def __init__(
        self,
        config: ContinualConfig,
        card: DeviceCard,
        train_card: DeviceCard | None,
        out_dir: Path,
        tasks: dict[str, Any],
        rows: list[dict[str, Any]],
        progress: Progress,
    ) -> None:
        self.config, self.out_dir, self.tasks, self.rows = config, out_dir, tasks, rows
        self.card, self.train_card = card, train_card
        self.progress = progress
        self.tests = {
            n: t.test.subset(config.eval.test_size, seed=config.seed) for n, t in tasks.items()
        }
        self.done = {_key(r) for r in rows}
        self.branch_of = branch_names(config.tasks)

    def _chips(self) -> list[tuple[float, int]]:
        return [(v, i) for v in self.config.values for i in range(self.config.instances)]

    def _wanted(self, method: str, index: int, order: tuple[str, ...]) -> set[tuple]:
        """The keys of every row learning ``order`` with ``method`` writes."""
        stages = 1 if method == "joint" else len(order)
        first = len(order) - stages  # joint's single stage is the last row of R
        return {
            (method, index, first + s, task, sigma, instance)
            for s in range(stages)
            for task in order[: first + s + 1]
            for sigma, instance in [(None, -1), *self._chips()]
        }

    def finished(self, method: str, index: int, order: tuple[str, ...]) -> bool:
        return self._wanted(method, index, order) <= self.done

    def merge(self, result: dict[str, Any]) -> None:
        """Write what a worker's :func:`_remote_order` sent back, as the local run would have."""
        method, index = result["unit"]
        for row in result["points"]:
            if _key(row) not in self.done:  # a retried remote order can come back twice
                append_point(self.out_dir / POINTS_FILE, row)
                self.rows.append(row)
                self.done.add(_key(row))
        if result["training"]:
            replace_rows(
                self.out_dir / "training.jsonl", result["training"], ("method", "order", "stage")
            )
        if result["gates"]:
            self._write_gates(result["gates"])
        for name, data in result["branches"].items():
            path = self.out_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data)
        self.progress.log(f"{method}, order {index}: done")

    def method_on_order(self, method: str, index: int, order: tuple[str, ...]) -> None:
        """Learn ``order`` with ``method``, evaluating digitally after each stage, then on every
        chip; skipped when all its rows are already written."""
        from cimsim.adapters.branches import save_branches
        from cimsim.chip.deploy import deploy, undeploy
        from cimsim.eval.models import load_model
        from cimsim.eval.scoring import make_scorer

        config = self.config
        stages = [order] if method == "joint" else [(t,) for t in order]
        first = len(order) - len(stages)  # joint's single stage is the last row of R
        if self.finished(method, index, order):
            return
        self.progress.log(f"{method}, order {index}: {' > '.join(order)}")
        loaded = load_model(config.model, device=config.compute_device)
        scorer = make_scorer(
            loaded, config.eval.max_length, config.prompted, config.eval.prompt_tokens
        )
        lora = config.lora.resolve(loaded.lora_targets)
        learner = Learner(
            method,
            scorer,
            loaded.model,
            lora,
            seed=config.seed,
            gate=config.gate,
            lam_orth=config.lam_orth,
        )
        base: dict[str, Any] = {
            "method": method,
            "objective": config.objective,
            "order": index,
            "sequence": " > ".join(order),
        }
        snapshots: list[tuple[dict[str, Any], dict[str, torch.Tensor], int]] = []
        for s, names in enumerate(stages):
            stage = first + s
            base_stage = {**base, "stage": stage, "trained": "+".join(names)}
            self._learn(learner, stage, names, base_stage)
            snapshots.append((base_stage, learner.state(), len(learner.branches)))
            self.progress.stage(f"{method}: digital accuracy after stage {stage}", stage + 1)
            self._evaluate(scorer, base_stage, order, stage, _digital())
        save_branches(
            loaded.model,
            self.out_dir / "branches" / method / f"order{index}",
            dict.fromkeys(learner.branches, lora),
            base_model_name_or_path=loaded.path,
        )
        if learner.bank is not None:
            self._gate_rows(learner, order, base)
        n_evals = sum(row["stage"] + 1 for row, _, _ in snapshots)
        self.progress.stage(f"{method}: chips", len(self._chips()) * n_evals)
        for value, instance in self._chips():
            point_card = self.card.with_value("sigma", value)
            seed = chip_seed(config.seed, self.card.name, "sigma", value, instance)
            # One programming event per chip: every stage's branches then run on the same tiles.
            deploy(loaded.model, point_card.noise, seed, point_card.tile)
            chip = {
                "card": self.card.name,
                "noise_model": self.card.noise.name,
                "sigma": value,
                "sigma_unit": self.card.noise.sigma_unit,
                "instance": instance,
                "chip_seed": seed,
            }
            for base_stage, state, n_branches in snapshots:
                learner.show(state, n_branches)
                self._evaluate(scorer, base_stage, order, base_stage["stage"], chip)
        undeploy(loaded.model)

    def _learn(
        self, learner: Learner, stage: int, names: tuple[str, ...], base: dict[str, Any]
    ) -> None:
        from cimsim.adapters.train import task_batches, train_steps

        train = self.config.train
        first = self.tasks[names[0]]
        memory = first.train.subset(self.config.memory_size, seed=train.seed)
        learner.begin(
            stage, self.branch_of[names[0]], first, memory.texts, self.config.eval.batch_size
        )
        if len(names) > 1:  # joint: every task's batches, shuffled together
            batches = [b for n in names for b in task_batches(self.tasks[n], train)]
            random.Random(self.config.seed).shuffle(batches)
        else:
            batches = task_batches(self.tasks[names[0]], train)
        started = time.perf_counter()
        log = train_steps(
            learner.scorer,
            learner.model,
            batches,
            train,
            self.config.objective,
            self.progress,
            card=self.train_card,
            regulariser=learner.regulariser,
            after_step=learner.after_step,
            param_groups=learner.param_groups(),
        )
        last = self.tasks[names[-1]]
        memory = last.train.subset(self.config.memory_size, seed=train.seed)
        learner.end(last, memory.texts, self.config.eval.batch_size)
        tail = [step["loss"] for step in log[-10:]]
        row = {
            **base,
            "steps": len(log),
            "final_loss": sum(tail) / len(tail),
            "train_seconds": round(time.perf_counter() - started, 2),
        }
        if learner.bank is not None:
            row["gate_memory"] = room = learner.bank.memory_sizes()
            width = learner.bank.config.hidden
            if room["hidden"] >= width and stage < len(self.config.tasks) - 1:
                self.progress.log(
                    f"warning: {learner.method}: the gates' hidden-layer memory is full ({width} of"
                    f" {width} dimensions at energy {learner.bank.config.energy}), so a later gate"
                    " cannot learn its second layer and will hardly open; lower the gate energy"
                    " or widen the gates ([continual.gate] hidden)"
                )
        # A resumed run trains an unfinished order's stages again: their rows replace the old.
        replace_rows(self.out_dir / "training.jsonl", [row], ("method", "order", "stage"))

    def _evaluate(
        self,
        scorer: Any,
        base: dict[str, Any],
        order: tuple[str, ...],
        stage: int,
        chip: dict[str, Any],
    ) -> None:
        """Accuracy of every task seen up to ``stage`` (those not yet written)."""
        from cimsim.eval.evaluate import evaluate

        for task in order[: stage + 1]:
            row = {**base, "task": task, "position": order.index(task), **chip}
            if _key(row) not in self.done:
                result = evaluate(
                    scorer, self.tasks[task], self.tests[task], self.config.eval.batch_size
                )
                row.update(
                    accuracy=result.accuracy,
                    n_correct=result.n_correct,
                    n_examples=result.n_examples,
                )
                append_point(self.out_dir / POINTS_FILE, row)
                self.rows.append(row)
                self.done.add(_key(row))
            self.progress.advance()

    @torch.no_grad()
    def _gate_rows(self, learner: Learner, order: tuple[str, ...], base: dict[str, Any]) -> None:
        """Gate values of every final branch on every task's test rows -> gates.jsonl/.csv."""

        assert learner.bank is not None
        task_of = {b: t for t, b in self.branch_of.items()}
        rows = []
        for task in order:
            records = learner.gate_records(
                self.tasks[task], self.tests[task].texts, self.config.eval.batch_size
            )
            for branch in learner.bank.gates:
                values = torch.cat([r[branch] for r in records]).float()
                rows.append(
                    {
                        **base,
                        "branch": branch,
                        "branch_position": order.index(task_of[branch]),
                        "task": task,
                        "position": order.index(task),
                        "median": values.median().item(),
                        "mean": values.mean().item(),
                        "p90": values.quantile(0.9).item(),
                        "rows": len(values),
                    }
                )
        self._write_gates(rows)

    def _write_gates(self, rows: list[dict[str, Any]]) -> None:
        import pandas as pd

        every = replace_rows(self.out_dir / "gates.jsonl", rows, ("method", "order"))
        write_atomic(self.out_dir / "gates.csv", pd.DataFrame(every).to_csv(index=False))


def _digital() -> dict[str, Any]:
    return {
        "card": "digital",
        "noise_model": "digital",
        "sigma": None,
        "sigma_unit": "",
        "instance": -1,
        "chip_seed": None,
    }


def _key(row: dict[str, Any]) -> tuple:
    return tuple(row[key] for key in CONTINUAL_POINT)
