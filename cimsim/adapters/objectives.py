"""Training objectives for LoRA on a noisy analog base (HaLoRA-style and its baselines).

* ``lora``: ``L_ideal``, cross-entropy with the digital base.
* ``noise-aware``: ``L_noisy``, cross-entropy with the base programmed as a fresh chip instance
  of the training device card at every step.
* ``halora``: ``(1 - lam) L_ideal + lam L_noisy + mu R``, with the spectral regulariser
  ``R = sum over LoRA layers of ||A A^T||_2 + ||B^T B||_2`` (spectral norms, i.e. the squared
  largest singular values of A and B), which bounds how much the LoRA update can amplify the
  difference between ideal and noisy base activations (Wu et al., "HaLoRA", arXiv 2502.19747,
  2025). The paper does not publish lam, mu or its noise convention; cimsim's defaults
  (lam 0.5, mu 1e-3, channel noise sigma 0.05) are documented choices, exposed as options.
* ``auto-halora``: halora's loss with ``lam`` set every step from the two passes' losses (half
  the noise's share of the noisy loss), optionally plus ``kl KL(p_ideal || p_noisy)`` (the ideal
  pass's predictions a fixed teacher), each pass's gradient routed to its own half of the
  branch's rank, the noisy gradient projected off the ideal one where they conflict, or the
  noisy pass trained towards the ideal predictions, the learning rate scheduled by validation,
  after AutoLoRa (:mod:`cimsim.adapters.auto`).

The noisy base of step ``k`` is chip ``training_chip_seed(seed, k)``: fresh noise every step,
reproducible from the training seed. With ``reprogram_every = n > 1`` step ``k`` uses the chip
of step ``k - k % n`` (one chip for n steps, kept parked between them: cheaper, but the LoRA sees
n times fewer noise draws); the default 1 is HaLoRA's fresh noise at every step.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Sequence

import torch
from torch import nn

from cimsim.adapters.lora import lora_layers, routed
from cimsim.chip.cards import DeviceCard
from cimsim.chip.deploy import deploy, undeploy
from cimsim.eval.scoring import Scorer
from cimsim.eval.tasks import Task

OBJECTIVES = ("lora", "noise-aware", "halora", "auto-halora")
DUAL = ("halora", "auto-halora")  # an ideal and a noisy pass every step


def spectral_penalty(model: nn.Module) -> torch.Tensor:
    """``sum ||A A^T||_2 + ||B^T B||_2`` over the active LoRA branches (differentiable).

    The (r, r) Gram matrices of equal rank are stacked so one batched SVD serves all layers.
    """
    grams: dict[int, list[torch.Tensor]] = {}
    for layer in lora_layers(model).values():
        for name in layer.active_adapters:
            a: torch.Tensor = layer.lora_A[name].weight  # type: ignore[assignment]  # (r, d_in)
            b: torch.Tensor = layer.lora_B[name].weight  # type: ignore[assignment]  # (d_out, r)
            grams.setdefault(a.shape[0], []).extend((a @ a.T, b.T @ b))  # (r, r) each
    if not grams:
        raise ValueError("spectral_penalty: the model has no active LoRA branch")
    # (n, r, r) -> (n,) largest singular values, per rank
    norms = [torch.linalg.matrix_norm(torch.stack(g), ord=2).sum() for g in grams.values()]
    return torch.stack(norms).sum()


def protected_gradients(
    params: Sequence[nn.Parameter],
    ideal: torch.Tensor,
    noisy: torch.Tensor,
    lam: float,
    *,
    retain: bool = False,
) -> float:
    """Add ``(1 - lam) g_ideal + lam g_noisy'`` to the parameters' ``.grad``, where ``g_noisy'``
    is the noisy loss's gradient less its component along the ideal loss's when the two conflict
    (negative inner product; PCGrad's projection, Yu et al., "Gradient Surgery for Multi-Task
    Learning", arXiv 2001.06782): to first order the step then never raises the ideal loss for
    the noisy one's sake. Returns the cosine of the two gradients before the projection.
    ``retain`` keeps the noisy loss's graph (for a term still to be differentiated)."""
    g_ideal = torch.autograd.grad(ideal, params, allow_unused=True)
    g_noisy = torch.autograd.grad(noisy, params, retain_graph=retain, allow_unused=True)
    pairs = [
        (p, torch.zeros_like(p) if a is None else a, torch.zeros_like(p) if b is None else b)
        for p, a, b in zip(params, g_ideal, g_noisy, strict=True)
    ]
    dot = float(sum((a * b).sum() for _, a, b in pairs))
    ideal_norm2 = float(sum((a * a).sum() for _, a, _ in pairs))
    noisy_norm2 = float(sum((b * b).sum() for _, _, b in pairs))
    along = min(0.0, dot) / ideal_norm2 if ideal_norm2 > 0 else 0.0  # g_noisy' = b - along * a
    for p, a, b in pairs:
        grad = (1 - lam - lam * along) * a + lam * b
        p.grad = grad if p.grad is None else p.grad + grad
    norms = (ideal_norm2 * noisy_norm2) ** 0.5
    return dot / norms if norms > 0 else 0.0


def training_chip_seed(seed: int, step: int) -> int:
    """The chip programmed for training step ``step`` (distinct from every evaluation chip)."""
    digest = hashlib.sha256(f"train/{seed}/{step}".encode()).hexdigest()
    return int(digest[:15], 16)


def objective_loss(
    method: str,
    scorer: Scorer,
    model: nn.Module,
    texts: Sequence[str],
    labels: torch.Tensor,
    task: Task,
    *,
    card: DeviceCard | None,
    lam: float,
    mu: float,
    seed: int,
    step: int,
    reprogram_every: int = 1,
    kl: float = 0.0,
    weigh: Callable[[int, int, float, float], tuple[float, float]] | None = None,
    split: bool = False,
    protect: bool = False,
    consistency: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one step and its parts (``ideal``, ``noisy``, ``kl``, ``spectral``) for the
    log. ``card`` is the training noise's card at its sigma (unused, and may be None, for
    ``lora``). ``auto-halora`` adds ``kl * KL(p_ideal || p_noisy)``, the ideal predictions held
    fixed, to halora's loss; ``weigh``, given the ideal pass's correct count and batch size and
    the ideal and noisy losses, returns this step's ``(lam, kl)``
    (:class:`cimsim.adapters.auto.AutoSchedule`), else ``lam`` and ``kl`` hold; ``split``
    routes the ideal pass's gradient to the first half of every branch's rank and the noisy
    pass's to the second (:func:`cimsim.adapters.lora.routed`). ``protect`` (``auto-halora``)
    writes the two losses' gradients into ``.grad`` here, the noisy one projected off the ideal
    one where they conflict (:func:`protected_gradients`; the cosine is logged as
    ``cosine``), and the returned loss carries the graph of the other terms only: the caller
    zeroes the gradients before this call and backpropagates the loss only if it needs it.
    ``consistency`` (``auto-halora``) trains the noisy pass towards the ideal pass's predictions,
    ``lam KL(p_ideal || p_noisy)`` in place of ``lam L_noisy`` (TRADES's form; ``weigh`` still
    reads both cross-entropies)."""
    if method not in OBJECTIVES:
        raise ValueError(f"unknown training method '{method}'")
    if method != "lora" and card is None:
        raise ValueError(f"training method '{method}' needs the training noise's device card")

    def route(half: int) -> contextlib.AbstractContextManager[None]:
        return routed(model, half) if split else contextlib.nullcontext()

    parts: dict[str, float] = {}
    total = torch.zeros(())
    if method in ("lora", *DUAL):
        with route(0):
            ideal_logits = scorer(texts, task)  # (batch, n_labels)
        ideal = nn.functional.cross_entropy(ideal_logits, labels)
        parts["ideal"] = ideal.item()
        total = ideal
    if card is not None and method in ("noise-aware", *DUAL):
        chip = training_chip_seed(seed, step - step % reprogram_every)
        deploy(model, card.noise, chip, card.tile)  # restores a parked chip with no work
        try:
            with route(1):
                noisy_logits = scorer(texts, task)  # (batch, n_labels)
        finally:
            undeploy(model, release=False)  # parked: the next chip reuses the buffers
        noisy = nn.functional.cross_entropy(noisy_logits, labels)
        parts["noisy"] = noisy.item()
        if method == "noise-aware":
            total = noisy
        else:
            if weigh is not None:
                n_correct = int((ideal_logits.argmax(dim=-1) == labels).sum())
                lam, kl = weigh(n_correct, len(labels), parts["ideal"], parts["noisy"])
            divergence = None
            if method == "auto-halora" and (kl > 0 or consistency):
                divergence = nn.functional.kl_div(
                    noisy_logits.log_softmax(-1),
                    ideal_logits.detach().log_softmax(-1),
                    reduction="batchmean",
                    log_target=True,
                )  # KL(p_ideal || p_noisy): the ideal pass teaches, its predictions do not move
                parts["kl"] = divergence.item()
            robust = divergence if consistency and divergence is not None else noisy
            total = (1 - lam) * ideal
            noisy_terms = lam * robust
            if method == "auto-halora" and protect:
                params = [p for p in scorer.parameters() if p.requires_grad]
                parts["cosine"] = protected_gradients(params, ideal, robust, lam, retain=kl > 0)
                total, noisy_terms = total.detach(), noisy_terms.detach()
            if divergence is not None and kl > 0:
                noisy_terms = noisy_terms + kl * divergence
            total = total + noisy_terms
    if method in DUAL and mu > 0:
        penalty = spectral_penalty(model)
        parts["spectral"] = penalty.item()
        total = total + mu * penalty
    return total, parts
