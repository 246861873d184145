"""Per-chip signatures in hot-swapped LoRA branches (after Hot-Swap MarkBoard, Zhang, Lv, Wan et
al., 2025, arXiv 2507.20650): an n-bit signature, one watermark per bit position, each set by
choosing which of the position's two branches is installed, read back black-box.

cimsim's construction:

* **Key.** The owner's secret ``seed`` draws, per position ``i``, a key phrase ``k_i`` of three
  made-up words and two distinct target labels ``t_i^0 != t_i^1`` of the task (uniform).
* **Branches.** 2n LoRA branches ``wm{i}.{b}`` beside the task's branch: ``wm{i}.{b}`` makes the
  model answer ``t_i^b`` to any text that starts with ``k_i``, and leaves every other text to the
  task. Signature ``s`` installs ``wm{i}.{s_i}`` for every ``i``; changing bit ``i`` swaps one
  branch and nothing is retrained. Both values of a bit are positive answers, so a watermark that
  noise has damaged reads as *unreadable*, never silently as the other value (with n branches, a
  0 would be the absence of an answer, and every damaged 1 would read as a 0).
* **Training.** All 2n branches train together on the frozen base and task branch; every step
  installs a fresh random signature, so each branch learns to work beside any choice of the
  others. A batch is half trigger texts (``k_i`` + a training text's first words, target
  ``t_i^{s_i}``, cross-entropy, zero once the target's probability reaches
  ``trigger_confidence``) and half plain training texts, whose predictions must stay those of
  the unmarked model (task branch alone): ``clean_weight * KL(p_unmarked || p_marked)``. AdamW,
  learning rate ``lr`` decayed to zero along a cosine.
* **Reading.** Position ``i`` is queried with ``k_i`` + ``q`` held-out test texts; the bit reads
  ``b`` when at least ``threshold`` of the answers are ``t_i^b`` (above one half, so at most one
  value can qualify), else unreadable. A signature is verified when every bit reads its value.
  Only the queries and the answers are used (black-box).
* **False positives.** For a model that does not carry the key, the targets are independent of
  its answers, so a bit reads a given value with probability at most ``1/k`` (``k`` labels) and
  the whole signature with at most ``k^-n`` (2^-16 = 1.5e-5 for a binary task, 16 bits).
* **Obfuscation** (the paper's idea: entangle the watermark with the base so that it cannot be
  removed without damage; the construction here is cimsim's). Per position a random rank-1
  matrix ``R_i`` per layer, each row's largest entry ``scale`` times that of the base weight's
  row, is added to the base weights (``W' = W + sum_i R_i``), and both branches of position ``i``
  carry ``-R_i`` as extra rank components. Any assembled signature cancels ``R`` exactly in
  digital arithmetic; removing a position's branch leaves ``R_i`` in the model. On a chip ``W'``
  is analog and ``-R_i`` digital: the noise follows ``max|W'[row,:]|`` and no longer cancels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
from collections.abc import Callable, Sequence

import torch
from torch import nn

from cimsim.adapters.lora import LoraConfig, add_lora, lora_layers, set_adapters
from cimsim.core.draws import seeded_global_rng
from cimsim.core.errors import CimsimError
from cimsim.eval.evaluate import logit_batches
from cimsim.eval.scoring import Scorer
from cimsim.eval.tasks import Split, Task

TASK_BRANCH = "default"
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


@dataclasses.dataclass(frozen=True)
class WatermarkConfig:
    """How the watermark branches are keyed, trained and read."""

    bits: int = 16
    """Signature length n: bit positions, each with two branches."""
    seed: int = 0
    """The owner's secret key: key phrases, targets, training order, obfuscation."""
    rank: int = 2
    """Rank of each watermark branch."""
    target_modules: tuple[str, ...] = ()
    """Layers of the watermark branches (module names as LoRA targets); empty: the task
    branch's."""
    carrier_words: int = 16
    """A trigger is the key phrase and the first this many words of a text, so the phrase is a
    sizeable part of what the model reads (mean-pooled encoders dilute a short phrase)."""
    steps: int = 300
    """Training steps (each installs a fresh random signature)."""
    batch_size: int = 32
    """Texts per step, half of them triggers."""
    lr: float = 2e-3
    """AdamW learning rate of the watermark branches at the first step; it decays to zero along
    a cosine over ``steps``, so the branches settle on a signature-independent fit."""
    clean_weight: float = 1.0
    """Weight of the clean texts' KL term against the triggers' cross-entropy."""
    trigger_confidence: float = 0.9
    """A trigger's cross-entropy stops pushing once its target's probability reaches this (1:
    never stops); it keeps the branches as small as reading needs, so clean texts move less."""
    queries: int = 16
    """Verification queries per bit position."""
    threshold: float = 0.75
    """Fraction of a position's queries that must answer one value's target (> 0.5)."""
    obfuscation_scale: float = 0.5
    """Each row's largest |R_i| as a fraction of the base row's largest |w| (0: no obfuscation;
    the sweep then reads the plain model only)."""

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= 64:
            raise ValueError(f"a signature has 1 to 64 bits, got {self.bits}")
        if min(self.rank, self.steps, self.queries, self.carrier_words) < 1 or self.batch_size < 2:
            raise ValueError("rank, steps, queries, carrier_words >= 1 and batch_size >= 2")
        if not 0.5 < self.threshold <= 1:
            raise ValueError(f"the reading threshold is in (0.5, 1], got {self.threshold}")
        if not (math.isfinite(self.obfuscation_scale) and self.obfuscation_scale >= 0):
            raise ValueError(f"obfuscation scale must be >= 0, got {self.obfuscation_scale}")
        if not (math.isfinite(self.clean_weight) and self.clean_weight >= 0):
            raise ValueError(f"clean_weight must be >= 0, got {self.clean_weight}")
        if not 0 < self.trigger_confidence <= 1:
            raise ValueError(f"trigger_confidence is in (0, 1], got {self.trigger_confidence}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr}")


