"""The owner's watermark kit: a task adapter, 2n watermark branches, the key and the checks.

``embed_kit`` trains (or takes from the cache) the task's LoRA branch as ``cimsim sweep`` does,
trains the watermark branches beside it (:mod:`cimsim.adapters.watermark`), adds the
obfuscation, checks the result digitally, and writes the kit::

    watermark.json          # schema, config, key (phrases, targets), verification queries,
                            # training log, digital checks, environment
    task/                   # the task's peft adapter
    branches/wmII_B/        # one peft adapter per (position II, bit value B)
    obfuscation/obII/       # position II's compensation branch -R_II (peft adapter, rank 1)
    obfuscation.safetensors # R = sum_i R_i per layer, added to the base weights

The kit is the owner's secret (it holds the key). ``assemble`` writes what ships to one chip: a
single peft adapter (the task branch and the signature's branches, with their compensations
when obfuscated, concatenated in rank) and, when obfuscated, the base-weight delta ``R``.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from cimsim.adapters.lora import (
    LoraConfig,
    delete_adapter,
    fused,
    load_adapter,
    lora_layers,
    save_adapter,
    set_adapters,
)
from cimsim.adapters.train import TrainConfig, trained_adapter
from cimsim.adapters.watermark import (
    TASK_BRANCH,
    Key,
    WatermarkConfig,
    add_obfuscation,
    add_watermark_branches,
    answers_of,
    branch_name,
    branch_shape,
    false_positive_bound,
    fold,
    install,
    make_key,
    obfuscation_name,
    read_signature,
    signature_text,
    train_watermarks,
    verification_queries,
)
from cimsim.core.config import from_dict, to_dict
from cimsim.core.errors import CimsimError
from cimsim.core.io import read_json, save_tensors, write_atomic
from cimsim.core.progress import Progress, Silent
from cimsim.eval.config import EvalConfig
from cimsim.eval.evaluate import evaluate
from cimsim.runs.results import environment

SCHEMA = "cimsim.watermark-kit/1"
INDEX = "watermark.json"
DELTA = "obfuscation.safetensors"
SHIPPED_DELTA = "base_delta.safetensors"
SHIPPED = "shipped"  # the assembled branch, while it is written


@dataclasses.dataclass(frozen=True)
class KitConfig:
    """Everything that determines a kit."""

    model: str = "minilm"
    """Registered model name, local HF directory or hub id."""
    task: str = "bbc-news"
    """Registered task or a local file (the watermark's carrier texts come from it too)."""
    method: str = "lora"
    """How the task branch is trained (cimsim.adapters.objectives)."""
    lora: LoraConfig = LoraConfig()
    """The task branch's shape; the watermark branches sit on the same layers."""
    train: TrainConfig = TrainConfig()
    """How the task branch is trained."""
    eval: EvalConfig = EvalConfig()
    """How task accuracy is measured (the digital checks, the sweep)."""
    watermark: WatermarkConfig = WatermarkConfig()
    """How the watermark branches are keyed, trained and read."""
    checks: int = 6
    """Signatures checked digitally: all zeros, all ones, then random ones."""
    compute_device: str = "cpu"
    """torch device."""

    def check_signatures(self) -> list[tuple[int, ...]]:
        """The signatures the digital check verifies (seeded by the key)."""
        bits = self.watermark.bits
        rng = random.Random(f"checks/{self.watermark.seed}")
        signatures = [(0,) * bits, (1,) * bits]
        while len(signatures) < self.checks:
            candidate = tuple(rng.randrange(2) for _ in range(bits))
            if candidate not in signatures:
                signatures.append(candidate)
        return signatures[: self.checks]


@dataclasses.dataclass
class Kit:
    """A kit loaded onto its model: every branch present, none of the signature's chosen."""

    path: Path
    config: KitConfig
    key: Key
    queries: list[list[str]]
    loaded: Any
    scorer: Any
    task: Any
    test: Any
    delta: dict[str, torch.Tensor]
    """R per layer (empty without obfuscation)."""
    record: dict[str, Any]
    folded: bool = False
    """Whether the base weights hold R now."""

    @property
    def obfuscation(self) -> bool:
        return bool(self.delta)

    def answer(self) -> Any:
        return answers_of(self.scorer, self.task, self.config.eval.batch_size)

    def accuracy(self) -> Any:
        with fused(self.loaded.model):
            return evaluate(self.scorer, self.task, self.test, self.config.eval.batch_size)

    def read(self) -> Any:
        threshold = self.config.watermark.threshold
        with fused(self.loaded.model):
            return read_signature(self.answer(), self.key, self.queries, threshold)

    def show(self, signature: tuple[int, ...] | None, obfuscated: bool) -> None:
        """The model as one chip ships: the task branch alone (``signature`` None: unmarked) or
        with ``signature``'s branches; with ``obfuscated`` the base carries R and the branches
        their compensations. Call it before deploying a chip (the base weights change)."""
        if obfuscated != self.folded:
            fold(self.loaded.model, self.delta, 1.0 if obfuscated else -1.0)
            self.folded = obfuscated
        if signature is None:
            set_adapters(self.loaded.model, [TASK_BRANCH])
        else:
            install(self.loaded.model, signature, obfuscated=obfuscated)


def _build(config: KitConfig, cache_dir: Path, progress: Progress) -> tuple[Any, ...]:
    """Task, test subset, model with the task branch, scorer, adapter record."""
    from cimsim.eval.models import load_model
    from cimsim.eval.scoring import make_scorer
    from cimsim.eval.tasks import load_task

    task = load_task(config.task, cache_dir=cache_dir)
    test = task.test.subset(config.eval.test_size, seed=config.watermark.seed)
    progress.log(f"loading model {config.model}")
    loaded = load_model(config.model, device=config.compute_device)
    scorer = make_scorer(loaded, config.eval.max_length, prompt_tokens=config.eval.prompt_tokens)
    return task, test, loaded, scorer


def embed_kit(
    config: KitConfig, out_dir: Path, *, cache_dir: Path, progress: Progress | None = None
) -> Path:
    """Train and check a kit into ``out_dir`` (a new folder); returns ``out_dir``."""
    progress = progress or Silent()
    if out_dir.exists() and any(out_dir.iterdir()):
        raise CimsimError(f"{out_dir} is not empty; a kit is written into a new folder")
    task, test, loaded, scorer = _build(config, cache_dir, progress)
    lora = config.lora.resolve(loaded.lora_targets)
    card = config.train.load_noise_card() if config.method != "lora" else None
    adapter_dir, adapter_record = trained_adapter(
        loaded, scorer, task, lora, config.train, cache_dir, progress, config.method, card=card
    )
    key = make_key(config.watermark, task.n_labels)
    add_watermark_branches(loaded.model, lora, config.watermark)
    progress.stage("training watermark branches", config.watermark.steps)
    started = time.perf_counter()
    with fused(loaded.model):
        log = train_watermarks(scorer, loaded.model, task, key, config.watermark, progress.advance)
    seconds = round(time.perf_counter() - started, 2)
    obfuscate = config.watermark.obfuscation_scale > 0
    delta = add_obfuscation(loaded.model, config.watermark) if obfuscate else {}
    kit = Kit(out_dir, config, key, verification_queries(key, task, config.watermark), loaded,
              scorer, task, test, delta, {})  # fmt: skip
    progress.log("checking the signatures digitally")
    checks = digital_checks(kit)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(adapter_dir, out_dir / "task")
    base = loaded.path
    shape = branch_shape(lora, config.watermark)
    for position in range(config.watermark.bits):
        for value in (0, 1):
            name = branch_name(position, value)
            save_adapter(loaded.model, out_dir / "branches" / name, shape,
                         base_model_name_or_path=base, adapter_name=name)  # fmt: skip
        if delta:
            name = obfuscation_name(position)
            ob_shape = dataclasses.replace(shape, r=1, lora_alpha=1.0)
            save_adapter(loaded.model, out_dir / "obfuscation" / name, ob_shape,
                         base_model_name_or_path=base, adapter_name=name)  # fmt: skip
    if delta:
        save_tensors({k: v.contiguous() for k, v in delta.items()}, out_dir / DELTA)
    record = {
        "schema": SCHEMA,
        "config": to_dict(config),
        "key": {"phrases": list(key.phrases), "targets": [list(t) for t in key.targets]},
        "queries": kit.queries,
        "model": {"name": loaded.name, "fingerprint": loaded.fingerprint, "path": loaded.path},
        "task": {"name": task.name, "fingerprint": task.fingerprint,
                 "label_names": list(task.label_names), "n_eval": len(test)},
        "task_adapter": {k: v for k, v in (adapter_record or {}).items() if k != "log"},
        "training": {"seconds": seconds, "log": log},
        "checks": checks,
        "environment": environment(),
    }  # fmt: skip
    write_atomic(out_dir / INDEX, json.dumps(record, indent=2) + "\n")
    return out_dir


def digital_checks(kit: Kit) -> dict[str, Any]:
    """The digital facts a kit must meet: every check signature verifies and no other does,
    the unmarked model verifies none, the task's accuracy with each signature (and obfuscated),
    and the accuracy when one position's branch is removed."""
    signatures = kit.config.check_signatures()
    kit.show(None, obfuscated=False)
    unmarked = kit.accuracy()
    unmarked_reading = kit.read()
    rows = []
    for signature in signatures:
        row: dict[str, Any] = {"signature": signature_text(signature)}
        for obfuscated in (False, True) if kit.obfuscation else (False,):
            kit.show(signature, obfuscated)
            accuracy, reading = kit.accuracy(), kit.read()
            tag = "obfuscated" if obfuscated else "plain"
            row[tag] = {
                "accuracy": accuracy.accuracy,
                "read": signature_text(reading.bits),
                "verified": reading.verifies(signature),
                "verifies_others": sum(reading.verifies(o) for o in signatures if o != signature),
            }
        rows.append(row)
    removal = removal_check(kit, signatures[-1])
    kit.show(None, obfuscated=False)
    n_labels = kit.task.n_labels
    return {
        "unmarked": {
            "accuracy": unmarked.accuracy,
            "read": signature_text(unmarked_reading.bits),
            "verifies": sum(unmarked_reading.verifies(s) for s in signatures),
        },
        "signatures": rows,
        "removal": removal,
        "false_positive_bound": false_positive_bound(n_labels, kit.key.bits),
        "n_eval": len(kit.test),
    }


def removal_check(kit: Kit, signature: tuple[int, ...]) -> dict[str, Any]:
    """Accuracy of ``signature``'s model with one position's branch taken out, per position
    (plain; and obfuscated, where its compensation goes with it and R_i stays in the base)."""
    out: dict[str, Any] = {}
    for obfuscated in (False, True) if kit.obfuscation else (False,):
        kit.show(signature, obfuscated)
        accuracies = []
        for gone in range(len(signature)):
            kept = [i for i in range(len(signature)) if i != gone]
            names = [TASK_BRANCH] + [branch_name(i, signature[i]) for i in kept]
            names += [obfuscation_name(i) for i in kept] if obfuscated else []
            set_adapters(kit.loaded.model, names)
            accuracies.append(kit.accuracy().accuracy)
        out["obfuscated" if obfuscated else "plain"] = accuracies
    return out


def read_kit(path: Path) -> tuple[dict[str, Any], KitConfig, Key]:
    """A kit's record, config and key; a user error if ``path`` is not a kit."""
    if not (path / INDEX).is_file():
        raise CimsimError(f"{path} is not a watermark kit (no {INDEX})")
    record = read_json(path / INDEX)
    if record.get("schema") != SCHEMA:
        raise CimsimError(f"{path / INDEX} has schema {record.get('schema')!r}, not {SCHEMA}")
    targets = tuple((int(t[0]), int(t[1])) for t in record["key"]["targets"])
    key = Key(tuple(record["key"]["phrases"]), targets)
    return record, from_dict(KitConfig, record["config"]), key


def load_kit(
    path: Path, *, cache_dir: Path, device: str = "cpu", progress: Progress | None = None
) -> Kit:
    """A kit folder onto a fresh copy of its model; a user error if it is not a kit."""
    progress = progress or Silent()
    record, config, key = read_kit(path)
    config = dataclasses.replace(config, compute_device=device)
    task, test, loaded, scorer = _build(config, cache_dir, progress)
    if task.fingerprint != record["task"]["fingerprint"]:
        raise CimsimError(f"{path}: the task's data differ from those the kit was made with")
    load_adapter(loaded.model, path / "task", TASK_BRANCH)
    for position in range(config.watermark.bits):
        for value in (0, 1):
            name = branch_name(position, value)
            load_adapter(loaded.model, path / "branches" / name, name)
    delta: dict[str, torch.Tensor] = {}
    if (path / DELTA).is_file():
        from safetensors.torch import load_file

        delta = load_file(str(path / DELTA), device=str(scorer.device))
        for position in range(config.watermark.bits):
            name = obfuscation_name(position)
            load_adapter(loaded.model, path / "obfuscation" / name, name)
    for param in loaded.model.parameters():
        param.requires_grad_(False)
    return Kit(path, config, key, record["queries"], loaded, scorer, task, test, delta, record)


@torch.no_grad()
def assemble(kit: Kit, signature: tuple[int, ...], out_dir: Path, obfuscated: bool) -> Path:
    """Write chip ``signature``'s model into ``out_dir``: one peft adapter (the active branches
    concatenated in rank, each branch's scale folded into its B, alpha = rank: scale 1) and, when
    ``obfuscated``, the base-weight delta. Nothing is trained."""
    kit.show(signature, obfuscated)
    merged = {}
    for name, layer in lora_layers(kit.loaded.model).items():
        factors = [(*layer.factors(k), layer.scaling[k]) for k in layer.active_adapters]
        a = torch.cat([a for a, _, _ in factors])  # (rank, d_in)
        b = torch.cat([b * scale for _, b, scale in factors], dim=1)  # (d_out, rank)
        merged[name] = (a, b)
    rank = next(iter(merged.values()))[0].shape[0]
    lora = kit.config.lora.resolve(kit.loaded.lora_targets)
    shape = dataclasses.replace(lora, r=rank, lora_alpha=float(rank))
    for name, layer in lora_layers(kit.loaded.model).items():
        layer.add_adapter(SHIPPED, shape)
        a, b = layer.factors(SHIPPED)
        a.copy_(merged[name][0])
        b.copy_(merged[name][1])
    try:
        save_adapter(kit.loaded.model, out_dir, shape, base_model_name_or_path=kit.loaded.path,
                     adapter_name=SHIPPED)  # fmt: skip
    finally:
        delete_adapter(kit.loaded.model, SHIPPED)
        kit.show(None, obfuscated=False)
    if obfuscated:
        delta = {k: v.cpu().contiguous() for k, v in kit.delta.items()}
        save_tensors(delta, out_dir / SHIPPED_DELTA)
    chip = {"signature": signature_text(signature), "obfuscated": obfuscated,
            "model": kit.config.model, "kit": str(kit.path)}  # fmt: skip
    write_atomic(out_dir / "chip.json", json.dumps(chip, indent=2) + "\n")
    return out_dir
