"""Per-layer sensitivity: which base layers a chip's accuracy loss comes from.

``run_sensitivity(config, out_dir)`` loads the deployment once (as a sweep does) and, at each
value of the sweep's field, evaluates each of its chips (the sweep's own chips: the same seeds
as ``cimsim sweep`` with the same options, so a chip seen collapsing there is the one examined
here) in these placements, one result row each:

* ``all``: every tile analog (the sweep's point);
* ``only`` g: only group g analog, the rest digital; ``drop`` = digital − accuracy;
* ``except`` g: everything analog but g; ``recovery`` = accuracy − the ``all`` accuracy;
* ``redraw`` g (a chip whose ``all`` accuracy misses the budget): the chip with only g's tiles
  programmed again from another seed; ``restored`` = accuracy − the ``all`` accuracy. A fresh
  draw of one group that brings the chip back within the budget names the group whose draw
  broke it, as opposed to a group that is merely sensitive on every chip.

Analog tiles in every placement hold exactly the weights they hold on the all-analog chip
(:func:`cimsim.chip.deploy.deploy`). Groups (:func:`cimsim.chip.placement.layer_groups`): each
module kind, each block, each module, or the user's patterns.

Files (schema ``cimsim.sensitivity/1``): ``config.json`` (the config, the groups with their tiles
and analog weights); ``points.jsonl``/``results.csv``, one row per (value, chip, mode, group);
``table.csv``, per value and group: drop, recovery and their spread over chips, analog weights,
ranked by drop; ``diagnosis.csv``, per failing chip the groups whose redraw restores it;
``summary.json``; ``sensitivity.png``/``.pdf``. Re-running resumes; ``cimsim plot`` redraws.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from cimsim.chip.cards import DeviceCard
from cimsim.chip.placement import GROUPINGS, block_of, kind_of, layer_groups
from cimsim.core.config import to_dict, with_defaults
from cimsim.core.errors import CimsimError
from cimsim.core.io import append_point, read_json, write_atomic
from cimsim.core.lock import one_writer
from cimsim.core.progress import Progress, Silent
from cimsim.runs.results import (
    CONFIG_FILE,
    POINTS_FILE,
    RESULTS_CSV,
    environment,
    read_points,
    stored_record,
)
from cimsim.runs.sweep import (
    SweepConfig,
    check_card,
    chip_seed,
    copy_adapter,
    describe,
    load_deployment,
    pack_bits,
    unpack_bits,
)

SCHEMA = "cimsim.sensitivity/1"
MODES = ("all", "only", "except", "redraw")
POINT = ("value", "instance", "mode", "group")
TABLE_CSV, DIAGNOSIS_CSV, SUMMARY_JSON, FIGURE_STEM = (
    "table.csv",
    "diagnosis.csv",
    "summary.json",
    "sensitivity",
)


@dataclasses.dataclass(frozen=True)
class SensitivityConfig:
    """A deployment (its values: where sensitivity is measured; its instances: the chips) and
    how its tiles are grouped."""

    sweep: SweepConfig = SweepConfig()
    groups: tuple[str, ...] = ("kind", "block")
    """Groupings (kind, block, module) and patterns (``re:PATTERN``, one group each)."""
    budget: float = 0.01
    """Accuracy drop from digital (a fraction) beyond which a chip is diagnosed."""
    diagnose: bool = True
    """Redraw each group of every chip that misses the budget."""

    def __post_init__(self) -> None:
        if self.sweep.engine != "cimsim":
            raise CimsimError("sensitivity needs the cimsim engine (placements per layer)")
        if self.sweep.digital is not None:
            raise CimsimError("sensitivity places every layer itself: drop --digital")
        if not self.groups:
            raise CimsimError("sensitivity needs at least one grouping")
        for group in self.groups:
            if group not in GROUPINGS and not group.startswith("re:"):
                raise CimsimError(
                    f"unknown grouping {group!r}: use {', '.join(GROUPINGS)} or re:PATTERN"
                )
        if not 0 <= self.budget < 1:
            raise CimsimError(f"the budget is a drop in [0, 100) points, got {100 * self.budget}")

    def default_out_dir(self, card: DeviceCard, root: Path = Path("runs")) -> Path:
        from cimsim.core.config import config_hash

        stem = self.sweep.default_out_dir(card, root).name
        return root / f"sensitivity-{stem}-{config_hash([to_dict(self), card.to_dict()])}"


def groups_of(config: SensitivityConfig, names: list[str]) -> dict[str, dict[str, list[str]]]:
    """Grouping -> group -> tile names, in the config's order (patterns under ``re``)."""
    grouped: dict[str, dict[str, list[str]]] = {}
    patterns = [g.removeprefix("re:") for g in config.groups if g.startswith("re:")]
    for grouping in config.groups:
        if grouping in GROUPINGS:
            grouped[grouping] = layer_groups(names, grouping)
    if patterns:
        grouped["re"] = layer_groups(names, patterns)
    return grouped


