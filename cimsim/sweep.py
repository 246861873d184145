"""The noise sweep: a (noise level x chip instance) grid -> one tidy row per point, as it goes.

``run_sweep(config, out_dir)`` loads the model and task, gets the adapter (trained on the ideal
base and cached, loaded from a path, or none), evaluates the digital reference once, then programs
each chip instance at each noise level and evaluates it. Each finished point is appended to
``points.jsonl`` and fsynced before the next starts, so re-running on the same folder resumes
where it stopped (finished points are never recomputed).

Chip seeds: instance ``i`` at noise level ``sigma`` is programmed with
``chip_seed = int(sha256(f"{seed}/{noise_model}/{sigma!r}/{i}"))[:60 bits]``: one independent
generator per (noise level, chip instance), the same for every method and adapter (paired
comparisons), and unchanged when the grid grows. Every row records its chip seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

from cimsim.config import config_hash, to_dict
from cimsim.errors import CimsimError
from cimsim.lora import LoraConfig
from cimsim.noise_models import DEFAULT_NOISE_MODEL, NOISE_MODELS, get_noise_model
from cimsim.progress import Progress, Silent
from cimsim.ranges import parse_range
from cimsim.results import (
    CONFIG_FILE,
    POINTS_FILE,
    RESULTS_CSV,
    SCHEMA_VERSION,
    append_point,
    environment,
    points_frame,
    read_json,
    read_points,
    write_atomic,
)
from cimsim.train import TrainConfig

METHODS = ("lora", "none")
DEFAULT_NOISE = "0.01..0.1"
# Fields that may change between a run and its resumption: the grid may grow.
_GRID_FIELDS = ("sigmas", "instances")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """How accuracy is measured."""

    test_size: int | None = 300
    """Stratified subsample of the task's test split (None: all of it)."""
    max_length: int = 64
    """Input tokens per text (longer texts are truncated)."""
    batch_size: int = 64
    """Texts per forward pass."""

    def __post_init__(self) -> None:
        if self.test_size is not None and self.test_size < 1:
            raise ValueError("test_size must be >= 1")
        if self.max_length < 1 or self.batch_size < 1:
            raise ValueError("max_length and batch_size must be >= 1")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Everything that determines a sweep's numbers."""

    model: str = "minilm"
    """Registered model name, local HF directory or hub id."""
    task: str = "bbc-news"
    """Registered task name or a local .jsonl/.csv file with text,label."""
    method: str = "lora"
    """'lora': train LoRA on the ideal base (cached); 'none': the base model alone."""
    adapter: str | None = None
    """A peft LoRA adapter directory to evaluate instead of training one."""
    noise_model: str = DEFAULT_NOISE_MODEL
    """Name of the noise model; sigma's meaning and unit are the model's."""
    sigmas: tuple[float, ...] = tuple(parse_range(DEFAULT_NOISE))
    """Noise levels to evaluate."""
    instances: int = 3
    """Chip instances (programming events) per noise level."""
    seed: int = 0
    """Root of the chip seeds and of the test subsample."""
    lora: LoraConfig = LoraConfig()
    """Shape of the LoRA branches."""
    train: TrainConfig = TrainConfig()
    """How the adapter is trained (method 'lora')."""
    eval: EvalConfig = EvalConfig()
    """How accuracy is measured."""
    device: str = "cpu"
    """torch device: cpu, cuda, cuda:1, ..."""

    def __post_init__(self) -> None:
        if self.noise_model not in NOISE_MODELS:
            raise CimsimError(
                f"unknown noise model '{self.noise_model}'; "
                f"choose one of: {', '.join(NOISE_MODELS)}"
            )
        if self.method not in METHODS:
            raise CimsimError(
                f"unknown method '{self.method}'; choose one of: {', '.join(METHODS)}"
            )
        if self.adapter is not None and self.method != "lora":
            raise CimsimError(
                "--adapter gives a LoRA adapter; it cannot be combined with --method none"
            )
        if not self.sigmas:
            raise CimsimError("the sweep needs at least one noise level")
        if self.instances < 1:
            raise CimsimError(f"--seeds must be >= 1, got {self.instances}")

    def default_out_dir(self, root: Path = Path("runs")) -> Path:
        """``runs/<model>-<task>-<noise model>-<hash of the config>``."""
        parts = [Path(self.model).name, Path(self.task).stem, self.method, self.noise_model]
        slug = "-".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", p) for p in parts)
        return root / f"{slug}-{config_hash(self)}"


