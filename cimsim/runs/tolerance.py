"""Sign-off: the certified tolerance of a deployment, from chips judged against a budget.

``run_tolerance(config, out_dir)`` loads the deployment once (as a sweep does), evaluates the
digital reference, then judges chip instances at values of the searched field with the rule of
:mod:`cimsim.runs.signoff` (a chip passes when the exact upper bound on its paired accuracy drop
is within the budget). Two ways of choosing chips:

* ``common`` (default): chip ``i`` has one seed at every value, so for the Gaussian models
  (``w + σ·s·z``) it is one fixed pattern ``z`` whose size the field scales; stuck-at masks are
  one set of uniform draws compared with the rate (a device stuck at one rate stays stuck at
  every larger one); levels, bits and times change the programming or the periphery of the same
  draws. Each chip then has one threshold, the last value (from most to least favourable) at
  which it passes, and the yield curve is the survival function of the thresholds. This assumes
  a chip that fails at a value fails at every less favourable one; ``search = "grid"``
  evaluates every value and shows where that does not hold.
* ``independent``: each (value, chip) is a fresh programming event, the sweep's chips
  (:func:`cimsim.runs.sweep.chip_seed`): an honest per-value spread, no thresholds.

Two searches: ``threshold`` (common chips only) finds each chip's threshold on the grid
(:func:`threshold_search`: from just above the highest threshold so far it steps down to the
first pass, so a chip costs one passing decision, which reads every example digital gets right,
and a few failing ones, which an early stop ends after a few dozen); ``grid`` evaluates every
chip at every value. With ``early_stop`` a chip's evaluation ends as soon as the full test
set's decision is determined (:func:`signoff.decide`), reading the examples digital gets right
most narrowly first (:func:`evaluation_order`), so the answer is the one evaluating every
example would give, with fewer example evaluations; without it every chip runs on every example
and its accuracy is recorded (the k-th percentile chip, reported with ``search = "grid"``, needs
that).

Files in the results folder (schema ``cimsim.tolerance/1``): ``config.json``; ``points.jsonl``
and ``results.csv``, one row per chip decision (value, instance, chip seed, passed, broken,
fixed, examples used; accuracy when complete) plus the digital row with its per-example results;
``yield.csv`` (per value: passes, chips, yield, interval, lower bound, certified),
``summary.json`` (the rule, the certified tolerance or why none, the test set's resolution,
chips and examples used); ``yield.png``/``.pdf``. Re-running resumes; ``cimsim plot`` redraws.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cimsim.chip.cards import DeviceCard
from cimsim.core.config import config_hash, to_dict, with_defaults
from cimsim.core.errors import CimsimError
from cimsim.core.io import append_point, read_json, write_atomic
from cimsim.core.lock import one_writer
from cimsim.core.progress import Progress, Silent
from cimsim.runs import signoff
from cimsim.runs.results import (
    CONFIG_FILE,
    POINTS_FILE,
    RESULTS_CSV,
    environment,
    read_points,
    stored_record,
)
from cimsim.runs.statistics import LARGER_IS_BETTER
from cimsim.runs.sweep import (
    SweepConfig,
    check_card,
    chip_seed,
    copy_adapter,
    describe,
    load_deployment,
    pack_bits,
    programmed,
)

SCHEMA = "cimsim.tolerance/1"
SEARCHES = ("threshold", "grid")
CHIPS = ("common", "independent")
POINT = ("card", "varied", "value", "instance")
YIELD_CSV, SUMMARY_JSON, FIGURE_STEM = "yield.csv", "summary.json", "yield"


@dataclasses.dataclass(frozen=True)
class SignoffConfig:
    """What a chip must meet and how sure the answer must be."""

    budget: float = 0.01
    """Largest accuracy drop from digital a chip may have, as a fraction (0.01 = 1 point)."""
    target_yield: float = 0.9
    """Fraction of chips that must meet the budget."""
    confidence: float = 0.95
    """Confidence of every bound: the per-chip rule and the yield's lower bound."""
    search: str = "threshold"
    """'threshold': each common chip's threshold on the grid; 'grid': every value."""
    chips: str = "common"
    """'common': one seed per chip at every value; 'independent': fresh chips per value."""
    early_stop: bool = True
    """Stop a chip's evaluation once its pass/fail on the full test set is determined."""
    percentile: float = 0.05
    """The k-th percentile chip reported (with complete evaluations): 0.05 is the 5th."""

    def __post_init__(self) -> None:
        if not 0 < self.budget < 1:
            raise CimsimError(
                f"--budget is in points, above 0 and below 100; got {100 * self.budget:g}"
            )
        if not 0 < self.target_yield < 1:
            raise CimsimError(f"--yield must be in (0, 1), got {self.target_yield}")
        if not 0.5 <= self.confidence < 1:
            raise CimsimError(f"--confidence must be in [0.5, 1), got {self.confidence}")
        if self.search not in SEARCHES:
            raise CimsimError(f"--search is one of {', '.join(SEARCHES)}, got '{self.search}'")
        if self.chips not in CHIPS:
            raise CimsimError(f"--chips-mode is one of {', '.join(CHIPS)}, got '{self.chips}'")
        if self.search == "threshold" and self.chips != "common":
            raise CimsimError(
                "a threshold search needs common chips: use --search grid for independent"
            )
        if not 0 < self.percentile < 1:
            raise CimsimError(f"percentile must be in (0, 1), got {self.percentile}")


