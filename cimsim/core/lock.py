"""One writer per results folder: an exclusive lock file held for a run's lifetime.

``with holding(out_dir):`` creates ``out_dir/.cimsim.lock`` atomically (``O_CREAT | O_EXCL``)
with the holder's pid, host, start time and command line. A second process on the folder fails
at once with a :class:`CimsimError` naming the holder and touches nothing else; a lock left by a
process that is no longer alive on this host is taken over (the caller is told, through
``on_stale``). A lock from another host is never taken over: only its owner, or a person who
knows that run is dead, can remove it. When the run fails and the folder was created for it and
holds nothing but the lock, the folder is removed: a failed command leaves no empty results
folder behind.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cimsim.core.errors import CimsimError

LOCK_FILE = ".cimsim.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def read_holder(out_dir: Path) -> dict[str, Any] | None:
    """The lock's record, or None when the folder is not held (or the record is unreadable)."""
    try:
        holder = json.loads((out_dir / LOCK_FILE).read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


@contextlib.contextmanager
def holding(out_dir: Path, on_stale: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold ``out_dir``'s lock for the body (re-entrant within one process)."""
    path = out_dir / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
          "argv": sys.argv}  # fmt: skip
    holder = read_holder(out_dir)
    if holder is not None and (holder.get("pid"), holder.get("host")) == (me["pid"], me["host"]):
        yield  # this process holds it already (a run nested in a run)
        return
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CimsimError(f"cannot use {out_dir} as the results folder: {err.strerror}") from None
    _acquire(path, me, on_stale)
    failed = True
    try:
        yield
        failed = False
    finally:
        if read_holder(out_dir) == json.loads(json.dumps(me)):
            path.unlink(missing_ok=True)
        if failed and created and out_dir.exists() and not any(out_dir.iterdir()):
            shutil.rmtree(out_dir, ignore_errors=True)


def _acquire(path: Path, me: dict[str, Any], on_stale: Callable[[str], None] | None) -> None:
    for _ in range(3):  # a takeover races at most with another takeover
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_holder(path.parent)
            if holder is None:  # being written this instant, or damaged
                time.sleep(0.2)
                holder = read_holder(path.parent)
                if holder is None:
                    raise CimsimError(
                        f"{path.parent} is locked by {path} but it cannot be read; "
                        "remove it if no run uses the folder"
                    ) from None
            pid, host = holder.get("pid"), holder.get("host")
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
            if host == me["host"] and isinstance(pid, int) and not _alive(pid):
                if on_stale is not None:
                    on_stale(
                        f"taking over the lock of pid {pid} (started {since}), which has ended"
                    )
                path.unlink(missing_ok=True)
                continue
            raise CimsimError(
                f"{path.parent} is in use by pid {pid} on {host} since {since}; wait for it to "
                "finish or choose another --out"
            ) from None
        with os.fdopen(descriptor, "w") as handle:
            handle.write(json.dumps(me) + "\n")
        return
    raise CimsimError(f"could not take the lock {path}: other processes keep taking it")


def one_writer(function: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a ``run_*(…, out_dir, …, progress=None)`` so that it holds ``out_dir``'s lock
    for its whole run (a stale lock's takeover is logged through ``progress``, or stderr)."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        progress = bound.arguments.get("progress")
        tell = progress.log if progress is not None else _stderr
        with holding(Path(bound.arguments["out_dir"]), tell):
            return function(*args, **kwargs)

    return run


def _stderr(message: str) -> None:
    print(f"cimsim: {message}", file=sys.stderr)
