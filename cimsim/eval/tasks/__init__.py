"""The task registry: named tasks, local files, and one way to load either.

Registered tasks (``bbc-news`` is the default):

- ``bbc-news``: BBC News, 5 topics (:mod:`cimsim.eval.tasks.bbc`).
- ``movie``, ``tweets``, ``amazon``, ``nyt``: binary sentiment from the VADER human-rated snippets,
  and ``tweets-intensity`` (neutral vs intense tweets, either polarity),
  fetched once into the cache (:mod:`cimsim.eval.tasks.vader`).
- ``movie-yesno``, ``tweets-yesno``, ``bbc-yesno``: yes/no questions over those sources, sharing
  one answer space (:mod:`cimsim.eval.tasks.yesno`; the default continual sequence).

Any ``.jsonl``/``.csv``/``.tsv`` path is a task too (:mod:`cimsim.eval.tasks.local`). This package
imports neither torch nor transformers, so listing tasks stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cimsim.core.errors import CimsimError
from cimsim.core.paths import default_cache_dir
from cimsim.eval.tasks import bbc, vader, yesno
from cimsim.eval.tasks.base import Split, Task, TaskSpec, make_task
from cimsim.eval.tasks.local import is_local_file_name, load_local

__all__ = [
    "DEFAULT_TASK",
    "TASKS",
    "Split",
    "Task",
    "TaskSpec",
    "list_tasks",
    "load_task",
    "make_task",
]

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in (bbc.SPEC, *vader.SPECS, *yesno.SPECS)}
DEFAULT_TASK = bbc.NAME


def load_task(
    name_or_path: str,
    *,
    cache_dir: Path | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
) -> Task:
    """A registered task by name, else the task in a ``.jsonl``/``.csv``/``.tsv`` file with
    ``text``/``label`` columns, else a Hugging Face ``datasets`` source (a ``load_from_disk``
    folder, a ``.json``/``.parquet`` file, or any of these files with other columns named by
    ``text_column``/``label_column``; :mod:`cimsim.eval.tasks.hfdata`).

    ``cache_dir`` (default :func:`cimsim.core.paths.default_cache_dir`) is where fetched data is
    kept.
    """
    from cimsim.eval.tasks.hfdata import is_datasets_source, load_datasets_task

    spec = TASKS.get(name_or_path)
    columns = text_column is not None or label_column is not None
    if spec is not None:
        if columns:
            raise CimsimError(f"task '{name_or_path}' is registered: it takes no column options")
        return spec.load(cache_dir if cache_dir is not None else default_cache_dir())
    if is_local_file_name(name_or_path) and not columns:
        return load_local(name_or_path)
    if is_datasets_source(name_or_path):
        return load_datasets_task(name_or_path, text_column or "text", label_column or "label")
    raise CimsimError(
        f"unknown task '{name_or_path}'; choose one of: {', '.join(TASKS)} "
        "or give a .jsonl/.csv/.tsv file with text,label columns, a .parquet/.json file or a "
        "datasets.save_to_disk folder"
    )


def list_tasks(*, cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """One row per registered task: name, n_labels, label_names, n_train, n_test, source.

    ``n_train`` and ``n_test`` are None when the data would need a download (never triggered here)
    or its package is missing.
    """
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    rows = []
    for spec in TASKS.values():
        task = spec.load(cache) if spec.is_available(cache) else None
        rows.append(
            {
                "name": spec.name,
                "summary": spec.summary,
                "n_labels": len(spec.label_names),
                "label_names": list(spec.label_names),
                "n_train": len(task.train) if task is not None else None,
                "n_test": len(task.test) if task is not None else None,
                "source": spec.source,
            }
        )
    return rows