@dataclasses.dataclass(frozen=True)
class ToleranceConfig:
    """A deployment (a sweep's config: its values are the search grid, its instances the chips)
    and what it must meet."""

    sweep: SweepConfig = SweepConfig()
    signoff: SignoffConfig = SignoffConfig()

    def __post_init__(self) -> None:
        if self.sweep.engine != "cimsim":
            raise CimsimError("the sign-off runs on cimsim's engine (--engine cimsim)")

    def ordered_values(self) -> list[float]:
        """The grid from the most to the least favourable value."""
        better = self.sweep.vary in LARGER_IS_BETTER
        return sorted(set(self.sweep.values), reverse=better)

    def default_out_dir(self, card: DeviceCard, root: Path = Path("runs")) -> Path:
        """``runs/tolerance-<model>-<task>-<method>-<card>[-<field>]-<hash>``."""
        sweep = self.sweep.default_out_dir(card, root)
        return root / f"tolerance-{sweep.name}-{config_hash(to_dict(self.signoff), 6)}"

    def seed_of(self, card: str, value: float, instance: int) -> int:
        sweep = self.sweep
        if self.signoff.chips == "independent":
            return chip_seed(sweep.seed, card, sweep.vary, value, instance)
        return common_chip_seed(sweep.seed, card, sweep.vary, instance)


def common_chip_seed(seed: int, card: str, field: str, instance: int) -> int:
    """Chip ``instance``'s seed at every value of ``field``: ``sha256(f"{seed}/{card}/{field}/
    common/{instance}")``, 60 bits (disjoint from the sweep's per-value chips)."""
    key = f"{seed}/{card}/{field}/common/{instance}"
    return int(hashlib.sha256(key.encode()).hexdigest()[:15], 16)


