"""``auto-halora``: the dual objective's scalars and learning-rate schedule set during training,
adapted from AutoLoRa (Xu, Zhang & Kankanhalli, "AutoLoRa: A Parameter-Free Automated Robust
Fine-Tuning Framework", arXiv 2310.01818, 2023).

AutoLoRa fine-tunes a feature extractor (FE) for adversarial robustness. It gives the natural
objective its own low-rank branch (natural pass: FE + branch, gradient into the branch only) and
the adversarial objective the FE (adversarial pass: FE alone, gradient into the FE only), and
trains ``l1 CE(natural) + (1 - l1) CE(adversarial) + l2 KL(natural || adversarial)`` with

    l1 = 1 - a,   l2 = s * a,   s = 6,

where ``a`` is the natural branch's accuracy on the training data, re-measured four times per
epoch: while the natural branch is poor it learns; once it is good, its soft labels teach the
robust pass. The learning rate starts high and is halved at fixed checkpoints (epochs 16, 24, 28,
36, 40, 42, ..., 50 of 50) whenever the validation robust accuracy improved in fewer than
``rho = 0.75`` of the epochs since the last checkpoint, and training then resumes from the best
weights so far (the step-size rule of Croce and Hein's APGD).

On a chip the base is frozen in RRAM and only the LoRA branch, in SRAM, survives to deployment,
where it must serve the digital chip (sigma 0) and the noisy ones alike. There is no second
parameter set to give the robust objective, and no disposable teacher: the ideal pass (digital
base + branch) *is* the deployed digital model. cimsim therefore keeps halora's one branch, which
both passes train (an ideal pass and a noisy pass on a fresh training chip every step), and takes
from AutoLoRa its two automations. A step's loss is

    (1 - lam) L_ideal + lam L_noisy + kl KL(p_ideal || p_noisy) + mu R_spectral,
    lam = (Lbar_noisy - Lbar_ideal) / (2 Lbar_noisy),   kl = s * lam,

``Lbar`` the two losses averaged over the last ``ceil(steps per epoch / 4)`` training batches
(AutoLoRa re-measures four times an epoch; this step's included, read from the losses the step
computes anyway), ``lam`` clipped at 0, ``s = kl_scale`` (0 by default: no KL term; AutoLoRa's
is 6), ``mu`` HaLoRA's, fixed. In the KL term the ideal predictions are a fixed teacher: with
the gradient through both sides it pulled the digital model towards the noisy one (MiniLM on BBC
News lost 14 digital points, 0.807 against lora's 0.957).

``lam`` is half the noise's share of the noisy loss. It plays the part of AutoLoRa's ``a``
(natural first, robust once the natural task is learned) with a signal about the noise: before
the task is learned the two losses are alike, lam is near 0 and the step learns the task; as the
ideal loss falls and the noise's cost stands out, lam rises, towards halora's equal weights (1/2)
when the noise causes all of the noisy loss. It is self-correcting: a lam too small for the
noise widens the gap and raises it. AutoLoRa's own ``a`` does not carry over: a pretrained LM's
zero-shot accuracy already makes ``a`` 0.5-0.8 from the first step, so lam = a put most of the
weight on the noisy pass from the start and cost SmolLM2 3-4 digital points (docs/results.md,
"auto-halora").

The schedule: ``E = min(steps // q, 25)`` validations (``q`` the quarter epoch in steps), before
training and after every ``steps / E`` steps. The validation value is ``(CE_ideal + CE_noisy) /
2`` on up to 64 training-split examples that no batch uses, the noisy half on one fixed
validation chip at the training sigma; lower is better. Validating every quarter epoch rather
than every step keeps the value about training progress rather than step-to-step jitter. The
checkpoints are AutoLoRa's epochs scaled to the validations (``round(E * w / 50)``), keeping
only those at least ``min_window`` validations after the checkpoint kept before; at a checkpoint
whose window saw fewer than ``rho`` of its validations improve on their predecessor, every
learning rate is halved. The optimiser's moments are kept (AutoLoRa keeps SGD's momentum).

The floor of eight (``min_window``): AutoLoRa's shortest window is two epochs, eight validations
at four an epoch. Scaled to cimsim's short runs without a floor, most windows would hold one or
two validations, where the test halves at the first value that does not improve (SmolLM2 on
movie reviews: halved after steps 16, 24 and 28 of 32, each time on one bump of the 64-example
loss; 0.010 under halora's robustness). With a floor of four, the shortest window in which the
test at rho 0.75 tolerates one such value, a two-epoch run is judged once, after its first
epoch, on four values of that loss: six of thirty training draws across the committed files
halved there (all SmolLM2 on movie reviews), and with the rule off five of the six landed higher
under noise (the two drawn to test the floor of eight, 0.016 higher each; docs/results.md,
"auto-halora"). Under the floor of eight a run of two epochs or fewer (at most eight
validations) keeps its rate; a longer one is judged on windows of at least two epochs.

AutoLoRa also restores the best weights so far at a halving and ends on the best
weights (``restore_best``, off by default): on 64 validation examples over cimsim's short runs
the best value is often an early one by chance (SmolLM2 on movie reviews: values 0.55-0.68 from
one quarter epoch to the next, the best after step 12 of 32), and ending there threw away the
last 20 steps (2.7 points under noise against halora). ``average_tail`` (off by default) ends
instead on the mean of the weights after every step of the second half of training (the uniform
average of stochastic weight averaging, Izmailov et al., "Averaging Weights Leads to Wider
Optima and Better Generalization", arXiv 1803.05407), which chooses nothing on a noisy
validation value. On SmolLM2's movie reviews it kept the digital model that the last weights
lose; on BBC News, where the ideal loss still halves from the run's second quarter to its
third, the average lags behind the last weights (docs/results.md, "auto-halora").

``lam_source = "held-out"`` reads the share from the validation examples instead of the training
batches: the two losses of the last validation (ideal, and noisy on the validation chip), so
lam changes once a quarter epoch. On its own batches the branch's ideal loss falls towards 0 as
it fits them, and the share of the noisy loss that the noise causes tends to 1 with it, whatever
the noise costs on examples the branch has not fitted; on held-out examples the ideal loss keeps
the part of the loss that is the task's, not the noise's. The validation then runs with or
without ``auto_lr``; only ``auto_lr`` halves the rate. It is not the default: on SmolLM2's movie
reviews over all linear layers the held-out share is as large as the batches' (0.55-0.71 from
the second validation on), and the run lands where the default does (docs/results.md).

``lam_rule = "accuracy"`` is AutoLoRa's scalar rule (lam = a, the ideal pass's training accuracy
over the same window; with ``kl_scale = 6`` its KL weight 6a), and ``split_rank`` maps AutoLoRa's
two parameter sets onto the two halves of the branch's rank (the ideal pass's gradient reaches
only the first ``ceil(r/2)`` components, the noisy pass's the rest:
:func:`cimsim.adapters.lora.routed`); both are kept to reproduce that mapping.

AutoLoRa separates the two objectives' gradients because they diverge. Within one branch,
``protect_digital`` drops the noisy gradient's component along the ideal one where the two
conflict (PCGrad's projection, :func:`cimsim.adapters.objectives.protected_gradients`; their
cosine is logged), and ``noisy_target = "ideal"`` trains the noisy pass towards the ideal
pass's predictions (TRADES's ``KL(p_ideal || p_noisy)``) instead of the labels. Both are off by
default: on SmolLM2 they move the digital cost and the robustness along the trade-off that lam
itself traces (docs/results.md, "auto-halora").

``auto_scalars`` and ``auto_lr`` switch the rule and the schedule off: without the scalars the
weights are ``lam`` and ``kl = 0``; without the schedule the rate stays ``lr`` and nothing is
validated. With both off (and no split, no average) the method is ``halora`` step for step.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cimsim.chip.cards import DeviceCard
from cimsim.chip.deploy import deploy, undeploy
from cimsim.eval.evaluate import logit_batches
from cimsim.eval.scoring import Scorer
from cimsim.eval.tasks import Split, Task

KL_SCALE = 6.0
RHO = 0.75
DECAY = 2.0
MAX_VALIDATIONS = 25
# The shortest window the rho test judges: AutoLoRa's, two epochs of validations four an epoch.
MIN_WINDOW = 8
VALIDATION_SIZE = 64
# AutoLoRa's learning-rate checkpoints, in epochs of its 50.
CHECKPOINT_EPOCHS = (0, 16, 24, 28, 36, 40, 42, 44, 46, 48, 50)


def autolora_weights(accuracy: float, kl_scale: float = KL_SCALE) -> tuple[float, float]:
    """``(lam, kl)``: the noisy loss's weight ``a`` and the KL term's ``s * a``."""
    return accuracy, kl_scale * accuracy


def share_weights(ideal: float, noisy: float, kl_scale: float = 0.0) -> tuple[float, float]:
    """``(lam, kl)`` from the ideal and noisy losses: ``lam`` is half the noise's share of the
    noisy loss, ``(noisy - ideal) / (2 noisy)``, from 0 (the noise costs nothing) to 1/2 (it
    causes all of it); ``kl = s * lam``."""
    lam = max(0.0, noisy - ideal) / (2 * noisy) if noisy > 0 else 0.0
    return lam, kl_scale * lam


class TrainingWindow:
    """The ideal pass's accuracy and the mean ideal and noisy losses over the last ``size``
    training batches."""

    def __init__(self, size: int) -> None:
        self.batches: deque[tuple[int, int, float, float]] = deque(maxlen=size)

    def add(self, n_correct: int, n: int, ideal: float, noisy: float) -> tuple[float, float, float]:
        """Record a batch (its correct count, size and two losses); over the window, that batch
        included: ``(accuracy, mean ideal loss, mean noisy loss)``."""
        self.batches.append((n_correct, n, ideal, noisy))
        count = len(self.batches)
        accuracy = sum(b[0] for b in self.batches) / sum(b[1] for b in self.batches)
        return (
            accuracy,
            sum(b[2] for b in self.batches) / count,
            sum(b[3] for b in self.batches) / count,
        )


def window_size(steps_per_epoch: int) -> int:
    """Batches per training window: a quarter epoch (AutoLoRa re-measures four times an epoch)."""
    return max(1, math.ceil(steps_per_epoch / 4))


def validation_steps(total_steps: int, spacing: int = 1) -> list[int]:
    """Steps after which the validation runs: 0 (before training), then ``E`` evenly spaced
    up to the last step, ``E = min(total_steps // spacing, 25)`` (at least 1)."""
    count = max(1, min(total_steps // spacing, MAX_VALIDATIONS))
    return [round(k * total_steps / count) for k in range(count + 1)]


def checkpoints(validations: int, min_window: int = MIN_WINDOW) -> list[int]:
    """Indices of the validations (of ``0..validations``) at which the rate may be halved:
    AutoLoRa's checkpoints scaled to ``validations``, each at least ``min_window`` validations
    after the one kept before it (a scaled checkpoint closer than that is dropped), and none at
    the last validation, which follows the last step."""
    scaled = sorted({round(validations * e / CHECKPOINT_EPOCHS[-1]) for e in CHECKPOINT_EPOCHS})
    marks = [0]
    for mark in scaled:
        if mark - marks[-1] >= min_window and mark < validations:
            marks.append(mark)
    return marks


def halve(improved: Sequence[bool], rho: float = RHO) -> bool:
    """AutoLoRa's test over one window: fewer than ``rho`` of its validations improved."""
    return sum(improved) < rho * len(improved)


def validation_chip_seed(seed: int) -> int:
    """The validation chip (distinct from every training and evaluation chip)."""
    return int(hashlib.sha256(f"validate/{seed}".encode()).hexdigest()[:15], 16)


Batch = tuple[Task, list[str], torch.Tensor]


def validation_sets(batches: Sequence[Batch], seed: int) -> list[tuple[Task, Split]]:
    """Up to 64 examples, shared evenly between the batches' tasks, from each task's training
    split but outside every batch (stratified, seeded); a task with none to spare validates on
    its batches' own examples."""
    tasks: dict[str, Task] = {}
    used: dict[str, set[str]] = {}
    for task, texts, _ in batches:
        tasks.setdefault(task.name, task)
        used.setdefault(task.name, set()).update(texts)
    per_task = math.ceil(VALIDATION_SIZE / len(tasks))
    sets = []
    for name, task in tasks.items():
        examples = list(zip(task.train.texts, task.train.labels, strict=True))
        spare = [(t, y) for t, y in examples if t not in used[name]]
        pool = spare or [(t, y) for t, y in examples if t in used[name]]
        split = Split(tuple(t for t, _ in pool), tuple(y for _, y in pool))
        sets.append((task, split.subset(per_task, seed=seed)))
    return sets


class AutoSchedule:
    """The scalars and learning-rate schedule over one training run (see the module docstring).
    :func:`cimsim.adapters.objectives.objective_loss` asks :meth:`weights` once per step, after
    both passes; :func:`cimsim.adapters.train.train_steps` calls :meth:`after_step` after each
    optimiser step and :meth:`finish` at the end."""

    def __init__(
        self,
        config: Any,
        batches: Sequence[Batch],
        scorer: Scorer,
        model: nn.Module,
        card: DeviceCard | None,
        optimiser: torch.optim.Optimizer,
    ) -> None:
        self.config, self.scorer, self.model, self.card = config, scorer, model, card
        self.optimiser = optimiser
        quarter = window_size(max(1, len(batches) // config.epochs))
        self.window = TrainingWindow(quarter)
        self.step = 0
        # with average_tail: the step after which the weights are averaged, and their mean
        self.average_after = int(len(batches) * config.average_start)
        self.average: dict[str, torch.Tensor] = {}
        self.averaged = 0
        self.record: dict[str, float] = {}
        self.held_out = config.lam_held_out
        self.held_out_losses = (0.0, 0.0)  # the last validation's ideal and noisy losses
        self.validate_at: list[int] = []
        self.marks: list[int] = [0]
        self.start: dict[str, float] = {}  # the validation before training, as logged
        if config.auto_lr or self.held_out:
            self.validate_at = validation_steps(len(batches), quarter)
            if config.auto_lr:
                self.marks = checkpoints(len(self.validate_at) - 1, config.min_window)
            self.sets = validation_sets(batches, config.seed)
            self.values: list[float] = []
            self.best_value = math.inf
            self.best_weights: dict[str, torch.Tensor] = {}  # kept only with restore_best
            # logged with the first step: the first window's first value
            self.start = {f"start_{key}": value for key, value in self._validate().items()}

    def weights(self, n_correct: int, n: int, ideal: float, noisy: float) -> tuple[float, float]:
        """This step's ``(lam, kl)`` from the ideal pass's ``n_correct`` of ``n`` and the
        step's ideal and noisy losses."""
        accuracy, mean_ideal, mean_noisy = self.window.add(n_correct, n, ideal, noisy)
        if not self.config.auto_scalars:
            lam, kl = self.config.lam, 0.0
        elif self.held_out:
            lam, kl = share_weights(*self.held_out_losses, self.config.kl_scale)
        elif self.config.lam_rule == "accuracy":
            lam, kl = autolora_weights(accuracy, self.config.kl_scale)
        else:
            lam, kl = share_weights(mean_ideal, mean_noisy, self.config.kl_scale)
        self.record = {"ideal_correct": n_correct, "batch": n, "window_accuracy": accuracy}
        self.record.update(window_ideal=mean_ideal, window_noisy=mean_noisy)
        if self.held_out:
            ideal, noisy = self.held_out_losses
            self.record.update(held_out_ideal=ideal, held_out_noisy=noisy)
        self.record.update(lam=lam, kl_weight=kl)
        return lam, kl

    def after_step(self) -> dict[str, float]:
        """What the rule chose and read at this step, for the training log."""
        self.step += 1
        record = {**self.record, "lr": self.optimiser.param_groups[0]["lr"]}
        if self.step == 1:
            record.update(self.start)
        if self.config.average_tail and self.step > self.average_after:
            self._accumulate()
            record["averaged"] = self.averaged
        if self.step in self.validate_at[1:]:
            record.update(self._validate())
        return record

    def finish(self) -> None:
        """With ``restore_best``, end on the best weights the validation saw; with
        ``average_tail``, on the mean of the weights after each step from ``average_start``."""
        if self.validate_at and self.config.restore_best:
            self._load(self.best_weights)
        if self.config.average_tail:
            self._load(self.average)

    def _accumulate(self) -> None:
        """Fold the weights as they are now into the running mean."""
        self.averaged += 1
        if not self.average:
            self.average = self._weights()
            return
        with torch.no_grad():
            for name, p in self.scorer.named_parameters():
                if name in self.average:
                    self.average[name] += (p.detach() - self.average[name]) / self.averaged

    def _validate(self) -> dict[str, float]:
        ideal, noisy = self._validation_losses()
        self.held_out_losses = (ideal, noisy)
        value = (ideal + noisy) / 2
        index = len(self.values)
        self.values.append(value)
        record = {"validation": value, "validation_ideal": ideal, "validation_noisy": noisy}
        if value < self.best_value:
            self.best_value = value
            if self.config.restore_best:
                self.best_weights = self._weights()
        if index in self.marks[1:]:
            start = self.marks[self.marks.index(index) - 1]
            improved = [self.values[k] < self.values[k - 1] for k in range(start + 1, index + 1)]
            if halve(improved):
                for group in self.optimiser.param_groups:
                    group["lr"] /= DECAY
                if self.config.restore_best:
                    self._load(self.best_weights)
                record["halved"] = 1.0
        return record

    def _validation_losses(self) -> tuple[float, float]:
        """``(CE_ideal, CE_noisy)`` over the validation examples, the noisy one on the
        validation chip."""
        ideal = self._loss()
        assert self.card is not None, "auto-halora trains with a noise card"
        noisy = self.card.with_value("sigma", self.config.noise_sigma)
        deploy(self.model, noisy.noise, validation_chip_seed(self.config.seed), noisy.tile)
        try:
            return ideal, self._loss()
        finally:
            undeploy(self.model, release=False)  # parked, as the training chips are

    def _loss(self) -> float:
        """Mean cross-entropy over the validation examples, the model as it is now."""
        total, count = 0.0, 0
        for task, split in self.sets:
            logits = torch.cat(list(logit_batches(self.scorer, task, split, VALIDATION_SIZE)))
            labels = torch.tensor(split.labels)  # logits: (n, n_labels) on the CPU
            total += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            count += len(split)
        return total / count

    def _weights(self) -> dict[str, torch.Tensor]:
        return {
            name: p.detach().clone()
            for name, p in self.scorer.named_parameters()
            if p.requires_grad
        }

    def _load(self, weights: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, p in self.scorer.named_parameters():
                if name in weights:
                    p.copy_(weights[name])
