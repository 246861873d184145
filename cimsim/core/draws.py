"""Gaussian draws for the engine, filled on several CPU threads.

torch's CPU generator (Mersenne Twister, then Box-Muller) fills about 4 ns per N(0, 1) draw on
one thread, and a tile periphery needs one draw per output per tile on every forward pass, a PCM
chip two per weight: the draws, not the arithmetic, set the engine's speed. They are independent,
so a large fill is cut into ``STREAMS`` equal pieces, each drawn by its own Mersenne Twister,
seeded from the caller's generator, and the pieces are filled on up to ``torch.get_num_threads()``
threads (torch releases the GIL inside ``normal_``).

Determinism: the cut depends only on the tensor's size, never on the thread count, so one
generator state gives the same numbers on any machine. Each piece is an ordinary
``Tensor.normal_`` fill, so the distribution is torch's own N(0, 1); the streams are seeded with
independent 62-bit seeds, the usual way of running Mersenne Twisters side by side. Other devices
(CUDA's counter-based generator is fast) fill in one call.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

STREAMS = 4
"""Pieces a large CPU fill is cut into (fixed, so results do not depend on the machine)."""
MIN_SPLIT = 1 << 15
"""Smallest fill worth cutting: below it, thread hand-over costs more than it saves."""

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_local = threading.local()


@contextlib.contextmanager
def seeded_global_rng(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Inside the block torch's global generator is seeded with ``seed``; after it, the caller's
    state is back. For code that draws only from the global generator (module inits, dropout,
    aihwkit); a CUDA ``device``'s generator is forked too."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def stream_seed(generator: torch.Generator) -> int:
    """A 62-bit seed for a new stream, drawn from ``generator`` (advances it)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))


def normal_(out: torch.Tensor, generator: torch.Generator | None, std: float = 1.0) -> torch.Tensor:
    """Fill the contiguous ``out`` with N(0, std^2) draws decided by ``generator`` alone (None:
    torch's default generator)."""
    n = out.numel()
    if out.device.type != "cpu" or n < MIN_SPLIT:
        return out.normal_(0.0, std, generator=generator)
    seeds = torch.randint(0, 2**62, (STREAMS,), generator=generator).tolist()
    streams = _stream_generators()
    flat = out.view(-1)
    size = -(-n // STREAMS)  # ceil: equal pieces, the last one shorter
    fills = [
        functools.partial(
            flat[k * size : (k + 1) * size].normal_, 0.0, std, generator=streams[k].manual_seed(s)
        )
        for k, s in enumerate(seeds)
    ]
    run_parallel(fills)
    return out


def normal_each_(pairs: Sequence[tuple[torch.Tensor, torch.Generator]], std: float = 1.0) -> None:
    """Fill each tensor with N(0, std^2) from its own generator, the fills side by side."""
    fills = [functools.partial(t.normal_, 0.0, std, generator=g) for t, g in pairs]
    run_parallel(fills, parallel=all(t.device.type == "cpu" for t, _ in pairs))


def run_parallel(jobs: Sequence[Callable[[], object]], parallel: bool = True) -> None:
    """Run independent torch jobs on up to ``torch.get_num_threads()`` threads; each thread
    runs under the caller's grad and inference modes."""
    workers = min(torch.get_num_threads(), len(jobs)) if parallel else 1
    if workers <= 1:
        for job in jobs:
            job()
        return
    inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

    def run(share: Sequence[Callable[[], object]]) -> None:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            for job in share:
                job()

    futures = [_executor().submit(run, jobs[w::workers]) for w in range(1, workers)]
    run(jobs[0::workers])
    for future in futures:
        future.result()


def _stream_generators() -> list[torch.Generator]:
    """This thread's CPU generators for the pieces (re-seeded on every fill: cheaper than new
    ones; per thread, so concurrent callers never share one)."""
    streams = getattr(_local, "streams", None)
    if streams is None:
        streams = _local.streams = [torch.Generator() for _ in range(STREAMS)]
    return streams


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="draws")
        return _pool
