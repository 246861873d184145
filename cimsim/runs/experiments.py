"""Declarative experiments: a TOML file that names a sweep or a method comparison, reproduced by
``cimsim run FILE``.

Format (every key optional except ``name``; the rest default to ``cimsim sweep``'s defaults, and
the keys are the command line's words)::

    name = "default-sweep"            # figures/<name>/ receives the figure and its data
    description = "..."
    [sweep]
    model = "minilm"
    task = "bbc-news"
    method = "lora"
    methods = ["lora", "halora"]      # instead of method: a comparison (cimsim compare) of these
    card = "channel"                  # device card: shipped name or .toml path
    noise = "0.01..0.1"               # --noise: sigma's values (default: the card's range)
    vary = "adc_bits=4..8:5"          # --vary: sweep another card field (noise: one sigma)
    seeds = 3                         # chip instances per value
    seed = 0
    engine = "cimsim"
    [sweep.lora]                      # LoraConfig fields
    [sweep.train]                     # TrainConfig fields
    [sweep.eval]                      # EvalConfig fields
    [signoff]                         # a sign-off of this deployment (cimsim tolerance)
    budget = 2                        # points; also yield, confidence, search, chips_mode,
                                      # early_stop, percentile
    [executor]                        # where chips are evaluated (not part of the results)
    kind = "ray"                      # local (default) or ray; also address, workers,
                                      # worker_cpus, worker_gpus (`cimsim run` options win)

With ``[signoff]`` the file is a sign-off (:func:`cimsim.runs.tolerance.run_tolerance`): the
sweep's values are the search grid, its ``seeds`` the chips, and ``figures/<name>/`` receives the
yield figure, ``yield.csv``, ``summary.json`` and the data. With ``methods`` the file describes a
comparison: one sweep per method on the same chips (:func:`cimsim.runs.compare.run_compare`), and
``figures/<name>/`` receives the comparison table (Markdown, LaTeX, CSV), its figure and each
method's data in ``<method>/``.

An invalid file is a one-line error naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from cimsim.adapters.lora import LoraConfig
from cimsim.adapters.train import TrainConfig
from cimsim.chip.cards import DEFAULT_CARD, DeviceCard, load_card
from cimsim.core.config import field_value
from cimsim.core.errors import CimsimError
from cimsim.core.io import read_toml
from cimsim.eval.config import EvalConfig
from cimsim.runs.compare import PAIRS_FILE, STEM
from cimsim.runs.sweep import METHODS, SweepConfig, parse_axis
from cimsim.runs.tolerance import SignoffConfig, ToleranceConfig

_NESTED = {"lora": LoraConfig, "train": TrainConfig, "eval": EvalConfig}
_SCALARS = {"model", "task", "method", "adapter", "card", "seed", "engine"}
_AXIS = {"noise", "vary", "seeds"}
# What figures/<name>/ receives from a sweep's results folder (and from each method's folder of a
# comparison); a comparison adds its table and figure.
SWEEP_FILES = (
    "sweep.png",
    "sweep.pdf",
    "results.csv",
    "summary.csv",
    "config.json",
    "points.jsonl",
)
TRAINING_FILES = ("training_log.csv", "loss.png", "loss.pdf")  # where an adapter was trained
SIGNOFF_FILES = (
    "yield.png", "yield.pdf", "yield.csv", "summary.json", "results.csv", "config.json",
    "points.jsonl",
)  # fmt: skip
COMPARISON_FILES = (
    *(f"{STEM}.{ext}" for ext in ("md", "tex", "csv", "png", "pdf")),
    PAIRS_FILE,
)


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    sweep: SweepConfig
    source: Path
    card: DeviceCard
    """The device card ``sweep.card`` names, as loaded (its default range reads the axis)."""
    methods: tuple[str, ...] = ()
    """A comparison of these methods (``sweep.method`` is the first); empty: one sweep."""
    signoff: SignoffConfig | None = None
    """With a ``[signoff]`` table: a sign-off (``cimsim tolerance``) of the sweep's deployment,
    its values the search grid and its ``seeds`` the chips."""
    executor: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The ``[executor]`` table (:func:`executor_table`)."""

    def tolerance(self) -> ToleranceConfig:
        assert self.signoff is not None
        return ToleranceConfig(sweep=self.sweep, signoff=self.signoff)