def chip_seed(seed: int, noise_model: str, sigma: float, instance: int) -> int:
    """The seed of chip ``instance`` at noise level ``sigma`` (see the module docstring)."""
    digest = hashlib.sha256(f"{seed}/{noise_model}/{sigma!r}/{instance}".encode()).hexdigest()
    return int(digest[:15], 16)


def _check_resumable(stored: dict[str, Any], config: SweepConfig, out_dir: Path) -> SweepConfig:
    """The stored run must be the same sweep up to its grid; return the merged grid's config."""
    current = to_dict(config)
    for key, value in current.items():
        if key not in _GRID_FIELDS and stored.get(key) != value:
            raise CimsimError(
                f"{out_dir} holds a different sweep ({key}: {stored.get(key)!r} there, "
                f"{value!r} now); choose another --out"
            )
    sigmas = tuple(sorted(set(stored.get("sigmas", [])) | set(config.sigmas)))
    instances = max(int(stored.get("instances", 0)), config.instances)
    return dataclasses.replace(config, sigmas=sigmas, instances=instances)


def _prepare_run_dir(config: SweepConfig, out_dir: Path) -> tuple[dict[str, Any], list[dict]]:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CimsimError(f"cannot use {out_dir} as the results folder: {err.strerror}") from None
    config_file = out_dir / CONFIG_FILE
    record: dict[str, Any] = {}
    if config_file.exists():
        record = read_json(config_file)
        if record.get("schema") != SCHEMA_VERSION:
            raise CimsimError(
                f"{config_file} has schema {record.get('schema')!r}, not {SCHEMA_VERSION}"
            )
        stored = record.get("config")
        if not isinstance(stored, dict):
            raise CimsimError(f"{config_file} is damaged: its 'config' is not an object")
        merged = _check_resumable(stored, config, out_dir)
        record["config"] = to_dict(merged)
    elif (out_dir / POINTS_FILE).exists():
        raise CimsimError(f"{out_dir} has {POINTS_FILE} but no {CONFIG_FILE}; choose another --out")
    return record, read_points(out_dir / POINTS_FILE, repair=True)


