"""Train a LoRA adapter for a task, and cache it by everything that determines it.

Methods (:mod:`cimsim.adapters.objectives`): ``lora`` (ideal base), ``noise-aware`` (a fresh
noisy base every step) and ``halora`` (both, plus a spectral regulariser), each a cross-entropy
over the label logits of :mod:`cimsim.eval.scoring`. Only the LoRA branches and the encoder scorer's
temperature are trained;
the base model stays frozen and in eval mode (no dropout), so a step is deterministic given the
seed. The adapter is saved in peft's format under ``<cache>/adapters/<key>/`` where ``key`` hashes
the model and task fingerprints, the LoRA shape, the training config and what of the scorer shapes
the loss (input length, a causal LM's prompt tokenization); a second run with the same key loads
instead of training.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from cimsim.adapters.auto import MIN_WINDOW, AutoSchedule
from cimsim.adapters.lora import LoraConfig, add_lora, load_adapter, save_adapter
from cimsim.adapters.objectives import DUAL, objective_loss
from cimsim.chip.cards import DeviceCard, load_card
from cimsim.chip.deploy import undeploy
from cimsim.core.config import config_hash, to_dict
from cimsim.core.draws import seeded_global_rng
from cimsim.core.errors import CimsimError
from cimsim.core.io import default_mode
from cimsim.core.progress import Progress, Silent
from cimsim.core.ranges import MAX_SEED
from cimsim.eval.models import LoadedModel
from cimsim.eval.scoring import EncoderScorer, Scorer
from cimsim.eval.tasks import Task

# Bump when a change to the training loop changes the adapter it produces for the same config.
TRAINER_VERSION = 1
SIDECAR = "cimsim_training.json"

_T = TypeVar("_T")


def _objective(default: _T) -> _T:
    """A ``TrainConfig`` field that shapes some methods' objectives and no other method's
    adapter: out of :meth:`TrainConfig.base`; :meth:`TrainConfig.objective_fields` says which
    methods it shapes."""
    return dataclasses.field(default=default, metadata={"objective": True})


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
    """Seeds the LoRA init, the subsample, the batch order and the training chips."""
    lam: float = _objective(0.5)
    """halora: weight of the noisy loss, (1 - lam) L_ideal + lam L_noisy."""
    mu: float = _objective(1e-3)
    """halora: weight of the spectral regulariser ||A A^T||_2 + ||B^T B||_2."""
    noise_card: str = _objective("channel")
    """noise-aware, halora: device card of the training noise (independent of evaluation)."""
    noise_sigma: float = _objective(0.05)
    """noise-aware, halora: sigma of the training noise, in the card's unit."""
    reprogram_every: int = _objective(1)
    """noise-aware, halora: program a fresh training chip every this many steps (1: every step,
    HaLoRA's setting; larger is cheaper per step but gives fewer noise draws)."""
    kl_scale: float = _objective(0.0)
    """auto-halora: s in the weight s * lam of a KL(p_ideal || p_noisy) term (AutoLoRa's and
    TRADES' s is 6; 0: no KL term)."""
    split_rank: bool = _objective(False)
    """auto-halora: the ideal pass trains the first half of the branch's rank, the noisy pass
    the second (AutoLoRa's two parameter sets; off: both passes train the whole branch)."""
    auto_scalars: bool = _objective(True)
    """auto-halora: set lam and the KL weight s * lam every step by ``lam_rule`` (off: lam
    fixed, no KL)."""
    lam_rule: str = _objective("share")
    """auto-halora: 'share', lam = (L_noisy - L_ideal) / (2 L_noisy), half the noise's share of
    the noisy loss over the last quarter epoch; 'accuracy', lam = a, the ideal pass's training
    accuracy (AutoLoRa's rule)."""
    lam_source: str = _objective("batches")
    """auto-halora with the 'share' rule: where the two losses are read, 'batches' (the last
    quarter epoch's training batches) or 'held-out' (the validation examples, on the validation
    chip, at each validation)."""
    auto_lr: bool = _objective(True)
    """auto-halora: halve the learning rate at AutoLoRa's checkpoints when the validation loss
    stalls (off: lr throughout, no validation)."""
    min_window: int = _objective(MIN_WINDOW)
    """auto-halora with auto_lr: the fewest validations a checkpoint's window holds (AutoLoRa's
    checkpoints closer than that to the one before are dropped): 8, AutoLoRa's two epochs, judges
    no run of two epochs or fewer; 1 keeps every checkpoint."""
    restore_best: bool = _objective(False)
    """auto-halora with auto_lr: restore the best weights the validation saw at every halving
    and at the end (AutoLoRa's rule)."""
    average_tail: bool = _objective(False)
    """auto-halora: end on the mean of the weights after every step of the second half of
    training (a uniform weight average, as stochastic weight averaging) instead of the last."""
    average_start: float = _objective(0.5)
    """auto-halora with average_tail: the fraction of the steps after which the weights are
    averaged (0.5: the second half)."""
    noisy_target: str = _objective("labels")
    """auto-halora: what the noisy pass is trained towards, 'labels' (cross-entropy, halora's)
    or 'ideal' (KL(p_ideal || p_noisy), the ideal pass's predictions a fixed teacher: TRADES's
    consistency form); lam's rule reads the cross-entropies either way."""
    protect_digital: bool = _objective(False)
    """auto-halora: where the noisy loss's gradient opposes the ideal loss's (negative inner
    product), drop its component along the ideal gradient, so that to first order no step
    raises the digital model's loss for the noise's sake (off: the weighted sum as halora)."""

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.train_size is not None and self.train_size < 1:
            raise ValueError("train_size must be >= 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr}")
        if not 0 <= self.lam <= 1:
            raise ValueError("lam must be in [0, 1]")
        if not (math.isfinite(self.mu) and self.mu >= 0):
            raise ValueError(f"mu must be a finite number >= 0, got {self.mu}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be in 0..{MAX_SEED}, got {self.seed}")
        if self.reprogram_every < 1:
            raise ValueError("reprogram_every must be >= 1")
        if self.min_window < 1:
            raise ValueError("min_window must be >= 1")
        if self.average_tail and self.restore_best:
            raise ValueError(
                "average_tail and restore_best both choose the final weights: turn one off"
            )
        if not 0 <= self.average_start < 1:
            raise ValueError(f"average_start must be in [0, 1), got {self.average_start}")
        if self.noisy_target not in ("labels", "ideal"):
            raise ValueError(f"noisy_target must be 'labels' or 'ideal', got {self.noisy_target!r}")
        if self.lam_source not in ("batches", "held-out"):
            raise ValueError(f"lam_source must be 'batches' or 'held-out', got {self.lam_source!r}")
        if self.lam_rule not in ("share", "accuracy"):
            raise ValueError(f"lam_rule must be 'share' or 'accuracy', got {self.lam_rule!r}")
        if not (math.isfinite(self.kl_scale) and self.kl_scale >= 0):
            raise ValueError(f"kl_scale must be a finite number >= 0, got {self.kl_scale}")

    @property
    def lam_held_out(self) -> bool:
        """auto-halora: lam is set by the share rule from the held-out validation losses (the
        source is the share rule's; fixed scalars and the accuracy rule read no validation)."""
        return self.auto_scalars and self.lam_rule == "share" and self.lam_source == "held-out"

    def load_noise_card(self) -> DeviceCard:
        """The training noise's device card as ``noise_card`` names it, loaded once by the run
        that trains and passed down; a user error if the card refuses ``noise_sigma``."""
        card = load_card(self.noise_card)
        card.with_value("sigma", self.noise_sigma)
        return card

    def objective_fields(self, method: str) -> dict[str, object]:
        """The fields that shape ``method``'s objective (none for plain lora)."""
        if method == "lora":
            return {}
        fields: dict[str, object] = {"noise_card": self.noise_card, "noise_sigma": self.noise_sigma}
        if self.reprogram_every != 1:  # absent at its default, so earlier adapter keys still hold
            fields["reprogram_every"] = self.reprogram_every
        if method == "halora":
            fields.update(lam=self.lam, mu=self.mu)
        if method == "auto-halora":
            fields.update(mu=self.mu, kl_scale=self.kl_scale, auto_scalars=self.auto_scalars)
            fields.update(auto_lr=self.auto_lr, split_rank=self.split_rank)
            if self.auto_lr:  # the shortest window shapes when the rate halves
                fields["min_window"] = self.min_window
                if self.restore_best:
                    fields["restore_best"] = True
            if self.protect_digital:  # absent when off, so earlier adapter keys still hold
                fields["protect_digital"] = True
            if self.noisy_target != "labels":
                fields["noisy_target"] = self.noisy_target
            if self.average_tail:  # absent when off, so earlier adapter keys still hold
                fields["average_tail"] = True
                if self.average_start != 0.5:
                    fields["average_start"] = self.average_start
            if not self.auto_scalars:
                fields["lam"] = self.lam
            else:
                fields["lam_rule"] = self.lam_rule
                if self.lam_held_out:  # absent at its default, as above
                    fields["lam_source"] = self.lam_source
        return fields

    def base(self) -> dict[str, object]:
        """The fields every method shares (those not declared with ``_objective``)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if not f.metadata.get("objective")
        }


def init_lora(model: nn.Module, lora: LoraConfig, seed: int) -> list[str]:
    """Add a fresh branch 'default' whose A init depends on ``seed`` only."""
    with seeded_global_rng(seed):
        try:
            return add_lora(model, lora)
        except ValueError as err:
            raise CimsimError(str(err)) from None


Batch = tuple[Task, list[str], torch.Tensor]
"""One optimiser step's data: the task (its label set scores the texts), texts, label indices."""