def redraw_seed(seed: int, group: str) -> int:
    """The other chip a group is redrawn from: derived from the chip's seed and the group."""
    return int(hashlib.sha256(f"{seed}/redraw/{group}".encode()).hexdigest()[:15], 16)


@one_writer
def run_sensitivity(
    config: SensitivityConfig,
    out_dir: Path,
    *,
    cache_dir: Path,
    card: DeviceCard | None = None,
    progress: Progress | None = None,
) -> Path:
    """Run (or resume) the sensitivity analysis into ``out_dir``; returns ``out_dir``."""
    from cimsim.chip.deploy import deploy, redraw, tile_weights, undeploy
    from cimsim.eval.evaluate import evaluate

    progress = progress or Silent()
    sweep = config.sweep
    card = card if card is not None else sweep.resolve_card()
    train_card = check_card(sweep, card)
    deployment = load_deployment(sweep, train_card, cache_dir, progress)
    loaded, scorer, task, test = (
        deployment.loaded, deployment.scorer, deployment.task, deployment.test
    )  # fmt: skip
    weights = dict(tile_weights(loaded.model))
    grouped = groups_of(config, list(weights))  # a pattern matching nothing fails here
    record, rows = _prepare(config, out_dir)
    done = {tuple(r[k] for k in POINT): r for r in rows}
    copy_adapter(deployment, out_dir)
    record.update(describe(sweep, card, deployment))
    record["groups"] = {
        grouping: {g: {"tiles": names, "analog_weights": sum(weights[n] for n in names)}
                   for g, names in groups.items()}
        for grouping, groups in grouped.items()
    }  # fmt: skip
    total = sum(weights.values())
    record["tile_weights"] = total
    record.setdefault("sessions", []).append({"started": time.time(), **environment()})
    write_atomic(out_dir / CONFIG_FILE, json.dumps(record, indent=2, default=str) + "\n")

    batch = sweep.eval.batch_size
    base = {"model": sweep.model, "task": sweep.task, "method": sweep.method, "card": card.name}
    digital_key = (None, -1, "digital", "")
    if digital_key in done:
        reference = unpack_bits(done[digital_key]["correct"], len(test))
    else:
        result = evaluate(scorer, task, test, batch)
        assert result.correct is not None
        reference = result.correct.numpy()
        row: dict[str, Any] = {**base, "value": None, "instance": -1, "mode": "digital"}
        row["group"] = ""
        row.update(accuracy=result.accuracy, n_correct=result.n_correct)
        row.update(n_examples=len(test), correct=pack_bits(reference))
        append_point(out_dir / POINTS_FILE, row)
        rows.append(row)
        done[digital_key] = row
    digital_accuracy = float(done[digital_key]["accuracy"])
    every = [(grouping, g, names) for grouping, groups in grouped.items()
             for g, names in groups.items()]  # fmt: skip

    def point(value: float, instance: int, mode: str, grouping: str, group: str,
              names: list[str]) -> dict[str, Any]:  # fmt: skip
        key = (value, instance, mode, group if mode == "all" else f"{grouping}:{group}")
        if key in done:
            return done[key]
        point_card = card.with_value(sweep.vary, value)
        seed = chip_seed(sweep.seed, card.name, sweep.vary, value, instance)
        members = set(names)
        digital = {
            "all": None,
            "only": lambda name: name not in members,
            "except": lambda name: name in members,
            "redraw": None,
        }[mode]
        began = time.perf_counter()
        deploy(loaded.model, point_card.noise, seed, point_card.tile, digital)
        if mode == "redraw":
            redraw(loaded.model, point_card.noise, redraw_seed(seed, key[3]), point_card.tile,
                   lambda name: name in members)  # fmt: skip
        result = evaluate(scorer, task, test, batch)
        assert result.correct is not None
        chip = result.correct.numpy()
        group_weights = sum(weights[n] for n in names)
        analog_weights = {"only": group_weights, "except": total - group_weights}.get(mode, total)
        row = {
            **base,
            "value": value,
            "value_unit": card.unit(sweep.vary),
            "sigma": point_card.noise.sigma,
            "noise_model": card.noise.name,
            "instance": instance,
            "chip_seed": seed,
            "mode": mode,
            "grouping": grouping,
            "group": key[3],
            "accuracy": result.accuracy,
            "n_correct": result.n_correct,
            "n_examples": len(test),
            "broken": int((reference & ~chip).sum()),
            "fixed": int((~reference & chip).sum()),
            "analog_weights": analog_weights,
            "eval_seconds": round(time.perf_counter() - began, 3),
        }
        append_point(out_dir / POINTS_FILE, row)
        rows.append(row)
        done[key] = row
        progress.advance()
        return row

    values = sorted(sweep.values)
    steps = len(values) * sweep.instances * (1 + 2 * len(every))
    progress.stage(f"sensitivity of {len(every)} groups ({card.name})", steps)
    for value in values:
        for instance in range(sweep.instances):
            whole = point(value, instance, "all", "all", "all", [])
            for grouping, group, names in every:
                point(value, instance, "only", grouping, group, names)
                point(value, instance, "except", grouping, group, names)
            if config.diagnose and digital_accuracy - float(whole["accuracy"]) > config.budget:
                for grouping, group, names in every:
                    point(value, instance, "redraw", grouping, group, names)
    undeploy(loaded.model)
    write_sensitivity_report(out_dir)
    return out_dir