@one_writer
def run_tolerance(
    config: ToleranceConfig,
    out_dir: Path,
    *,
    cache_dir: Path,
    card: DeviceCard | None = None,
    progress: Progress | None = None,
    executor: Any = None,
) -> Path:
    """Run (or resume) the sign-off into ``out_dir`` and write its summary; returns
    ``out_dir``. ``card`` is ``config.sweep.resolve_card()`` when the caller has it.
    ``executor`` (:class:`cimsim.runs.executors.RayExecutor`) searches the chips elsewhere, one
    chip per item; this process stays the only writer of the folder."""
    from cimsim.chip.deploy import undeploy

    progress = progress or Silent()
    sweep = config.sweep
    card = card if card is not None else sweep.resolve_card()
    train_card = check_card(sweep, card)
    record, rows = _prepare(config, out_dir)
    if rows:
        progress.log(f"resuming {out_dir}: {len(rows)} finished decisions are kept")
    started = time.perf_counter()
    deployment = load_deployment(sweep, train_card, cache_dir, progress)
    copy_adapter(deployment, out_dir)
    record.update(describe(sweep, card, deployment))
    record["axis"]["chip_seed_rule"] = (
        "sha256(f'{seed}/{card}/{field}/common/{instance}')[:15 hex]"
        if config.signoff.chips == "common"
        else record["axis"]["chip_seed_rule"]
    )
    record.setdefault("sessions", []).append({"started": time.time(), **environment()})
    write_atomic(out_dir / CONFIG_FILE, json.dumps(record, indent=2, default=str) + "\n")
    judge = Judge(config, card, deployment)
    done: dict[tuple, dict[str, Any]] = {tuple(r[k] for k in POINT): r for r in rows}
    digital = judge.digital_row()
    digital_key = ("digital", sweep.vary, None, -1)
    if digital_key in done:
        if done[digital_key].get("correct") != digital["correct"]:
            raise CimsimError(f"{out_dir}: the digital reference differs from the stored one")
    else:
        append_point(out_dir / POINTS_FILE, digital)
        rows.append(digital)

    def keep(row: dict[str, Any]) -> None:
        key = tuple(row[k] for k in POINT)
        if key not in done:  # a retried remote chip can come back twice: the first is kept
            append_point(out_dir / POINTS_FILE, row)
            rows.append(row)
            done[key] = row
        progress.advance()

    def decided(instance: int) -> dict[float, dict[str, Any]]:
        return {r["value"]: r for k, r in done.items() if k[0] == card.name and k[3] == instance}

    size = len(config.ordered_values())
    found: list[int] = []  # thresholds of the chips searched so far
    progress.stage(f"judging {sweep.instances} chips ({config.signoff.search})", sweep.instances)
    if executor is None:
        for instance in range(sweep.instances):
            threshold, _ = judge.chip(instance, _start(found, size), decided(instance), keep)
            found.append(threshold)
    else:
        chips = [(i, size - 1, decided(i)) for i in range(sweep.instances)]

        def start_now(queue: list) -> tuple:
            instance, _, known = queue[0]
            return instance, _start(found, size), known

        args = (config, card, train_card, str(cache_dir))
        for threshold, new in executor.map(_judge_worker, args, _remote_chip, chips, start_now):
            for row in new:
                keep(row)
            found.append(threshold)
    undeploy(deployment.loaded.model)
    elapsed = time.perf_counter() - started
    write_tolerance_report(out_dir, seconds=elapsed)
    return out_dir


class Judge:
    """Judges chips of one deployment against the sign-off rule; the local loop and every
    distributed worker build one (the digital reference is evaluated by each, identically).

    With ``early_stop`` only the examples digital gets right are read (a chip cannot break the
    others), the ones a chip breaks first at the front (:func:`evaluation_order`)."""

    def __init__(self, config: ToleranceConfig, card: DeviceCard, deployment: Any) -> None:
        import torch

        from cimsim.eval.evaluate import logit_batches
        from cimsim.eval.tasks.base import Split

        self.config, self.card, self.deployment = config, card, deployment
        sweep = config.sweep
        test = deployment.test
        self.rule = signoff.Rule.of(len(test), config.signoff.budget, config.signoff.confidence)
        self.base = {
            "model": sweep.model, "task": sweep.task, "method": sweep.method, "varied": sweep.vary,
        }  # fmt: skip
        batches = logit_batches(deployment.scorer, deployment.task, test, sweep.eval.batch_size)
        logits = torch.cat(list(batches))  # (n, n_labels)
        self.digital = (logits.argmax(dim=-1) == torch.tensor(test.labels)).numpy()
        self.n_examples = len(test)
        self.test, self.reference = test, self.digital
        if config.signoff.early_stop:
            order = evaluation_order(logits.numpy(), self.digital)[: int(self.digital.sum())]
            self.test = Split(
                tuple(test.texts[i] for i in order), tuple(test.labels[i] for i in order)
            )
            self.reference = self.digital[order]
        # digital-right examples from position i on: the most a chip can still break after i
        self.right_after = [int(self.reference[i:].sum()) for i in range(len(self.test) + 1)]

    def digital_row(self) -> dict[str, Any]:
        n_right = int(self.digital.sum())
        return {
            **self.base, "card": "digital", "value": None, "instance": -1, "chip_seed": None,
            "n_correct": n_right, "n_examples": self.n_examples,
            "accuracy": n_right / self.n_examples, "correct": pack_bits(self.digital),
        }  # fmt: skip

    def decide(self, value: float, instance: int) -> dict[str, Any]:
        """Program chip ``instance`` at ``value`` and judge it: its decision row."""
        from cimsim.eval.evaluate import correct_batches

        config, card, sweep = self.config, self.card, self.config.sweep
        loaded, scorer = self.deployment.loaded, self.deployment.scorer
        point_card = card.with_value(sweep.vary, value)
        seed = config.seed_of(card.name, value, instance)
        began = time.perf_counter()
        broken = fixed = used = 0
        decision: bool | None = None
        early = config.signoff.early_stop
        on_chip = programmed(
            loaded, scorer, point_card, seed, "cimsim", sweep.placement, sweep.in_place
        )
        with on_chip as chip_scorer:
            batches = correct_batches(
                chip_scorer, self.deployment.task, self.test, sweep.eval.batch_size, ramp=early
            )
            for batch_correct in batches:
                chip = batch_correct.numpy()
                right = self.reference[used : used + len(chip)]
                broken += int((right & ~chip).sum())
                fixed += int((~right & chip).sum())
                used += len(chip)
                if early:
                    decision = signoff.decide(self.rule, broken, self.right_after[used])
                    if decision is not None:
                        break
        row: dict[str, Any] = {
            **self.base,
            "card": card.name,
            "noise_model": card.noise.name,
            "value": value,
            "value_unit": card.unit(sweep.vary),
            "sigma": point_card.noise.sigma,
            "instance": instance,
            "chip_seed": seed,
            "passed": broken <= self.rule.max_broken if decision is None else decision,
            "broken": broken,
            "fixed": fixed,
            "n_used": used,
            "n_examples": self.n_examples,
            "eval_seconds": round(time.perf_counter() - began, 3),
        }
        if used == self.n_examples:  # evaluated on every example: its accuracy is known
            row["n_correct"] = int(self.reference.sum()) - broken + fixed
            row["accuracy"] = row["n_correct"] / self.n_examples
        return row

    def chip(
        self,
        instance: int,
        start: int,
        known: dict[float, dict[str, Any]],
        keep: Callable[[dict[str, Any]], None],
    ) -> tuple[int, list[dict[str, Any]]]:
        """Chip ``instance``'s search (from grid index ``start``) or grid, reusing the
        decisions in ``known`` (value -> row); every new row goes to ``keep`` as it is made.
        Returns the chip's threshold index (-1 in a grid search) and the new rows."""
        values = self.config.ordered_values()
        new: list[dict[str, Any]] = []

        def judge(value: float) -> bool:
            if value not in known:
                row = self.decide(value, instance)
                known[value] = row
                new.append(row)
                keep(row)
            return bool(known[value]["passed"])

        if self.config.signoff.search == "threshold":
            return threshold_search(lambda i: judge(values[i]), len(values), start), new
        for value in values:
            judge(value)
        return -1, new


