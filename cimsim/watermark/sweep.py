"""Verification under noise: one signature's chips at every value of sigma, with and without
obfuscation, each chip read black-box and scored on the task.

``run_watermark_sweep(kit_dir, config, out_dir)`` programs chip ``i`` at ``sigma`` with the
sweep's seed rule (:func:`cimsim.runs.sweep.chip_seed`: the same chips ``cimsim sweep`` draws),
once per variant: ``plain`` (the base as it is, no compensation branches) and ``obfuscated``
(the base plus R on the analog tiles, the compensations in SRAM); a kit without obfuscation has
only ``plain``. Per chip it records the task's accuracy and the paired counts against the
variant's digital model, the signature read back (``?``: unreadable bit), the bit errors and
whether the signature verifies. Every finished chip is appended to ``points.jsonl`` and fsynced,
so a re-run resumes.

Per variant and value, ``summary.csv`` holds the task accuracy over chips, the bit error rate,
the chips verified and the chips within the task budget (a chip passes when the one-sided
Clopper-Pearson upper bound on its broken rate is within the budget, as in ``cimsim
tolerance``), each with its exact interval, and the chips whose observed accuracy drop
(broken - fixed over the test examples) is within the budget: a point estimate, no claim, that
shows what the test set's size keeps the statistical rule from passing (with 300 examples and
a 2-point budget it passes a chip with at most one broken example). ``summary.json`` holds the
largest sigma of the grid at which every chip verified, every chip kept the budget and every
chip's observed drop was within it, and the certified sigma of the first two (the largest value
whose yield lower bound reaches the target, every smaller value included).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from cimsim.adapters.watermark import parse_signature, signature_text
from cimsim.chip.cards import DEFAULT_CARD, DeviceCard, load_card
from cimsim.core.config import to_dict
from cimsim.core.errors import CimsimError
from cimsim.core.io import append_point, write_atomic
from cimsim.core.lock import one_writer
from cimsim.core.progress import Progress, Silent
from cimsim.core.ranges import check_chips
from cimsim.runs.results import environment, read_points, stored_record
from cimsim.runs.signoff import Rule, certified, yield_point
from cimsim.runs.sweep import chip_seed, pack_bits, unpack_bits

SCHEMA = "cimsim.watermark-sweep/1"
POINT = ("variant", "card", "value", "instance")


@dataclasses.dataclass(frozen=True)
class WatermarkSweepConfig:
    """Which chips of which signature are read."""

    signature: str
    """The assembled signature, as 0/1 text."""
    card: str = DEFAULT_CARD
    """Device card of the chips."""
    values: tuple[float, ...] = (0.005, 0.01, 0.02, 0.03, 0.04)
    """Sigma values, in the card's unit."""
    instances: int = 10
    """Chips per value (the same chips for every variant)."""
    seed: int = 0
    """Root of the chip seeds."""
    budget: float = 0.02
    """Largest task accuracy drop a chip may have, as a fraction (0.02 = 2 points)."""
    confidence: float = 0.95
    """Of the per-chip budget test and of the yield intervals."""
    target: float = 0.9
    """Yield that certification asks of the lower bound."""

    def __post_init__(self) -> None:
        check_chips(self.instances, self.seed)
        if not self.values or any(not v >= 0 for v in self.values):
            raise ValueError("the sweep needs sigma values >= 0")
        if not 0 < self.budget < 1 or not 0 < self.confidence < 1 or not 0 < self.target <= 1:
            raise ValueError("budget and confidence are in (0, 1), the target yield in (0, 1]")