def _prepare(config: SensitivityConfig, out_dir: Path) -> tuple[dict[str, Any], list[dict]]:
    """The folder's record and finished rows; resuming needs the same config."""
    record: dict[str, Any] = {"schema": SCHEMA, "config": to_dict(config)}
    stored = stored_record(out_dir, SCHEMA, "sensitivity")
    if stored is not None:
        old = stored.get("config")
        if not isinstance(old, dict):
            raise CimsimError(f"{out_dir / CONFIG_FILE} is damaged: no sensitivity config")
        if with_defaults(old, to_dict(SensitivityConfig())) != to_dict(config):
            raise CimsimError(
                f"{out_dir} holds a sensitivity run with another config; choose another --out"
            )
        record = {**stored, "config": to_dict(config)}
    return record, read_points(out_dir / POINTS_FILE, repair=True, required=("mode",), unique=POINT)


@dataclasses.dataclass(frozen=True)
class SensitivityReport:
    table: Any  # pandas.DataFrame: per value and group
    diagnosis: Any  # pandas.DataFrame: per failing chip and group
    summary: dict[str, Any]
    figures: list[Path]


def write_sensitivity_report(run_dir: Path) -> SensitivityReport:
    """Tables, summary and figure of a sensitivity folder, from its files alone."""
    import pandas as pd

    from cimsim.runs.plots import plot_sensitivity, save_figure

    record = read_json(run_dir / CONFIG_FILE)
    rows = read_points(run_dir / POINTS_FILE, repair=False, required=("mode",), unique=POINT)
    digital = [r for r in rows if r["mode"] == "digital"]
    if not digital:
        raise CimsimError(f"{run_dir} has no digital reference yet")
    digital_accuracy = float(digital[0]["accuracy"])
    frame = pd.DataFrame([r for r in rows if r["mode"] != "digital"])
    write_atomic(run_dir / RESULTS_CSV, frame.to_csv(index=False))
    whole = frame[frame["mode"] == "all"].set_index(["value", "instance"])["accuracy"]
    keys = zip(frame["value"], frame["instance"], strict=True)
    frame["all_accuracy"] = [whole.get(key) for key in keys]
    total = float(record["tile_weights"])
    table_rows = []
    for (value, group), part in frame[frame["mode"].isin(["only", "except"])].groupby(
        ["value", "group"], sort=False
    ):
        only = part[part["mode"] == "only"]
        rest = part[part["mode"] == "except"]
        drop = digital_accuracy - only["accuracy"]
        recovery = rest["accuracy"].to_numpy() - rest["all_accuracy"].to_numpy()
        grouping, _, name = str(group).partition(":")
        table_rows.append({
            "value": value, "grouping": grouping, "group": name,
            "drop": drop.mean(), "drop_std": drop.std(ddof=1) if len(drop) > 1 else 0.0,
            "recovery": recovery.mean() if len(recovery) else float("nan"),
            "recovery_std": recovery.std(ddof=1) if len(recovery) > 1 else 0.0,
            "chips": len(only),
            "analog_weights": int(only["analog_weights"].iloc[0]) if len(only) else 0,
            "weight_fraction": (only["analog_weights"].iloc[0] / total) if len(only) else 0.0,
            "block": _block(grouping, name), "kind": _kind(grouping, name),
        })  # fmt: skip
    table = pd.DataFrame(table_rows)
    if len(table):
        table = table.sort_values(["value", "drop"], ascending=[True, False])
    write_atomic(run_dir / TABLE_CSV, table.to_csv(index=False))
    redraws = frame[frame["mode"] == "redraw"].copy()
    budget = float(record["config"]["budget"])
    if len(redraws):
        redraws["restored"] = redraws["accuracy"] - redraws["all_accuracy"]
        redraws["within_budget"] = digital_accuracy - redraws["accuracy"] <= budget
        redraws = redraws.sort_values(
            ["value", "instance", "restored"], ascending=[True, True, False]
        )
        diagnosis = redraws[["value", "instance", "chip_seed", "group", "all_accuracy", "accuracy",
                             "restored", "within_budget"]]  # fmt: skip
    else:
        diagnosis = pd.DataFrame(columns=["value", "instance", "group", "restored"])
    write_atomic(run_dir / DIAGNOSIS_CSV, diagnosis.to_csv(index=False))
    summary = _summary(record, digital_accuracy, whole, table, diagnosis, budget)
    write_atomic(run_dir / SUMMARY_JSON, json.dumps(summary, indent=2, default=float) + "\n")
    figures = save_figure(plot_sensitivity(table, frame, summary), run_dir / FIGURE_STEM)
    return SensitivityReport(table, diagnosis, summary, figures)


