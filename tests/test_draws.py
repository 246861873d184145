"""Gaussian draws on several threads: torch's N(0, 1), independent pieces, machine-independent."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from cimsim.core.draws import MIN_SPLIT, STREAMS, normal_


def _fill(n: int, seed: int, std: float = 1.0) -> torch.Tensor:
    return normal_(torch.empty(n), torch.Generator().manual_seed(seed), std)


@pytest.fixture
def threads():
    """Runs the test body at a given thread count and restores the count."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_a_large_fill_is_standard_normal() -> None:
    z = _fill(2_000_003, seed=0).double()  # not a multiple of the piece count
    # 2M draws: the mean has s.e. 7e-4 and the std 5e-4; 5 s.e. bands.
    assert abs(z.mean().item()) < 5 * 7.1e-4
    assert z.std().item() == pytest.approx(1.0, abs=5 * 5e-4)
    # The whole shape, tails included: a Kolmogorov-Smirnov test, and the 4-sigma tail mass.
    assert stats.kstest(z[::7].numpy(), "norm").pvalue > 1e-3
    tail = (z.abs() > 4).double().mean().item()
    expected = 2 * stats.norm.sf(4)  # 6.3e-5: ~127 of 2M draws, s.e. ~11
    assert tail == pytest.approx(expected, rel=0.35)


def test_the_pieces_are_independent_streams() -> None:
    z = _fill(4 * MIN_SPLIT, seed=1).view(STREAMS, -1)  # (pieces, piece)
    correlation = torch.corrcoef(z)  # (pieces, pieces)
    off_diagonal = correlation[~torch.eye(STREAMS, dtype=torch.bool)]
    # 32768 pairs per estimate: s.e. 0.0055; no two pieces repeat or follow one another.
    assert off_diagonal.abs().max() < 5 / math.sqrt(MIN_SPLIT)
    assert not torch.equal(z[0], z[1])


def test_std_scales_the_draws() -> None:
    assert torch.equal(_fill(MIN_SPLIT * 2, seed=2, std=0.25), _fill(MIN_SPLIT * 2, seed=2) * 0.25)


@pytest.mark.parametrize("n", [100, MIN_SPLIT - 1, MIN_SPLIT, 3 * MIN_SPLIT + 5])
def test_same_generator_same_draws_whatever_the_thread_count(threads, n: int) -> None:
    threads(1)
    one = _fill(n, seed=3)
    threads(2)
    two = _fill(n, seed=3)
    assert torch.equal(one, two)
    assert not torch.equal(one, _fill(n, seed=4))


def test_fills_inside_inference_mode(threads) -> None:
    threads(2)
    with torch.inference_mode():
        out = torch.empty(4 * MIN_SPLIT)
        normal_(out, torch.Generator().manual_seed(5))
    assert out.std().item() == pytest.approx(1.0, abs=0.02)
