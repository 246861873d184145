"""Distributed evaluation of a sweep's chips on Ray; the driver stays the only writer.

``RayExecutor(address=None, workers=N)`` starts (or joins, with ``address``) a Ray cluster and
``points(config, card, train_card, cache_dir, pending)`` yields ``(row, packed correct)`` for
every pending (value, instance) as workers finish them. Each worker is an actor that loads the
deployment once (model, task, adapter from the shared cache, which the driver has filled) and
evaluates many points with the same :func:`cimsim.runs.sweep.chip_point` the local loop calls,
so a point's numbers do not depend on where it ran (chips are seeded per point). At most two
points per worker are in flight. A worker that dies is restarted and its points are retried
(``max_restarts``, ``max_task_retries``): at-least-once, so the driver keeps the first row of a
point and drops a repeat (:func:`cimsim.runs.sweep.run_sweep`).

Ray is an optional extra (``pip install 'cimsim[ray]'``). On a cluster the cache folder must be
one every node can read (a shared file system), since workers load the adapter from it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cimsim.core.errors import CimsimError

# Test hook: "VALUE,INSTANCE,MARKER" makes the worker evaluating that point exit abruptly once
# (MARKER is created first), as a node failure would.
_DIE_ON = "CIMSIM_TEST_WORKER_DIES_ON"


class _Worker:
    def __init__(self, config: Any, card: Any, train_card: Any, cache_dir: str) -> None:
        from cimsim.core.progress import Silent
        from cimsim.runs.sweep import load_deployment

        self.config, self.card = config, card
        self.deployment = load_deployment(config, train_card, Path(cache_dir), Silent())

    def point(self, value: float, instance: int) -> tuple[dict[str, Any], str]:
        from cimsim.runs.sweep import chip_point

        hook = os.environ.get(_DIE_ON)
        if hook:
            at_value, at_instance, marker = hook.split(",", 2)
            if (float(at_value), int(at_instance)) == (value, instance) and not Path(
                marker
            ).exists():
                Path(marker).touch()
                os._exit(1)
        return chip_point(self.deployment, self.config, self.card, value, instance)


class RayExecutor:
    """Evaluate points on Ray actors (``workers`` of them, ``cpus``/``gpus`` each)."""

    def __init__(
        self,
        address: str | None = None,
        workers: int = 2,
        cpus: float = 1.0,
        gpus: float = 0.0,
        max_restarts: int = 3,
    ) -> None:
        if workers < 1:
            raise CimsimError(f"--workers must be at least 1, got {workers}")
        self.address, self.workers, self.cpus, self.gpus = address, workers, cpus, gpus
        self.max_restarts = max_restarts

    def _ray(self) -> Any:
        try:
            import ray
        except ImportError:
            raise CimsimError("--executor ray needs Ray: pip install 'cimsim[ray]'") from None
        if not ray.is_initialized():
            env = {_DIE_ON: os.environ[_DIE_ON]} if _DIE_ON in os.environ else {}
            ray.init(
                address=self.address, include_dashboard=False, log_to_driver=False,
                runtime_env={"env_vars": env} if env else None,
            )  # fmt: skip
        return ray

    def points(
        self, config: Any, card: Any, train_card: Any, cache_dir: Path, pending: list
    ) -> Iterator[tuple[dict[str, Any], str]]:
        ray = self._ray()
        actor = ray.remote(
            num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=self.max_restarts,
            max_task_retries=self.max_restarts,
        )(_Worker)  # fmt: skip
        pool = [actor.remote(config, card, train_card, str(cache_dir)) for _ in range(self.workers)]
        queue = list(pending)
        running: dict[Any, int] = {}  # object ref -> worker index

        def submit(index: int) -> None:
            value, instance = queue.pop(0)
            running[pool[index].point.remote(value, instance)] = index

        for index in range(len(pool)):
            for _ in range(2):
                if queue:
                    submit(index)
        try:
            while running:
                ready, _ = ray.wait(list(running), num_returns=1)
                index = running.pop(ready[0])
                yield ray.get(ready[0])
                if queue:
                    submit(index)
        finally:
            for worker in pool:
                ray.kill(worker)
