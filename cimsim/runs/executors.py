"""Distributed evaluation on Ray; the driver stays the only writer of the results folder.

``RayExecutor(address=None, workers=N).map(setup, args, work, items)`` starts (or joins, with
``address``) a Ray cluster, makes ``workers`` actors that each call ``setup(*args)`` once (load
the model, task and adapter) and yields ``work(state, item)`` for every item as the actors
finish them, at most two items per actor in flight. The commands hand it their own units:

* ``sweep``/``compare``: a point (value, chip instance), :func:`cimsim.runs.sweep.chip_point`;
* ``tolerance``: a chip's whole search, :meth:`cimsim.runs.tolerance.Judge.chip`;
* ``continual``: one method on one task order, trained and evaluated on every chip.

Each is the function the local loop calls, so a result does not depend on where it ran (chips
are seeded per point). ``setup``/``work`` must be module-level functions (Ray imports them by
name on the workers). A worker that dies is restarted and its items are retried
(``max_restarts``, ``max_task_retries``): at-least-once, so the driver keeps the first result of
an item and drops a repeat.

Ray is an optional extra (``pip install 'cimsim[ray]'``). On a cluster the cache folder must be
one every node can read (a shared file system), since workers load the adapter from it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cimsim.core.errors import CimsimError

# Test hook: "ITEM,MARKER" (ITEM the item's fields joined by commas, e.g. "0.8,1" for a sweep
# point) makes the worker given that item exit abruptly once (MARKER is created first), as a
# node failure would.
_DIE_ON = "CIMSIM_TEST_WORKER_DIES_ON"


def item_key(item: Any) -> str:
    """An item as the test hook names it."""
    return ",".join(map(str, item)) if isinstance(item, tuple) else str(item)


class _Worker:
    def __init__(self, setup: Callable[..., Any], args: tuple) -> None:
        self.state = setup(*args)

    def run(self, work: Callable[[Any, Any], Any], item: Any) -> Any:
        hook = os.environ.get(_DIE_ON)
        if hook:
            at, marker = hook.rsplit(",", 1)
            if at == item_key(item) and not Path(marker).exists():
                Path(marker).touch()
                os._exit(1)
        return work(self.state, item)


class RayExecutor:
    """Run items on Ray actors (``workers`` of them, ``cpus``/``gpus`` each)."""

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
        if cpus <= 0 or gpus < 0:
            raise CimsimError(f"--worker-cpus must be > 0, --worker-gpus >= 0; got {cpus}, {gpus}")
        self.address, self.workers, self.cpus, self.gpus = address, workers, cpus, gpus
        self.max_restarts = max_restarts

    def _ray(self) -> Any:
        try:
            import ray
        except ImportError:
            raise CimsimError("--executor ray needs Ray: pip install 'cimsim[ray]'") from None
        if not ray.is_initialized():
            env = {_DIE_ON: os.environ[_DIE_ON]} if _DIE_ON in os.environ else {}
            try:
                ray.init(
                    address=self.address, include_dashboard=False, log_to_driver=False,
                    runtime_env={"env_vars": env} if env else None,
                )  # fmt: skip
            except ConnectionError as err:
                raise CimsimError(f"--address {self.address}: no Ray cluster ({err})") from None
        return ray

    def map(
        self,
        setup: Callable[..., Any],
        args: tuple,
        work: Callable[[Any, Any], Any],
        items: list,
        next_item: Callable[[list], Any] | None = None,
    ) -> Iterator[Any]:
        """``work(state, item)`` for every item, in the order they finish. ``next_item`` (given
        the items not yet sent) may rewrite an item just before it is sent, from what the
        results so far taught the caller (a sign-off's search start)."""
        ray = self._ray()
        actor = ray.remote(
            num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=self.max_restarts,
            max_task_retries=self.max_restarts,
        )(_Worker)  # fmt: skip
        pool = [actor.remote(setup, args) for _ in range(min(self.workers, len(items)))]
        queue = list(items)
        running: dict[Any, int] = {}  # object ref -> worker index

        def submit(index: int) -> None:
            item = next_item(queue) if next_item is not None else queue[0]
            queue.pop(0)
            running[pool[index].run.remote(work, item)] = index

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