def _block(grouping: str, name: str) -> int | None:
    if grouping == "block" and name.startswith("block "):
        return int(name.split()[1])
    return block_of(name) if grouping == "module" else None


def _kind(grouping: str, name: str) -> str | None:
    return name if grouping == "kind" else kind_of(name) if grouping == "module" else None


def _summary(record: dict[str, Any], digital_accuracy: float, whole: Any, table: Any,
             diagnosis: Any, budget: float) -> dict[str, Any]:  # fmt: skip
    card = record.get("card", {})
    axis = record.get("axis", {})
    per_value = []
    for value, part in table.groupby("value", sort=True) if len(table) else []:
        chips = whole.xs(value, level="value") if value in whole.index.get_level_values(0) else []
        ranked = {}
        for grouping, rows in part.groupby("grouping", sort=False):
            top = rows.sort_values("drop", ascending=False).iloc[0]
            best = rows.sort_values("recovery", ascending=False).iloc[0]
            ranked[grouping] = {
                "most_sensitive": str(top["group"]), "its_drop": float(top["drop"]),
                "best_recovery": str(best["group"]), "its_recovery": float(best["recovery"]),
            }  # fmt: skip
        per_value.append(
            {"value": value, "all_analog_accuracy": [float(a) for a in chips], "by": ranked}
        )
    explained = []
    for (value, instance), part in (
        diagnosis.groupby(["value", "instance"]) if len(diagnosis) else []
    ):
        fixes = part[part["within_budget"]]
        explained.append({
            "value": value, "instance": int(instance),
            "all_analog_accuracy": float(part["all_accuracy"].iloc[0]),
            "restored_by": [str(g) for g in fixes["group"]],
            "best": str(part.iloc[0]["group"]), "best_accuracy": float(part.iloc[0]["accuracy"]),
        })  # fmt: skip
    return {
        "schema": SCHEMA,
        "card": card.get("name"),
        "noise_model": axis.get("noise_model"),
        "varied": axis.get("varied"),
        "unit": axis.get("unit"),
        "digital_accuracy": digital_accuracy,
        "budget": budget,
        "values": per_value,
        "diagnosis": explained,
        "rule": (
            "drop = digital accuracy - accuracy with only the group analog; recovery = accuracy "
            "with the group digital - accuracy all analog; a chip missing the budget is "
            "explained by a group when redrawing that group alone brings it within the budget"
        ),
    }