def load_experiment(path: Path) -> Experiment:
    """Parse and validate an experiment file."""
    raw = read_toml(path, "experiment file")
    name = experiment_name(path, raw)
    unknown = set(raw) - {"name", "description", "sweep", "signoff", "executor"}
    if unknown:
        raise CimsimError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    table = raw.get("sweep", {})
    if not isinstance(table, dict):
        raise CimsimError(f"{path}: [sweep] must be a table")
    methods = _methods(path, table)
    sweep, card = _sweep(path, table, methods[0] if methods else None)
    for method in methods[1:]:  # every method's config is valid before any work starts
        try:
            dataclasses.replace(sweep, method=method)
        except (TypeError, ValueError) as err:
            raise CimsimError(f"{path}: invalid [sweep]: {err}") from None
    signoff = _signoff(path, raw["signoff"]) if "signoff" in raw else None
    if signoff is not None and methods:
        raise CimsimError(f"{path}: [signoff] judges one method; sweep.methods lists several")
    description = str(raw.get("description", ""))
    executor = executor_table(path, raw)
    return Experiment(name, description, sweep, path, card, methods, signoff, executor)


_SIGNOFF_KEYS = {
    "budget": "budget", "yield": "target_yield", "confidence": "confidence", "search": "search",
    "chips_mode": "chips", "early_stop": "early_stop", "percentile": "percentile",
}  # fmt: skip
"""``[signoff]`` keys (the command line's words) -> SignoffConfig fields; budget in points."""


def _signoff(path: Path, table: Any) -> SignoffConfig:
    if not isinstance(table, dict):
        raise CimsimError(f"{path}: [signoff] must be a table")
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in _SIGNOFF_KEYS:
            raise CimsimError(f"{path}: unknown key signoff.{key}")
        field = _SIGNOFF_KEYS[key]
        kwargs[field] = scalar_field(path, "signoff", SignoffConfig, field, value)
    if "budget" in kwargs:
        kwargs["budget"] /= 100
    try:
        return SignoffConfig(**kwargs)
    except (TypeError, ValueError, CimsimError) as err:
        raise CimsimError(f"{path}: invalid [signoff]: {err}") from None


def _methods(path: Path, table: dict[str, Any]) -> tuple[str, ...]:
    """``sweep.methods``: a list of distinct known methods, not combined with method/adapter."""
    if "methods" not in table:
        return ()
    value = table["methods"]
    if not isinstance(value, list) or not value or not all(isinstance(m, str) for m in value):
        raise CimsimError(f"{path}: sweep.methods must be a non-empty list of method names")
    for key in ("method", "adapter"):
        if key in table:
            raise CimsimError(f"{path}: sweep.methods and sweep.{key} exclude each other")
    unknown = [m for m in value if m not in METHODS]
    if unknown:
        raise CimsimError(
            f"{path}: unknown method '{unknown[0]}' in sweep.methods; "
            f"choose from: {', '.join(METHODS)}"
        )
    if len(set(value)) != len(value):
        raise CimsimError(f"{path}: sweep.methods lists a method twice")
    return tuple(value)


def _sweep(path: Path, table: dict[str, Any], method: str | None) -> tuple[SweepConfig, DeviceCard]:
    kwargs: dict[str, Any] = {} if method is None else {"method": method}
    for key, value in table.items():
        if key in _NESTED:
            kwargs[key] = nested_config(path, key, _NESTED[key], value)
        elif key in _SCALARS:
            kwargs[key] = scalar_field(path, "sweep", SweepConfig, key, value)
        elif key not in _AXIS and key != "methods":
            raise CimsimError(f"{path}: unknown key sweep.{key}")
    for key in ("noise", "vary"):
        if key in table and not isinstance(table[key], str):
            raise CimsimError(f"{path}: sweep.{key} must be a string like '0.01..0.1'")
    card = load_card(str(kwargs.get("card", DEFAULT_CARD)))
    field, values, sigma = parse_axis(card, table.get("noise"), table.get("vary"))
    kwargs.update(vary=field, values=values, sigma=sigma)
    if "seeds" in table:
        kwargs["instances"] = scalar_field(path, "sweep", SweepConfig, "instances", table["seeds"])
    try:
        return SweepConfig(**kwargs), card
    except (TypeError, ValueError) as err:
        raise CimsimError(f"{path}: invalid [sweep]: {err}") from None


