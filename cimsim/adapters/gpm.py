"""Gradient projection memory (GPM): remember the input subspace of old tasks, keep updates off it.

For a linear map ``y = W x``, an update ``dW`` leaves ``y`` unchanged on every input ``x`` in the
span of an orthonormal basis ``M`` (``d_in, k``) when ``dW M = 0``; projecting the update,
``dW <- dW - dW M M^T``, enforces that (Saha, Garg & Roy, "Gradient Projection Memory for
Continual Learning", ICLR 2021). The basis grows by task: the part of the new task's features
``R`` (``n, d``) that the basis does not yet explain is decomposed by SVD, and its leading
directions are added until the basis explains ``energy`` of ``||R||_F^2`` (GPM's threshold;
GainLoRA uses it for its gates).
"""

from __future__ import annotations

import torch

_FLOAT32_EPS = torch.finfo(torch.float32).eps  # bases are kept in float32


def extend_basis(basis: torch.Tensor | None, features: torch.Tensor, energy: float) -> torch.Tensor:
    """The basis (``d, k'``) that explains at least ``energy`` of ``features`` (``n, d``).

    ``basis`` (``d, k``, orthonormal columns) is kept as is and only extended.
    """
    if not 0 < energy <= 1:
        raise ValueError(f"energy must be in (0, 1], got {energy}")
    features = features.detach().to(torch.float64)  # (n, d)
    dim = features.shape[1]
    if basis is None:
        basis = features.new_zeros(dim, 0)  # (d, 0)
    basis = basis.to(features)
    total = features.square().sum()
    if total == 0 or basis.shape[1] == dim:
        return basis.float()
    explained = (features @ basis).square().sum()  # energy already inside the basis
    residual = features - features @ basis @ basis.T  # (n, d)
    _, singular, vh = torch.linalg.svd(residual, full_matrices=False)  # vh: (min(n, d), d)
    needed = energy * total - explained
    if needed <= 0:
        return basis.float()
    cumulative = singular.square().cumsum(0)  # (min(n, d),)
    k = int(torch.searchsorted(cumulative, needed).item()) + 1
    # Only directions the features really have: below this tolerance (relative to the features'
    # norm) singular values are the rounding of the float32 old basis and their vectors are
    # arbitrary, possibly inside that basis. Energy 1 asks for every direction, and rounding
    # puts ``needed`` just past the last real one.
    tolerance = total.sqrt() * max(residual.shape) * _FLOAT32_EPS
    rank = int((singular > tolerance).sum())
    k = min(k, rank, dim - basis.shape[1])
    if k == 0:
        return basis.float()
    new = vh[:k].T  # (d, k)
    # Re-orthonormalise against the old basis: residual directions are orthogonal to it up to
    # rounding, and the rounding would accumulate over many tasks.
    new = new - basis @ (basis.T @ new)
    new, _ = torch.linalg.qr(new)
    return torch.cat([basis, new], dim=1).float()  # (d, k + k')


def project_off(update: torch.Tensor, basis: torch.Tensor | None) -> torch.Tensor:
    """``update - update M M^T``: the part of ``update`` (``..., d``) that is blind to span M."""
    if basis is None or basis.shape[1] == 0:
        return update
    basis = basis.to(update)
    return update - (update @ basis) @ basis.T  # (..., d)
