"""Train a LoRA adapter for a task, and cache it by everything that determines it.

Method ``lora``: plain LoRA on the ideal (digital) base, cross-entropy over the label logits of
:mod:`cimsim.scoring`. Only the LoRA branches and the encoder scorer's temperature are trained;
the base model stays frozen and in eval mode (no dropout), so a step is deterministic given the
seed. The adapter is saved in peft's format under ``<cache>/adapters/<key>/`` where ``key`` hashes
the model and task fingerprints, the LoRA shape, the training config and the scorer's input
length; a second run with the same key loads instead of training.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from cimsim.config import config_hash, to_dict
from cimsim.errors import CimsimError
from cimsim.lora import LoraConfig, add_lora, load_adapter, save_adapter
from cimsim.models import LoadedModel
from cimsim.progress import Progress, Silent
from cimsim.results import default_mode
from cimsim.scoring import EncoderScorer, Scorer
from cimsim.tasks import Task

# Bump when a change to the training loop changes the adapter it produces for the same config.
TRAINER_VERSION = 1
SIDECAR = "cimsim_training.json"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How the adapter is trained."""

    epochs: int = 2
    """Passes over the training subset."""
    train_size: int | None = 600
    """Stratified subsample of the task's train split (None: all of it)."""
    batch_size: int = 16
    """Examples per optimiser step."""
    lr: float = 1e-3
    """AdamW learning rate for the LoRA factors and the temperature."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    seed: int = 0
    """Seeds the LoRA init, the subsample and the batch order."""

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.train_size is not None and self.train_size < 1:
            raise ValueError("train_size must be >= 1")
        if not self.lr > 0:
            raise ValueError("lr must be positive")


def init_lora(model: nn.Module, lora: LoraConfig, seed: int) -> list[str]:
    """Add a fresh branch 'default' whose A init depends on ``seed`` only."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return add_lora(model, lora)
        except ValueError as err:
            raise CimsimError(str(err)) from None


def train_lora(
    scorer: Scorer, task: Task, config: TrainConfig, progress: Progress | None = None
) -> list[float]:
    """Train the scorer's trainable parameters on ``task``; returns the loss of every step."""
    progress = progress or Silent()
    split = task.train.subset(config.train_size, seed=config.seed)
    params = [p for p in scorer.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    n_batches = -(-len(split) // config.batch_size)
    progress.stage("training LoRA (ideal base)", config.epochs * n_batches)
    labels = torch.tensor(split.labels)
    losses = []
    for _ in range(config.epochs):
        order = torch.randperm(len(split), generator=generator)
        for start in range(0, len(split), config.batch_size):
            index = order[start : start + config.batch_size]
            texts = [split.texts[i] for i in index]
            logits = scorer(texts, task)  # (batch, n_labels)
            loss = nn.functional.cross_entropy(logits, labels[index].to(logits.device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
            progress.advance()
    return losses


def adapter_key(
    loaded: LoadedModel, task: Task, lora: LoraConfig, train: TrainConfig, max_length: int
) -> str:
    """Hash of everything that determines the trained adapter."""
    return config_hash(
        {
            "trainer": TRAINER_VERSION,
            "model": loaded.fingerprint,
            "task": task.fingerprint,
            "lora": to_dict(lora),
            "train": to_dict(train),
            "max_length": max_length,
        },
        length=16,
    )


def trained_adapter(
    loaded: LoadedModel,
    scorer: Scorer,
    task: Task,
    lora: LoraConfig,
    train: TrainConfig,
    cache_dir: Path,
    progress: Progress | None = None,
) -> tuple[Path, dict]:
    """Give ``loaded.model`` the trained adapter for this config, from cache or by training.

    Returns the adapter directory and its training record (losses, seconds, whether cached).
    """
    progress = progress or Silent()
    key = adapter_key(loaded, task, lora, train, scorer.max_length)
    path = cache_dir / "adapters" / key
    if (path / SIDECAR).is_file():
        load_adapter(loaded.model, path)
        record = json.loads((path / SIDECAR).read_text())
        if isinstance(scorer, EncoderScorer) and "log_scale" in record:
            with torch.no_grad():
                scorer.log_scale.fill_(record["log_scale"])
        progress.log(f"using the cached adapter {path}")
        return path, {**record, "cached": True}
    init_lora(loaded.model, lora, train.seed)
    if isinstance(scorer, EncoderScorer):
        scorer.log_scale.requires_grad_(True)
    started = time.perf_counter()
    losses = train_lora(scorer, task, train, progress)
    record = {
        "key": key,
        "method": "lora",
        "lora": to_dict(lora),
        "train": to_dict(train),
        "losses": losses,
        "train_seconds": round(time.perf_counter() - started, 2),
        "log_scale": scorer.log_scale.item() if isinstance(scorer, EncoderScorer) else None,
    }
    # Write into a temporary sibling and rename, so a crash never leaves a half adapter in cache.
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{key}-"))
    staging.chmod(default_mode(directory=True))
    save_adapter(loaded.model, staging, lora, base_model_name_or_path=loaded.path)
    (staging / SIDECAR).write_text(json.dumps(record) + "\n")
    try:
        os.replace(staging, path)
    except OSError:  # another run finished the same adapter first: keep theirs
        shutil.rmtree(staging, ignore_errors=True)
    return path, {**record, "cached": False}
