"""``cimsim models``, ``tasks`` and ``noise-models``: what can be named on the command line."""

from __future__ import annotations

from cimsim.cli.common import (
    CacheDir,
    resolve_cache_dir,
    rich_console,
)


def models() -> None:
    """List the registered models with their size and source."""
    from rich.table import Table

    from cimsim.eval.models import list_models

    table = Table(title="models (also: any local HF directory or hub id)")
    for column in ("name", "kind", "params", "installed", "summary", "source"):
        table.add_column(column)
    for row in list_models():
        table.add_row(
            str(row["name"]),
            str(row["kind"]),
            f"{int(row['params']) / 1e6:.1f}M",  # type: ignore[call-overload]
            "yes" if row["installed"] else "no (make setup)",
            str(row["summary"]),
            str(row["source"]),
        )
    rich_console().print(table)


def tasks(
    cache_dir: CacheDir = None,
) -> None:
    """List the registered tasks with their sizes and sources."""
    from rich.table import Table

    from cimsim.eval.tasks import list_tasks

    table = Table(title="tasks (also: a local .jsonl/.csv with text,label)")
    for column in ("name", "labels", "train", "test", "source"):
        table.add_column(column)
    for row in list_tasks(cache_dir=resolve_cache_dir(cache_dir)):
        sizes = [
            str(row[k]) if row[k] is not None else "fetched on first use"
            for k in ("n_train", "n_test")
        ]
        table.add_row(str(row["name"]), ", ".join(row["label_names"]), *sizes, str(row["source"]))
    rich_console().print(table)


def noise_models() -> None:
    """List the noise models: what sigma means, its unit and the source."""
    from rich.table import Table

    from cimsim.noise_models import NOISE_MODELS

    table = Table(title="noise models (--noise-model)")
    for column in ("name", "sigma means", "unit", "source"):
        table.add_column(column)
    for cls in NOISE_MODELS.values():
        table.add_row(cls.name, cls.summary, cls.sigma_unit, cls.source)
    rich_console().print(table)
