"""lm-evaluation-harness tasks over a sweep's grid: one row per (value, chip, task, metric).

``run_harness(config, out_dir)`` loads the sweep's deployment once (model, adapter), wraps it in
cimsim's lm-eval model (:class:`cimsim.runs.harness_model.CimsimLM`) and, for the digital
reference and every (value, chip instance) of the grid, programs the chip exactly as ``cimsim
sweep`` does (same seeds) and runs lm-eval's ``simple_evaluate`` on the tasks: lm-eval's task
definitions, prompts and metrics, on the chip.

Files (schema ``cimsim.harness/1``): ``config.json``; ``points.jsonl`` and ``results.csv``, one
row per (card, value, instance, task, metric) with the metric's value in ``accuracy`` (the
sweep's column, whatever the metric) and lm-eval's standard error in ``stderr``;
``summary.csv`` (mean, std, sem, min, max over chips per task, metric and value);
``lm_eval/<point>.json``, lm-eval's own results of each point; ``sweep.png``/``.pdf``, one curve
per task and metric bounded in [0, 1]. Re-running resumes; ``cimsim plot`` redraws.

lm-eval reads task data through ``datasets``, offline (cimsim never downloads at run time):
every task's data must be in the local ``datasets`` cache or named by a local task YAML
(``dataset_path: json`` with ``data_files``). A task whose data are missing is one line before
any work.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from cimsim.chip.cards import DeviceCard
from cimsim.core.config import to_dict, with_defaults
from cimsim.core.errors import CimsimError
from cimsim.core.io import append_point, read_json, write_atomic
from cimsim.core.lock import one_writer
from cimsim.core.progress import Progress, Silent
from cimsim.runs.results import (
    CONFIG_FILE,
    POINTS_FILE,
    RESULTS_CSV,
    SUMMARY_CSV,
    environment,
    points_frame,
    read_points,
    stored_record,
)
from cimsim.runs.sweep import (
    SweepConfig,
    check_card,
    chip_seed,
    describe,
    load_deployment,
    programmed,
)

SCHEMA = "cimsim.harness/1"
POINT = ("card", "value", "instance", "task", "metric")
RAW_DIR, FIGURE_STEM = "lm_eval", "sweep"


@dataclasses.dataclass(frozen=True)
class HarnessConfig:
    """A deployment (a sweep's config: its grid and chips) and the lm-eval tasks it runs."""

    sweep: SweepConfig = SweepConfig()
    tasks: tuple[str, ...] = ()
    """lm-eval task (or group) names."""
    include_path: str | None = None
    """A folder of task YAMLs lm-eval adds to its own (local tasks)."""
    limit: int | None = None
    """Documents per task (None: all), as lm-eval's ``--limit``."""
    num_fewshot: int | None = None
    """Few-shot examples (None: each task's default)."""
    batch_size: int = 8
    """Requests per forward pass."""

    def __post_init__(self) -> None:
        if not self.tasks:
            raise CimsimError("--lm-eval-tasks needs at least one task")
        if len(set(self.tasks)) != len(self.tasks):
            raise CimsimError("--lm-eval-tasks names a task twice")
        if self.limit is not None and self.limit < 1:
            raise CimsimError(f"--lm-eval-limit must be at least 1, got {self.limit}")
        if self.batch_size < 1:
            raise CimsimError(f"the lm-eval batch size must be at least 1, got {self.batch_size}")
        if self.sweep.engine != "cimsim":
            raise CimsimError("lm-eval tasks run on cimsim's engine (--engine cimsim)")

    def default_out_dir(self, card: DeviceCard, root: Path = Path("runs")) -> Path:
        from cimsim.core.config import config_hash

        sweep = self.sweep.default_out_dir(card, root)
        extra = {k: v for k, v in to_dict(self).items() if k != "sweep"}
        return root / f"lm-eval-{sweep.name}-{config_hash(extra, 6)}"


def task_manager(include_path: str | None) -> Any:
    """lm-eval's task index (with ``include_path``); a clear line when lm-eval is missing."""
    try:
        # registers cimsim's model and sets offline mode before lm-eval imports datasets
        from cimsim.runs.harness_model import TaskManager
    except ImportError:
        raise CimsimError("lm-eval tasks need lm-eval: pip install 'cimsim[lm-eval]'") from None
    if include_path is not None and not Path(include_path).is_dir():
        raise CimsimError(f"--lm-eval-include {include_path}: no such folder")
    return TaskManager(include_path=include_path)


def check_tasks(manager: Any, tasks: tuple[str, ...]) -> None:
    """Every task is known and its data are on this machine, before any work."""
    known = set(manager.all_tasks)
    for name in tasks:
        if name not in known:
            raise CimsimError(
                f"unknown lm-eval task '{name}' (lm-eval knows {len(known)} tasks; "
                "`cimsim lm-eval ls tasks` lists them, --lm-eval-include adds a folder of YAMLs)"
            )
        try:
            manager.load([name])  # builds the task: reads its data
        except Exception as err:  # datasets raises many kinds when offline data are missing
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CimsimError(
                f"lm-eval task '{name}': its data are not on this machine ({first[:160]}); "
                "cimsim does not download at run time: fill the datasets cache once "
                "(HF_DATASETS_OFFLINE=0) or point a task YAML at a local copy "
                "(docs/benchmarks.md)"
            ) from None


@one_writer
def run_harness(
    config: HarnessConfig,
    out_dir: Path,
    *,
    cache_dir: Path,
    card: DeviceCard | None = None,
    progress: Progress | None = None,
) -> Path:
    """Run (or resume) the tasks over the grid into ``out_dir``; returns ``out_dir``."""
    import lm_eval

    from cimsim.chip.deploy import undeploy
    from cimsim.runs.harness_model import CimsimLM

    progress = progress or Silent()
    sweep = config.sweep
    card = card if card is not None else sweep.resolve_card()
    train_card = check_card(sweep, card)
    os.environ.setdefault(
        "TQDM_DISABLE", "1"
    )  # cimsim draws the progress; lm-eval's would interleave
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    manager = task_manager(config.include_path)
    check_tasks(manager, config.tasks)
    record, rows = _prepare(config, out_dir)
    done = {(r["card"], r["value"], r["instance"], r["task"]) for r in rows}
    points = [("digital", None, -1)] + [
        (card.name, value, instance)
        for value in sorted(sweep.values)
        for instance in range(sweep.instances)
    ]
    pending = [p for p in points if any((*p, t) not in done for t in config.tasks)]
    if rows:
        progress.log(f"resuming {out_dir}: {len(rows)} finished rows are kept")
    deployment = load_deployment(sweep, train_card, cache_dir, progress)
    if deployment.loaded.kind != "causal":
        raise CimsimError(f"lm-eval tasks need a causal LM; '{sweep.model}' is an encoder")
    record.update(describe(sweep, card, deployment))
    record["lm_eval"] = {"version": _version("lm_eval"), "tasks": list(config.tasks)}
    record.setdefault("sessions", []).append({"started": time.time(), **environment()})
    write_atomic(out_dir / CONFIG_FILE, json.dumps(record, indent=2, default=str) + "\n")
    (out_dir / RAW_DIR).mkdir(exist_ok=True)
    lm = CimsimLM(deployment.loaded, batch_size=config.batch_size)
    base = {"model": sweep.model, "method": sweep.method, "varied": sweep.vary}
    progress.stage(f"lm-eval {','.join(config.tasks)} over {sweep.vary}", len(pending))
    for point_card_name, value, instance in pending:
        began = time.perf_counter()
        if value is None:
            undeploy(deployment.loaded.model)
            chip: dict[str, Any] = {"card": "digital", "noise_model": "digital", "value": None,
                                    "sigma": None, "instance": -1, "chip_seed": None}  # fmt: skip
            results = _evaluate(lm_eval, lm, config, manager)
        else:
            point_card = card.with_value(sweep.vary, value)
            seed = chip_seed(sweep.seed, card.name, sweep.vary, value, instance)
            on_chip = programmed(
                deployment.loaded, deployment.scorer, point_card, seed, "cimsim",
                sweep.placement, sweep.in_place,
            )  # fmt: skip
            with on_chip:
                results = _evaluate(lm_eval, lm, config, manager)
            chip = {"card": point_card_name, "noise_model": card.noise.name, "value": value,
                    "value_unit": card.unit(sweep.vary), "sigma": point_card.noise.sigma,
                    "sigma_unit": card.noise.sigma_unit, "instance": instance,
                    "chip_seed": seed}  # fmt: skip
        name = "digital" if value is None else f"{card.name}-{value:g}-{instance}"
        raw = {k: results.get(k) for k in ("results", "versions", "n-samples", "configs")}
        write_atomic(out_dir / RAW_DIR / f"{name}.json", json.dumps(raw, indent=2, default=str))
        seconds = round(time.perf_counter() - began, 3)
        for row in metric_rows(results["results"], results.get("n-samples", {})):
            row = {**base, **chip, **row, "eval_seconds": seconds}
            if (row["card"], row["value"], row["instance"], row["task"]) in done:
                continue
            append_point(out_dir / POINTS_FILE, row)
            rows.append(row)
        done.update((chip["card"], value, instance, t) for t in config.tasks)
        progress.advance()
    undeploy(deployment.loaded.model)
    write_harness_report(out_dir)
    return out_dir


def _evaluate(lm_eval: Any, lm: Any, config: HarnessConfig, manager: Any) -> dict[str, Any]:
    results = lm_eval.simple_evaluate(
        model=lm, tasks=list(config.tasks), task_manager=manager, limit=config.limit,
        num_fewshot=config.num_fewshot, log_samples=False, random_seed=config.sweep.seed,
        numpy_random_seed=config.sweep.seed, torch_random_seed=config.sweep.seed,
        fewshot_random_seed=config.sweep.seed,
    )  # fmt: skip
    if not results or "results" not in results:
        raise CimsimError("lm-eval returned no results")
    return results


def metric_rows(
    results: dict[str, dict[str, Any]], samples: dict[str, dict[str, Any]]
) -> list[dict]:
    """One row per (task, metric) of lm-eval's ``results`` table: ``acc,none`` becomes metric
    ``acc`` (``acc,FILTER`` keeps its filter), its value ``accuracy`` and ``acc_stderr,none``
    its ``stderr``; ``n_examples`` is the documents evaluated (lm-eval's ``n-samples``); group
    aggregates are rows of the group's name."""
    rows = []
    for task, metrics in results.items():
        for key, value in metrics.items():
            metric, _, filt = key.partition(",")
            if not filt or metric.endswith("_stderr") or not isinstance(value, (int, float)):
                continue
            stderr = metrics.get(f"{metric}_stderr,{filt}")
            rows.append(
                {"task": task, "metric": metric if filt == "none" else f"{metric},{filt}",
                 "accuracy": float(value),
                 "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
                 "n_examples": samples.get(task, {}).get("effective")}
            )  # fmt: skip
    return rows


def write_harness_report(run_dir: Path) -> list[Path]:
    """``results.csv``, ``summary.csv`` and the figure, from the folder's files alone."""
    import pandas as pd

    from cimsim.runs.plots import plot_sweep, save_figure
    from cimsim.runs.statistics import summarize

    record = read_json(run_dir / CONFIG_FILE)
    if record.get("schema") != SCHEMA:
        raise CimsimError(f"{run_dir} holds a '{record.get('schema')}' run, not an lm-eval sweep")
    rows = read_points(run_dir / POINTS_FILE, required=("card", "task", "metric"), unique=POINT)
    if not rows:
        raise CimsimError(f"{run_dir / POINTS_FILE} holds no row yet")
    frame = points_frame(rows)
    write_atomic(run_dir / RESULTS_CSV, frame.to_csv(index=False))
    # Each (task, metric) is a curve: the sweep's "method" column carries its name.
    curves = frame.assign(method=frame["task"] + " " + frame["metric"], task=frame["task"])
    summary = summarize(curves)
    write_atomic(run_dir / SUMMARY_CSV, summary.to_csv(index=False))
    in_unit = curves.groupby("method")["accuracy"].agg(lambda a: bool(a.between(0, 1).all()))
    shown = curves[curves["method"].map(in_unit)]  # metrics in [0, 1] share the accuracy axis
    if shown[shown["card"] != "digital"].empty:
        return [run_dir / RESULTS_CSV, run_dir / SUMMARY_CSV]
    model = record.get("model", {}).get("name", "")
    card = record.get("card", {}).get("name", "")
    unit = record.get("axis", {}).get("unit", "")
    figure = plot_sweep(
        pd.DataFrame(shown), budget=None,
        x_label=f"{record['config']['sweep']['vary']} [{unit}] ({card} card)",
        title=f"{model}: {', '.join(record['lm_eval']['tasks'])} "
        f"(lm-eval {record['lm_eval']['version']}), chips of the {card} card",
    )  # fmt: skip
    return [
        run_dir / RESULTS_CSV,
        run_dir / SUMMARY_CSV,
        *save_figure(figure, run_dir / FIGURE_STEM),
    ]


def _prepare(config: HarnessConfig, out_dir: Path) -> tuple[dict[str, Any], list[dict]]:
    """The folder's record and rows; the same config is required to resume (the grid may
    grow)."""
    record: dict[str, Any] = {"schema": SCHEMA, "config": to_dict(config)}
    stored = stored_record(out_dir, SCHEMA, "lm-eval sweep")
    if stored is not None:
        old, new = stored.get("config"), to_dict(config)
        if not isinstance(old, dict) or not isinstance(old.get("sweep"), dict):
            raise CimsimError(f"{out_dir / CONFIG_FILE} is damaged: no lm-eval sweep config")
        old = with_defaults(old, to_dict(HarnessConfig(tasks=("x",))))
        grid = ("values", "instances")
        if {**new, "sweep": {k: v for k, v in new["sweep"].items() if k not in grid}} != {
            **old,
            "sweep": {k: v for k, v in old["sweep"].items() if k not in grid},
        }:
            raise CimsimError(
                f"{out_dir} holds an lm-eval sweep with another config; choose another --out"
            )
        record = {**stored, "config": new}
    return record, read_points(
        out_dir / POINTS_FILE, repair=True, required=("card", "task", "metric"), unique=POINT
    )


def _version(package: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(package)