def run_sweep(
    config: SweepConfig,
    out_dir: Path,
    *,
    cache_dir: Path,
    progress: Progress | None = None,
) -> Path:
    """Run (or resume) the sweep into ``out_dir``; returns ``out_dir``."""
    from cimsim.deploy import attach_tiles, deploy, undeploy
    from cimsim.evaluate import evaluate
    from cimsim.lora import load_adapter
    from cimsim.models import load_model
    from cimsim.scoring import make_scorer
    from cimsim.tasks import load_task
    from cimsim.train import trained_adapter

    progress = progress or Silent()
    record, rows = _prepare_run_dir(config, out_dir)
    done = {(r["noise_model"], r["sigma"], r["instance"]) for r in rows}

    task = load_task(config.task, cache_dir=cache_dir)
    test = task.test.subset(config.eval.test_size, seed=config.seed)
    if rows:
        progress.log(f"resuming {out_dir}: {len(rows)} finished points are kept")
    progress.log(f"loading model {config.model}")
    loaded = load_model(config.model, device=config.device)
    scorer = make_scorer(loaded, config.eval.max_length)
    adapter_record: dict[str, Any] | None = None
    if config.adapter is not None:
        load_adapter(loaded.model, Path(config.adapter))
        adapter_record = {"source": str(Path(config.adapter).resolve())}
        adapter_dir: Path | None = Path(config.adapter)
    elif config.method == "lora":
        lora = config.lora.resolve(loaded.lora_targets)
        adapter_dir, adapter_record = trained_adapter(
            loaded, scorer, task, lora, config.train, cache_dir, progress
        )
    else:
        adapter_dir = None
    if adapter_dir is not None and not (out_dir / "adapter").exists():
        shutil.copytree(adapter_dir, out_dir / "adapter")

    record.setdefault("schema", SCHEMA_VERSION)
    record.setdefault("config", to_dict(config))
    record["model"] = {
        "name": loaded.name,
        "kind": loaded.kind,
        "source": loaded.source,
        "path": loaded.path,
        "fingerprint": loaded.fingerprint,
        "params": loaded.n_params,
    }
    record["task"] = {
        "name": task.name,
        "source": task.source,
        "fingerprint": task.fingerprint,
        "label_names": list(task.label_names),
        "n_train": len(task.train),
        "n_test": len(task.test),
        "n_eval": len(test),
    }
    noise_cls = NOISE_MODELS[config.noise_model]
    record["noise"] = {
        "name": noise_cls.name,
        "sigma_unit": noise_cls.sigma_unit,
        "sigma_label": noise_cls.sigma_label,
        "formula": (noise_cls.__doc__ or "").strip(),
        "source": noise_cls.source,
        "chip_seed_rule": "sha256(f'{seed}/{noise_model}/{sigma!r}/{instance}')[:15 hex]",
    }
    record["adapter"] = adapter_record
    record.setdefault("sessions", []).append({"started": time.time(), **environment()})
    write_atomic(out_dir / CONFIG_FILE, json.dumps(record, indent=2, default=str) + "\n")

    base_row = {"model": config.model, "task": config.task, "method": config.method}
    pending = [
        (sigma, instance)
        for sigma in sorted(config.sigmas)
        for instance in range(config.instances)
        if (config.noise_model, sigma, instance) not in done
    ]
    need_digital = ("digital", 0.0, -1) not in done
    progress.stage(f"sweeping {config.noise_model} sigma", len(pending) + int(need_digital))

    def finish(row: dict[str, Any]) -> None:
        append_point(out_dir / POINTS_FILE, row)
        rows.append(row)
        write_atomic(out_dir / RESULTS_CSV, points_frame(rows).to_csv(index=False))
        progress.advance()

    if need_digital:
        started = time.perf_counter()
        result = evaluate(scorer, task, test, config.eval.batch_size)
        finish(
            {
                **base_row,
                "noise_model": "digital",
                "sigma": 0.0,
                "sigma_unit": "",
                "instance": -1,
                "chip_seed": None,
                "accuracy": result.accuracy,
                "n_correct": result.n_correct,
                "n_examples": result.n_examples,
                "eval_seconds": round(time.perf_counter() - started, 3),
            }
        )
    attach_tiles(loaded.model)
    for sigma, instance in pending:
        seed = chip_seed(config.seed, config.noise_model, sigma, instance)
        started = time.perf_counter()
        deploy(loaded.model, get_noise_model(config.noise_model, sigma), seed)
        result = evaluate(scorer, task, test, config.eval.batch_size)
        finish(
            {
                **base_row,
                "noise_model": config.noise_model,
                "sigma": sigma,
                "sigma_unit": noise_cls.sigma_unit,
                "instance": instance,
                "chip_seed": seed,
                "accuracy": result.accuracy,
                "n_correct": result.n_correct,
                "n_examples": result.n_examples,
                "eval_seconds": round(time.perf_counter() - started, 3),
            }
        )
    undeploy(loaded.model)
    write_atomic(out_dir / RESULTS_CSV, points_frame(rows).to_csv(index=False))
    return out_dir
