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

The noisy base of step ``k`` is chip ``training_chip_seed(seed, k)``: fresh noise every step,
reproducible from the training seed. With ``reprogram_every = n > 1`` step ``k`` uses the chip
of step ``k - k % n`` (one chip for n steps, kept parked between them: cheaper, but the LoRA sees
n times fewer noise draws); the default 1 is HaLoRA's fresh noise at every step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import nn

from cimsim.adapters.lora import lora_layers
from cimsim.chip.cards import DeviceCard
from cimsim.chip.deploy import deploy, undeploy
from cimsim.eval.scoring import Scorer
from cimsim.eval.tasks import Task

OBJECTIVES = ("lora", "noise-aware", "halora")


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
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one step and its parts (``ideal``, ``noisy``, ``spectral``) for the log.
    ``card`` is the training noise's card at its sigma (unused, and may be None, for ``lora``)."""
    if method not in OBJECTIVES:
        raise ValueError(f"unknown training method '{method}'")
    if method != "lora" and card is None:
        raise ValueError(f"training method '{method}' needs the training noise's device card")
    parts: dict[str, float] = {}
    total = torch.zeros(())
    if method in ("lora", "halora"):
        ideal = nn.functional.cross_entropy(scorer(texts, task), labels)
        parts["ideal"] = ideal.item()
        total = ideal if method == "lora" else (1 - lam) * ideal
    if card is not None and method in ("noise-aware", "halora"):
        chip = training_chip_seed(seed, step - step % reprogram_every)
        deploy(model, card.noise, chip, card.tile)  # restores a parked chip with no work
        try:
            noisy = nn.functional.cross_entropy(scorer(texts, task), labels)
        finally:
            undeploy(model, release=False)  # parked: the next chip reuses the buffers
        parts["noisy"] = noisy.item()
        total = noisy if method == "noise-aware" else total + lam * noisy
    if method == "halora" and mu > 0:
        penalty = spectral_penalty(model)
        parts["spectral"] = penalty.item()
        total = total + mu * penalty
    return total, parts
