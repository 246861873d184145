"""Continual-learning metrics from an accuracy matrix.

``R[i, j]`` is the accuracy on task ``j`` after training on tasks ``0..i`` (``T x T``; entries for
tasks not yet seen, ``j > i``, may be NaN and are never read).

* AP (average performance): ``mean_j R[T-1, j]``, the mean final accuracy over all tasks.
* FT (forgetting): ``mean over j < T-1 of (max_{j <= i < T-1} R[i, j] - R[T-1, j])``, how much
  each old task lost from its best earlier accuracy to the end (Chaudhry et al., 2018; the
  definition GainLoRA reports). NaN for a single task.
"""

from __future__ import annotations

import numpy as np


def _square(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"an accuracy matrix is square and non-empty, got shape {matrix.shape}")
    return matrix


def average_performance(matrix: np.ndarray) -> float:
    """AP: the mean of the last row."""
    return float(np.mean(_square(matrix)[-1]))


def forgetting(matrix: np.ndarray) -> float:
    """FT: mean over old tasks of (best accuracy before the last task - final accuracy)."""
    matrix = _square(matrix)
    last = matrix.shape[0] - 1
    if last == 0:
        return float("nan")
    drops = [matrix[j:last, j].max() - matrix[last, j] for j in range(last)]
    return float(np.mean(drops))