@one_writer
def run_watermark_sweep(
    kit_dir: Path,
    config: WatermarkSweepConfig,
    out_dir: Path,
    *,
    cache_dir: Path,
    device: str = "cpu",
    progress: Progress | None = None,
) -> Path:
    """Run (or resume) the sweep into ``out_dir``; returns ``out_dir``."""
    from cimsim.chip.deploy import deploy, undeploy
    from cimsim.watermark.kit import load_kit

    progress = progress or Silent()
    card = load_card(config.card)
    for value in config.values:
        card.with_value("sigma", value)
    record = stored_record(out_dir, SCHEMA, "watermark sweep")
    if record is not None and record["sweep"]["signature"] != config.signature:
        raise CimsimError(f"{out_dir} holds another signature's sweep; choose another --out")
    rows = read_points(out_dir / "points.jsonl", repair=True, unique=POINT)
    done = {tuple(r[k] for k in POINT) for r in rows}
    kit = load_kit(kit_dir, cache_dir=cache_dir, device=device, progress=progress)
    signature = parse_signature(config.signature, kit.config.watermark.bits)
    variants = ("plain", "obfuscated") if kit.obfuscation else ("plain",)
    write_atomic(out_dir / "config.json", json.dumps({
        "schema": SCHEMA, "sweep": to_dict(config), "kit": str(kit_dir.resolve()),
        "kit_config": kit.record["config"], "card": card.to_dict(),
        "unit": card.noise.sigma_unit, "noise_model": card.noise.name,
        "chip_seed_rule": "sha256(f'{seed}/{card}/sigma={value!r}/{instance}')[:15 hex]",
        "environment": environment(),
    }, indent=2, default=str) + "\n")  # fmt: skip
    todo: dict[str, list[tuple[float | None, int]]] = {}
    for variant in variants:
        todo[variant] = [(None, -1)] if (variant, "digital", None, -1) not in done else []
        todo[variant] += [
            (value, instance)
            for value in sorted(config.values)
            for instance in range(config.instances)
            if (variant, card.name, value, instance) not in done
        ]
    progress.stage(f"reading signature {config.signature}", sum(map(len, todo.values())))
    references = {r["variant"]: unpack_bits(r["correct"], r["n_examples"]) for r in rows
                  if r["card"] == "digital"}  # fmt: skip
    for variant in variants:
        kit.show(signature, variant == "obfuscated")
        undeploy(kit.loaded.model)  # a parked chip of the other base must not come back
        for sigma, instance in todo[variant]:
            started = time.perf_counter()
            row: dict[str, Any] = {"variant": variant, "signature": config.signature}
            if sigma is None:
                row.update(card="digital", value=None, instance=-1, chip_seed=None)
            else:
                seed = chip_seed(config.seed, card.name, "sigma", sigma, instance)
                point = card.with_value("sigma", sigma)
                deploy(kit.loaded.model, point.noise, seed, point.tile)
                row.update(card=card.name, value=sigma, instance=instance, chip_seed=seed)
            row.update(_read_chip(kit, signature, references.get(variant)))
            if sigma is None:
                references[variant] = unpack_bits(row["correct"], row["n_examples"])
            row["eval_seconds"] = round(time.perf_counter() - started, 3)
            append_point(out_dir / "points.jsonl", row)
            rows.append(row)
            progress.advance()
        undeploy(kit.loaded.model)
    kit.show(None, obfuscated=False)
    write_results(out_dir, rows, config, card)
    return out_dir


def _read_chip(kit: Any, signature: tuple[int, ...], reference: Any) -> dict[str, Any]:
    """The chip as it is now: task accuracy (paired with ``reference``) and its reading."""
    accuracy = kit.accuracy()
    reading = kit.read()
    assert accuracy.correct is not None
    correct = accuracy.correct.numpy()
    row: dict[str, Any] = {
        "accuracy": accuracy.accuracy, "n_correct": accuracy.n_correct,
        "n_examples": accuracy.n_examples, "read": signature_text(reading.bits),
        "bit_errors": reading.errors(signature),
        "unreadable": sum(b is None for b in reading.bits), "verified": reading.verifies(signature),
    }  # fmt: skip
    if reference is None:
        row["correct"] = pack_bits(correct)
    else:
        row["broken"] = int((reference & ~correct).sum())
        row["fixed"] = int((~reference & correct).sum())
    return row