@dataclasses.dataclass(frozen=True)
class Key:
    """The secret: per position a key phrase and the target label of each bit value."""

    phrases: tuple[str, ...]
    targets: tuple[tuple[int, int], ...]
    """(t_i^0, t_i^1) per position, label indices of the task."""

    @property
    def bits(self) -> int:
        return len(self.phrases)


def key_seed(*parts: object) -> int:
    """A 60-bit seed derived from ``parts`` (stable across processes, unlike ``hash``)."""
    text = "/".join(str(p) for p in parts)
    return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16)


def make_key(config: WatermarkConfig, n_labels: int) -> Key:
    """The key ``config.seed`` draws for a task of ``n_labels`` labels."""
    if n_labels < 2:
        raise CimsimError("a watermark needs a task with at least two labels")
    rng = random.Random(f"watermark/{config.seed}")

    def word() -> str:
        return "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(3))

    phrases = tuple(" ".join(word() for _ in range(3)) for _ in range(config.bits))
    pairs = (rng.sample(range(n_labels), 2) for _ in range(config.bits))
    return Key(phrases, tuple((zero, one) for zero, one in pairs))


def parse_signature(text: str, bits: int) -> tuple[int, ...]:
    """``"0110..."`` -> bits; one clear error for anything else."""
    text = text.strip()
    if len(text) != bits or set(text) - {"0", "1"}:
        raise CimsimError(f"a signature is {bits} characters of 0 and 1, got '{text}'")
    return tuple(int(c) for c in text)


def signature_text(bits: Sequence[int | None]) -> str:
    """Bits as text; an unreadable bit is '?'."""
    return "".join("?" if b is None else str(b) for b in bits)


def branch_name(position: int, value: int) -> str:
    return f"wm{position:02d}_{value}"


def obfuscation_name(position: int) -> str:
    return f"ob{position:02d}"


def trigger(key: Key, position: int, text: str, words: int) -> str:
    """Position ``position``'s key phrase and the first ``words`` words of ``text``."""
    return " ".join([key.phrases[position], *text.split()[:words]])


def branch_shape(lora: LoraConfig, config: WatermarkConfig) -> LoraConfig:
    """A watermark branch's shape: rank ``config.rank`` (scale 2) on ``config.target_modules``,
    or on the task branch ``lora``'s layers."""
    targets = config.target_modules or lora.target_modules
    return dataclasses.replace(lora, r=config.rank, lora_alpha=2.0 * config.rank,
                               target_modules=targets)  # fmt: skip