def task_batches(task: Task, config: TrainConfig) -> list[Batch]:
    """``task``'s training batches for every epoch, in the order training takes them: a
    stratified subsample of ``config.train_size``, reshuffled each epoch by ``config.seed``."""
    split = task.train.subset(config.train_size, seed=config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    labels = torch.tensor(split.labels)
    batches: list[Batch] = []
    for _ in range(config.epochs):
        order = torch.randperm(len(split), generator=generator)
        for start in range(0, len(split), config.batch_size):
            index = order[start : start + config.batch_size]
            batches.append((task, [split.texts[i] for i in index], labels[index]))
    return batches


def train_lora(
    scorer: Scorer,
    model: nn.Module,
    task: Task,
    config: TrainConfig,
    method: str = "lora",
    progress: Progress | None = None,
    *,
    card: DeviceCard | None = None,
) -> list[dict[str, float]]:
    """Train the scorer's trainable parameters on ``task`` with ``method``'s objective; returns
    the log of every step (total loss and its ideal / noisy / spectral parts). ``card``: as for
    :func:`train_steps`."""
    batches = task_batches(task, config)
    return train_steps(scorer, model, batches, config, method, progress, card=card)


def train_steps(
    scorer: Scorer,
    model: nn.Module,
    batches: Sequence[Batch],
    config: TrainConfig,
    method: str = "lora",
    progress: Progress | None = None,
    *,
    card: DeviceCard | None = None,
    regulariser: Callable[[], torch.Tensor | None] | None = None,
    after_step: Callable[[], None] | None = None,
    param_groups: Sequence[dict] = (),
) -> list[dict[str, float]]:
    """One AdamW step per batch on every parameter of ``scorer`` that requires grad.

    ``card`` is the training noise's card, ``config.load_noise_card()`` (loaded here when not
    given); its sigma is set to ``config.noise_sigma``. ``param_groups`` are AdamW groups with
    their own settings (e.g. ``lr``) for some of those parameters. ``regulariser`` adds a loss
    term (when it returns one) to every step (logged as ``regulariser``); ``after_step``
    runs after every optimiser step (e.g. to project the update, :mod:`cimsim.adapters.gpm`).

    LoRA dropout draws from torch's global generator; it is seeded here from ``config.seed`` (and
    restored afterwards), so a training run never depends on what ran before it in the process
    (a resumed continual run, another ``--methods`` list).
    """
    progress = progress or Silent()
    if method in ("noise-aware", *DUAL):
        card = (card or config.load_noise_card()).with_value("sigma", config.noise_sigma)
    params = [p for p in scorer.parameters() if p.requires_grad]
    special = {id(p) for group in param_groups for p in group["params"]}
    groups = [{"params": [p for p in params if id(p) not in special]}, *param_groups]
    optimiser = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    progress.stage(f"training LoRA ({method})", len(batches))
    log: list[dict[str, float]] = []
    with seeded_global_rng(config.seed, scorer.device):
        try:
            auto = (
                AutoSchedule(config, batches, scorer, model, card, optimiser)
                if method == "auto-halora"
                else None
            )
            for task, texts, labels in batches:
                optimiser.zero_grad(set_to_none=True)  # before: protect_digital writes grads
                loss, parts = objective_loss(
                    method,
                    scorer,
                    model,
                    texts,
                    labels.to(scorer.device),
                    task,
                    card=card,
                    lam=config.lam,
                    mu=config.mu,
                    seed=config.seed,
                    step=len(log),
                    reprogram_every=config.reprogram_every,
                    weigh=auto.weights if auto is not None else None,
                    split=method == "auto-halora" and config.split_rank,
                    protect=method == "auto-halora" and config.protect_digital,
                    consistency=method == "auto-halora" and config.noisy_target == "ideal",
                )
                extra = regulariser() if regulariser is not None else None
                if extra is not None:
                    parts["regulariser"] = extra.item()
                    loss = loss + extra
                if loss.requires_grad:  # not when protect_digital wrote every gradient
                    loss.backward()
                optimiser.step()
                if after_step is not None:
                    after_step()
                if auto is not None:
                    parts.update(auto.after_step())
                log.append({"loss": loss.item(), **parts})
                progress.advance()
            if auto is not None:
                auto.finish()
        finally:
            undeploy(model)  # release the training chips' buffers; the model is digital again
    return log


def adapter_key(
    loaded: LoadedModel,
    task: Task,
    lora: LoraConfig,
    train: TrainConfig,
    scorer: dict[str, object],
    method: str = "lora",
    card: DeviceCard | None = None,
) -> str:
    """Hash of everything that determines the trained adapter (a field that does not shape the
    method's objective, such as lam for plain lora, does not change it). ``scorer``: the
    scorer's ``key_fields()``. ``card``: the training
    noise's card, ``train.load_noise_card()`` (loaded here when not given)."""
    key: dict[str, object] = {
        "trainer": TRAINER_VERSION,
        "model": loaded.fingerprint,
        "task": task.fingerprint,
        "lora": to_dict(lora),
        "train": train.base(),
        **scorer,
    }
    if method != "lora":
        key.update(method=method, objective=train.objective_fields(method))
        key["card"] = (card or train.load_noise_card()).to_dict()
    return config_hash(key, length=16)


def trained_adapter(
    loaded: LoadedModel,
    scorer: Scorer,
    task: Task,
    lora: LoraConfig,
    train: TrainConfig,
    cache_dir: Path,
    progress: Progress | None = None,
    method: str = "lora",
    *,
    card: DeviceCard | None = None,
) -> tuple[Path, dict]:
    """Give ``loaded.model`` the adapter ``method`` trains for this config, from cache or by
    training. Returns the adapter directory and its training record (log, seconds, cached).
    ``card``: the training noise's card, ``train.load_noise_card()`` (loaded here when not given).
    """
    progress = progress or Silent()
    if method in ("noise-aware", *DUAL) and card is None:
        card = train.load_noise_card()
    key = adapter_key(loaded, task, lora, train, scorer.key_fields(), method, card)
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
    log = train_lora(scorer, loaded.model, task, train, method, progress, card=card)
    record = {
        "key": key,
        "method": method,
        "lora": to_dict(lora),
        "train": to_dict(train),
        "log": log,
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