def _judge_worker(
    config: ToleranceConfig, card: DeviceCard, train_card: DeviceCard | None, cache_dir: str
) -> Judge:
    """A distributed worker's state: the deployment and its digital reference, made once."""
    deployment = load_deployment(config.sweep, train_card, Path(cache_dir), Silent())
    return Judge(config, card, deployment)


def _remote_chip(judge: Judge, item: tuple) -> tuple[int, list[dict[str, Any]]]:
    instance, start, known = item
    return judge.chip(instance, start, dict(known), lambda row: None)


def evaluation_order(logits: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Indices of the test examples in the order an early-stopping judge evaluates them: those
    digital gets right by ascending digital margin (top score minus the runner-up: the ones
    noise flips first), then those digital gets wrong (no chip can break them). A failing chip
    then shows its broken examples in the first batches, and a passing one is decided when the
    last digital-right example is in; the decision is the same as in any order, since it is the
    count over the whole set."""
    top2 = np.sort(logits, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0] if logits.shape[1] > 1 else np.zeros(len(logits))
    fragile = np.flatnonzero(right)[np.argsort(margin[right], kind="stable")]
    return np.concatenate([fragile, np.flatnonzero(~right)])


def threshold_search(passes: Callable[[int], bool], size: int, start: int) -> int:
    """The last index of ``0..size-1`` at which the monotone ``passes`` holds (-1: none).

    A passing decision costs every example digital gets right, a failing one usually a few
    dozen (:func:`evaluation_order`), so the search judges as few passing indices as it can:
    from ``start`` (just above the highest threshold found so far) it steps down one index at a
    time, and the first pass is the threshold: one pass and ``start - threshold`` cheap fails.
    When ``start`` itself passes, an exponential search upwards and a bisection find the
    threshold above it."""
    start = min(max(start, 0), size - 1)
    if not passes(start):
        index = start - 1
        while index >= 0 and not passes(index):
            index -= 1
        return index
    lo, hi, step = start, size, 1  # passes at lo; find a failing index above it
    while lo + step < size:
        if not passes(lo + step):
            hi = lo + step
            break
        lo, step = lo + step, 2 * step
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if passes(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _start(found: list[int], size: int) -> int:
    """Where the next chip's search starts: one above the highest threshold so far (the
    grid's end for the first chip)."""
    return min(max(found) + 1, size - 1) if found else size - 1


def _prepare(config: ToleranceConfig, out_dir: Path) -> tuple[dict[str, Any], list[dict]]:
    """The folder's record and finished rows; the same config is required to resume (the
    number of chips may grow)."""
    record: dict[str, Any] = {"schema": SCHEMA, "config": to_dict(config)}
    stored = stored_record(out_dir, SCHEMA, "sign-off")
    if stored is not None:
        old, new = stored.get("config"), to_dict(config)
        if not isinstance(old, dict) or not isinstance(old.get("sweep"), dict):
            raise CimsimError(f"{out_dir / CONFIG_FILE} is damaged: no sign-off config")
        grow = {**new, "sweep": {**new["sweep"], "instances": old["sweep"].get("instances")}}
        if grow != with_defaults(old, to_dict(ToleranceConfig(sweep=SweepConfig()))):
            raise CimsimError(
                f"{out_dir} holds a sign-off with another config; choose another --out"
            )
        record = {**stored, "config": new}
    return record, read_points(out_dir / POINTS_FILE, repair=True, required=("card",), unique=POINT)


@dataclasses.dataclass(frozen=True)
class ToleranceReport:
    rule: signoff.Rule
    yields: list[signoff.YieldPoint]
    """Per value, from the most to the least favourable."""
    certified: signoff.YieldPoint | None
    reasons: list[str]
    """Why nothing (or nothing further) is certified, with the numbers needed."""
    percentiles: list[dict[str, float]]
    summary: dict[str, Any]
    figures: list[Path]
    unit: str
    field: str

    @property
    def larger_is_better(self) -> bool:
        """Resolution fields (bits, levels): a smaller certified value is the better chip."""
        return self.field in LARGER_IS_BETTER


def write_tolerance_report(run_dir: Path, *, seconds: float | None = None) -> ToleranceReport:
    """``results.csv``, ``yield.csv``, ``summary.json`` and the yield figure, from the folder's
    files alone (``seconds``: the run's wall time, kept in the summary)."""
    import pandas as pd

    from cimsim.runs.plots import plot_yield, save_figure
    from cimsim.runs.results import points_frame

    record = read_json(run_dir / CONFIG_FILE)
    if record.get("schema") != SCHEMA:
        raise CimsimError(f"{run_dir} holds a '{record.get('schema')}' run, not a sign-off")
    config = _config_from(record, run_dir)
    rows = read_points(run_dir / POINTS_FILE, required=("card",), unique=POINT)
    digital = [r for r in rows if r.get("card") == "digital"]
    chips = [r for r in rows if r.get("card") != "digital"]
    if not digital or not chips:
        raise CimsimError(f"{run_dir / POINTS_FILE} holds no chip decision yet")
    n = int(digital[0]["n_examples"])
    s = config.signoff
    rule = signoff.Rule.of(n, s.budget, s.confidence)
    values = config.ordered_values()
    instances = sorted({int(r["instance"]) for r in chips})
    decided = {(float(r["value"]), int(r["instance"])): bool(r["passed"]) for r in chips}
    yields = []
    for index, value in enumerate(values):
        if s.search == "threshold":  # a chip's threshold: its last passing value in the order
            passes = sum(_threshold(decided, values, i) >= index for i in instances)
            total = len(instances)
        else:
            judged = [decided[(value, i)] for i in instances if (value, i) in decided]
            passes, total = sum(judged), len(judged)
        if total:
            yields.append(signoff.yield_point(value, passes, total, s.confidence))
    best = signoff.certified(yields, s.target_yield)
    reasons = _reasons(rule, yields, best, s, len(instances))
    percentiles = []
    for value in values:
        # Only where every chip was judged on every example: under a threshold search the chips
        # probed at a value are those near their threshold, not a sample of the population.
        complete = [r for r in chips if float(r["value"]) == value and "accuracy" in r]
        if len(complete) == len(instances) and s.search == "grid":
            estimate, low, high = signoff.percentile_chip(
                [float(r["accuracy"]) for r in complete], s.percentile, s.confidence
            )
            percentiles.append(
                {"value": value, "chips": len(complete), "accuracy": estimate, "low": low,
                 "high": high}
            )  # fmt: skip
    used = sum(int(r["n_used"]) for r in chips) + n
    summary = {
        "rule": rule.text(),
        "budget_points": 100 * s.budget,
        "target_yield": s.target_yield,
        "confidence": s.confidence,
        "search": s.search,
        "chips_mode": s.chips,
        "early_stop": s.early_stop,
        "percentile": s.percentile,
        "chips": len(instances),
        "test_examples": n,
        "resolution_points": 100 * signoff.resolution(n, s.confidence),
        "chips_needed_at_all_pass": signoff.chips_needed(s.target_yield, s.confidence),
        "certified_value": best.value if best else None,
        "certified_yield_lower_bound": best.lower_bound if best else None,
        "not_certified_because": reasons,
        "field": config.sweep.vary,
        "unit": record["axis"]["unit"],
        "decisions": len(chips),
        "example_evaluations": used,
        "full_grid_example_evaluations": len(values) * len(instances) * n + n,
        "digital_accuracy": float(digital[0]["accuracy"]),
    }
    if seconds is not None:
        summary["last_session_seconds"] = round(seconds, 1)
    elif (run_dir / SUMMARY_JSON).exists():
        kept = read_json(run_dir / SUMMARY_JSON).get("last_session_seconds")
        summary["last_session_seconds"] = kept
    table = pd.DataFrame(
        [
            {**dataclasses.asdict(y), "yield": y.estimate, "certified": best is not None
             and values.index(y.value) <= values.index(best.value)}
            for y in yields
        ]
    )  # fmt: skip
    write_atomic(run_dir / RESULTS_CSV, points_frame(rows).to_csv(index=False))
    write_atomic(run_dir / YIELD_CSV, table.to_csv(index=False))
    write_atomic(run_dir / SUMMARY_JSON, json.dumps(summary, indent=2) + "\n")
    unit = str(record["axis"]["unit"])
    figure = plot_yield(
        yields,
        field=config.sweep.vary,
        unit=unit,
        target=s.target_yield,
        certified=best.value if best else None,
        confidence=s.confidence,
        title=f"{record['model'].get('name', '')} on {record['task'].get('name', '')}: chips "
        f"within {100 * s.budget:g} pt of digital ({record['card'].get('name', '')} card)",
    )
    figures = save_figure(figure, run_dir / FIGURE_STEM)
    return ToleranceReport(
        rule, yields, best, reasons, percentiles, summary, figures, unit, config.sweep.vary
    )


def _threshold(decided: dict[tuple[float, int], bool], values: list[float], instance: int) -> int:
    """Chip ``instance``'s last passing index under the threshold search's assumption
    (monotone): the largest index it passed below the smallest index it failed (-1: it failed
    the first)."""
    fails = [i for i, v in enumerate(values) if decided.get((v, instance)) is False]
    first_fail = min(fails) if fails else len(values)
    passes = [i for i, v in enumerate(values[:first_fail]) if decided.get((v, instance))]
    return max(passes) if passes else -1


def _reasons(
    rule: signoff.Rule,
    yields: list[signoff.YieldPoint],
    best: signoff.YieldPoint | None,
    s: SignoffConfig,
    chips: int,
) -> list[str]:
    """Plain statements of what keeps the certified tolerance where it is."""
    reasons = []
    if rule.max_broken < 0:
        needed = math.ceil(math.log(1 - s.confidence) / math.log(1 - s.budget))
        reasons.append(
            f"{rule.n} test examples cannot certify a drop of {100 * s.budget:g} points at "
            f"{s.confidence:.0%} confidence (resolution "
            f"{100 * signoff.resolution(rule.n, s.confidence):.3g} points): at least {needed} "
            "are needed"
        )
    needed_chips = signoff.chips_needed(s.target_yield, s.confidence)
    if chips < needed_chips:
        reasons.append(
            f"{chips} chips cannot certify {s.target_yield:.0%} yield at {s.confidence:.0%} "
            f"confidence: at least {needed_chips} are needed"
        )
    elif yields and (best is None or best is not yields[-1]):
        miss = yields[0] if best is None else yields[yields.index(best) + 1]
        need = signoff.passes_needed(miss.chips, s.target_yield, s.confidence)
        reasons.append(
            f"at {miss.value:.4g} {miss.passes} of {miss.chips} chips pass; {need} are needed"
        )
    return reasons


def _config_from(record: dict[str, Any], run_dir: Path) -> ToleranceConfig:
    from cimsim.core.config import from_dict

    try:
        return from_dict(ToleranceConfig, record["config"])
    except (KeyError, TypeError, ValueError, CimsimError) as err:
        raise CimsimError(f"{run_dir / CONFIG_FILE} is damaged: {err}") from None