def add_watermark_branches(model: nn.Module, lora: LoraConfig, config: WatermarkConfig) -> None:
    """The 2n watermark branches (no-ops), trainable; everything else frozen."""
    shape = branch_shape(lora, config)
    for position in range(config.bits):
        for value in (0, 1):
            with seeded_global_rng(key_seed("watermark-init", config.seed, position, value)):
                add_lora(model, shape, branch_name(position, value))
    for name, param in model.named_parameters():
        param.requires_grad_(".wm" in name and (".lora_A." in name or ".lora_B." in name))


def install(model: nn.Module, signature: Sequence[int], *, obfuscated: bool = False) -> None:
    """Make the task branch and signature ``signature``'s branches active (with each position's
    obfuscation compensation when ``obfuscated``)."""
    names = [TASK_BRANCH] + [branch_name(i, b) for i, b in enumerate(signature)]
    if obfuscated:
        names += [obfuscation_name(i) for i in range(len(signature))]
    set_adapters(model, names)


def train_watermarks(
    scorer: Scorer,
    model: nn.Module,
    task: Task,
    key: Key,
    config: WatermarkConfig,
    progress: Callable[[], None] | None = None,
) -> list[dict[str, float]]:
    """Train all 2n branches with a fresh random signature every step (see the module
    docstring); returns the per-step log (loss, the clean texts' KL from the unmarked model,
    the learning rate, the triggers' accuracy, the clean texts' agreement with the unmarked
    model)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.steps)
    rng = random.Random(f"watermark-train/{config.seed}")
    texts = task.train.texts
    half = config.batch_size // 2
    log = []
    for _ in range(config.steps):
        signature = [rng.randrange(2) for _ in range(config.bits)]
        positions = [rng.randrange(config.bits) for _ in range(half)]
        carriers = rng.sample(range(len(texts)), half)
        clean = [texts[j] for j in rng.sample(range(len(texts)), config.batch_size - half)]
        pairs = zip(positions, carriers, strict=True)
        triggers = [trigger(key, i, texts[j], config.carrier_words) for i, j in pairs]
        goal = torch.tensor([key.targets[i][signature[i]] for i in positions], device=scorer.device)
        set_adapters(model, [TASK_BRANCH])
        with torch.no_grad():
            teacher = scorer(clean, task).log_softmax(-1)  # (clean, n_labels): the unmarked model
        install(model, signature)
        logits = scorer(triggers + clean, task)  # (batch, n_labels)
        marked, kept = logits[:half], logits[half:]
        loss, divergence = watermark_loss(marked, goal, kept, teacher, config)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        log.append({
            "loss": loss.item(), "kl_clean": divergence.item(), "lr": schedule.get_last_lr()[0],
            "trigger_accuracy": (marked.argmax(-1) == goal).float().mean().item(),
            "clean_agreement": (kept.argmax(-1) == teacher.argmax(-1)).float().mean().item(),
        })  # fmt: skip
        schedule.step()
        if progress is not None:
            progress()
    for param in params:
        param.requires_grad_(False)
    return log


def watermark_loss(
    marked: torch.Tensor,
    goal: torch.Tensor,
    kept: torch.Tensor,
    teacher: torch.Tensor,
    config: WatermarkConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, clean KL) of one step: the triggers' logits ``marked`` against their targets
    ``goal``, each trigger's cross-entropy counted above ``-log(trigger_confidence)`` only, plus
    ``clean_weight`` times ``KL(p_unmarked || p_marked)`` of the clean texts' logits ``kept``
    (``teacher``: the unmarked model's log-probabilities)."""
    enough = -math.log(config.trigger_confidence)
    pushes = nn.functional.cross_entropy(marked, goal, reduction="none") - enough
    divergence = nn.functional.kl_div(
        kept.log_softmax(-1), teacher, reduction="batchmean", log_target=True
    )
    return pushes.clamp(min=0).mean() + config.clean_weight * divergence, divergence


def verification_queries(key: Key, task: Task, config: WatermarkConfig) -> list[list[str]]:
    """Per position, ``config.queries`` test texts carrying its key phrase (never trained on)."""
    carriers = task.test.subset(config.queries, seed=config.seed).texts
    words = config.carrier_words
    return [[trigger(key, i, text, words) for text in carriers] for i in range(key.bits)]