EXECUTOR_KEYS = {
    "kind": str, "address": str, "workers": int, "worker_cpus": float, "worker_gpus": float,
}  # fmt: skip


def executor_table(path: Path, raw: dict[str, Any]) -> dict[str, Any]:
    """The file's ``[executor]`` table, checked: where its chips are evaluated (``kind``: local
    or ray, with the Ray options of the command line). Empty: local."""
    table = raw.get("executor", {})
    if not isinstance(table, dict):
        raise CimsimError(f"{path}: [executor] must be a table")
    checked = {}
    for key, value in table.items():
        expected = EXECUTOR_KEYS.get(key)
        if expected is None:
            raise CimsimError(f"{path}: unknown key executor.{key}")
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not expected:
            raise CimsimError(f"{path}: executor.{key} must be {expected.__name__}, got {value!r}")
        checked[key] = value
    if checked.get("kind", "local") not in ("local", "ray"):
        raise CimsimError(f"{path}: executor.kind is local or ray, got {checked['kind']!r}")
    return checked


def experiment_name(path: Path, raw: dict[str, Any]) -> str:
    """The file's ``name``: the folder under figures/ that receives its results."""
    name = raw.get("name")
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        raise CimsimError(f"{path}: 'name' must be a folder name (no '/', not '.' or '..')")
    return name


def scalar_field(path: Path, section: str, cls: type, key: str, value: Any) -> Any:
    """A scalar of table ``[section]`` checked against field ``key`` of ``cls``."""
    try:
        return field_value(cls, key, value)
    except TypeError as err:
        shown = "seeds" if key == "instances" else key
        raise CimsimError(f"{path}: {section}.{shown} {err}") from None


def nested_config(path: Path, key: str, cls: type, value: Any, section: str = "sweep") -> Any:
    """The ``cls`` config of table ``[section.key]``; a one-line error naming a bad field."""
    if not isinstance(value, dict):
        raise CimsimError(f"{path}: [{section}.{key}] must be a table")
    names = {f.name for f in dataclasses.fields(cls)}
    for field in value:
        if field not in names:
            raise CimsimError(f"{path}: unknown key {section}.{key}.{field}")
    if "target_modules" in value:
        value = {**value, "target_modules": tuple(value["target_modules"])}
    try:
        return cls(**value)
    except (TypeError, ValueError) as err:
        raise CimsimError(f"{path}: invalid [{section}.{key}]: {err}") from None


def publish(experiment: Experiment, out_dir: Path, figures_dir: Path) -> Path:
    """Copy the finished results in ``out_dir`` and the experiment file into
    ``figures_dir / name``; returns that folder."""
    target = figures_dir / experiment.name
    target.mkdir(parents=True, exist_ok=True)
    if experiment.signoff is not None:
        for name in SIGNOFF_FILES:
            shutil.copy(out_dir / name, target / name)
    elif experiment.methods:
        for name in COMPARISON_FILES:
            shutil.copy(out_dir / name, target / name)
        for method in experiment.methods:
            (target / method).mkdir(exist_ok=True)
            _copy_sweep(out_dir / method, target / method)
    else:
        _copy_sweep(out_dir, target)
    shutil.copy(experiment.source, target / "experiment.toml")
    return target


def _copy_sweep(run_dir: Path, target: Path) -> None:
    """A sweep's files, and its adapter's training log and figure where it has them."""
    for name in SWEEP_FILES:
        shutil.copy(run_dir / name, target / name)
    for name in TRAINING_FILES:
        if (run_dir / name).exists():
            shutil.copy(run_dir / name, target / name)