def summarize(rows: list[dict[str, Any]], config: WatermarkSweepConfig) -> pd.DataFrame:
    """Per variant and value: task accuracy, bit error rate, chips verified and chips within
    the budget, with their Clopper-Pearson intervals."""
    frame = pd.DataFrame([r for r in rows if r["card"] != "digital"])
    out = []
    for (variant, value), chips in frame.groupby(["variant", "value"], sort=True):
        value = float(value)  # type: ignore[arg-type]
        n = len(chips)
        rule = Rule.of(int(chips["n_examples"].iloc[0]), config.budget, config.confidence)
        verified = int(chips["verified"].sum())
        within = int((chips["broken"] <= rule.max_broken).sum())
        drop = (chips["broken"] - chips["fixed"]) / chips["n_examples"]
        observed = int((drop <= config.budget + 1e-12).sum())
        v, w = (yield_point(value, k, n, config.confidence) for k in (verified, within))
        bits = len(config.signature)
        out.append({
            "variant": variant, "value": value, "chips": n,
            "accuracy_mean": chips["accuracy"].mean(), "accuracy_std": chips["accuracy"].std(),
            "bit_error_rate": chips["bit_errors"].sum() / (n * bits),
            "verified": verified, "verified_low": v.low, "verified_high": v.high,
            "verified_lower_bound": v.lower_bound,
            "within_budget": within, "within_low": w.low, "within_high": w.high,
            "within_lower_bound": w.lower_bound, "max_broken": rule.max_broken,
            "observed_within": observed, "observed_drop_mean": drop.mean(),
            "observed_drop_max": drop.max(),
        })  # fmt: skip
    return pd.DataFrame(out)


def headline(summary: pd.DataFrame, config: WatermarkSweepConfig) -> dict[str, Any]:
    """Per variant: the largest grid sigma at which every chip verified (and every smaller one),
    the same for the task budget and for the observed drop, and the certified sigma of the
    first two at the target yield (the observed drop is a point estimate: nothing certified)."""
    result: dict[str, Any] = {}
    whats = (("verification", "verified"), ("task_budget", "within_budget"),
             ("task_observed", "observed_within"))  # fmt: skip
    for variant, table in summary.groupby("variant", sort=False):
        table = table.sort_values("value")
        entry: dict[str, Any] = {}
        for what, column in whats:
            all_pass = None
            for value, passes, chips in table[["value", column, "chips"]].to_numpy().tolist():
                if passes < chips:
                    break
                all_pass = value
            entry[what] = {"all_chips_up_to": all_pass}
            if what == "task_observed":
                continue
            points = [
                yield_point(float(value), int(k), int(n), config.confidence)
                for value, k, n in table[["value", column, "chips"]].to_numpy().tolist()
            ]
            best = certified(points, config.target)
            entry[what]["certified"] = best.value if best is not None else None
            entry[what]["certified_lower_bound"] = best.lower_bound if best is not None else None
        result[str(variant)] = entry
    return result


def write_results(
    out_dir: Path, rows: list[dict[str, Any]], config: WatermarkSweepConfig, card: DeviceCard
) -> list[Path]:
    """results.csv, summary.csv, summary.json and the figure, from the rows alone."""
    from cimsim.runs.plots import save_figure
    from cimsim.watermark.report import plot_watermark

    frame = pd.DataFrame(rows).drop(columns=["correct"], errors="ignore")
    write_atomic(out_dir / "results.csv", frame.to_csv(index=False))
    summary = summarize(rows, config)
    write_atomic(out_dir / "summary.csv", summary.to_csv(index=False))
    digital = {r["variant"]: r["accuracy"] for r in rows if r["card"] == "digital"}
    facts = {
        "signature": config.signature, "card": card.name, "unit": card.noise.sigma_unit,
        "chips_per_value": config.instances, "budget_points": 100 * config.budget,
        "confidence": config.confidence, "target_yield": config.target,
        "digital_accuracy": digital, "by_variant": headline(summary, config),
    }  # fmt: skip
    write_atomic(out_dir / "summary.json", json.dumps(facts, indent=2) + "\n")
    figure = plot_watermark(frame, summary, unit=card.noise.sigma_unit, card=card.name,
                            budget=config.budget, digital=digital)  # fmt: skip
    figures = save_figure(figure, out_dir / "watermark")
    return [out_dir / "results.csv", out_dir / "summary.csv", *figures]