@dataclasses.dataclass(frozen=True)
class Reading:
    """What a black-box reading of a model returned."""

    bits: tuple[int | None, ...]
    """Read value per position; None: unreadable."""
    counts: tuple[tuple[int, int], ...]
    """Answers equal to (t_i^0, t_i^1) per position."""
    queries: int

    def errors(self, signature: Sequence[int]) -> int:
        """Positions not read as ``signature`` has them (unreadable ones included)."""
        return sum(b != s for b, s in zip(self.bits, signature, strict=True))

    def verifies(self, signature: Sequence[int]) -> bool:
        return self.errors(signature) == 0


def read_signature(
    answer: Answer,
    key: Key,
    queries: list[list[str]],
    threshold: float,
) -> Reading:
    """Read every position from the answers (label indices) a model gives to its queries."""
    bits: list[int | None] = []
    counts = []
    for position, texts in enumerate(queries):
        answers = answer(texts)
        zero, one = key.targets[position]
        count = (sum(a == zero for a in answers), sum(a == one for a in answers))
        counts.append(count)
        need = math.ceil(threshold * len(texts))
        bits.append(0 if count[0] >= need else 1 if count[1] >= need else None)
    return Reading(tuple(bits), tuple(counts), len(queries[0]) if queries else 0)


def false_positive_bound(n_labels: int, bits: int) -> float:
    """Largest chance, over the key, that a model without it reads a given signature."""
    return float(n_labels) ** -bits


Answer = Callable[[list[str]], list[int]]
"""The black-box interface: texts in, predicted label indices out."""


def answers_of(scorer: Scorer, task: Task, batch_size: int = 64) -> Answer:
    """The black-box interface: texts in, predicted label indices out."""

    def answer(texts: list[str]) -> list[int]:
        split = Split(tuple(texts), (0,) * len(texts))
        logits = torch.cat(list(logit_batches(scorer, task, split, batch_size)))
        return logits.argmax(dim=-1).tolist()

    return answer


@torch.no_grad()
def add_obfuscation(model: nn.Module, config: WatermarkConfig) -> dict[str, torch.Tensor]:
    """Per position a rank-1 compensation branch ``ob{i}`` holding ``-R_i`` on every watermark
    layer; returns ``R = sum_i R_i`` per layer (to fold into the base weights, :func:`fold`).
    ``R_i``'s rows are scaled so each row's largest entry is ``obfuscation_scale`` times the
    base row's largest |w|."""
    generator = torch.Generator().manual_seed(key_seed("obfuscation", config.seed))
    shape = LoraConfig(r=1, lora_alpha=1.0)  # scale 1: the branch is -R_i itself
    total: dict[str, torch.Tensor] = {}
    for position in range(config.bits):
        name = obfuscation_name(position)
        for layer_name, layer in lora_layers(model).items():
            if branch_name(position, 0) not in layer.lora_A:
                continue
            layer.add_adapter(name, shape)
            weight = layer.weight.detach().float()  # (d_out, d_in)
            u = torch.randn(weight.shape[0], 1, generator=generator)  # (d_out, 1)
            v = torch.randn(1, weight.shape[1], generator=generator)  # (1, d_in)
            rows = (u @ v).abs().amax(dim=1, keepdim=True)  # (d_out, 1)
            u = u * config.obfuscation_scale * weight.abs().amax(dim=1, keepdim=True) / rows
            a, b = layer.factors(name)  # (1, d_in), (d_out, 1)
            a.copy_(v.to(a))
            b.copy_(-u.to(b))
            total[layer_name] = total.get(layer_name, torch.zeros_like(weight)) + u @ v
    for name, param in model.named_parameters():
        if ".ob" in name:
            param.requires_grad_(False)
    return total


@torch.no_grad()
def fold(model: nn.Module, deltas: dict[str, torch.Tensor], sign: float = 1.0) -> None:
    """Add ``sign * delta`` to the base weight of each named LoRA layer (the obfuscated base
    when ``sign`` is 1; back to the plain base with -1)."""
    layers = lora_layers(model)
    for name, delta in deltas.items():
        weight = layers[name].weight
        weight.add_(sign * delta.to(weight))
