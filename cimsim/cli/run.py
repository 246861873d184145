"""``cimsim run``: run (or resume) an experiment file and publish it under figures/<name>/."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from cimsim.cli.common import (
    Address,
    CacheDir,
    RunDir,
    TorchDevice,
    check_torch_device,
    make_executor,
    path_value,
    resolve_cache_dir,
)
from cimsim.cli.reporting import (
    run_continual_and_report,
    run_sweep_and_report,
    run_tolerance_and_report,
)


def run(
    experiment: Annotated[
        Path, typer.Argument(parser=path_value, help="An experiment file (experiments/*.toml).")
    ],
    figures_dir: Annotated[
        Path,
        typer.Option(
            parser=path_value, help="Where figures/<name>/ receives the figure and its data."
        ),
    ] = Path("figures"),
    out: RunDir = None,
    cache_dir: CacheDir = None,
    device: TorchDevice = "cpu",
    executor: Annotated[
        str | None,
        typer.Option(help="local or ray; default: the file's [executor] kind (local if none)."),
    ] = None,
    address: Address = None,
    workers: Annotated[
        int | None, typer.Option(help="Ray workers (default: the file's, or 2).")
    ] = None,
    worker_cpus: Annotated[
        float | None, typer.Option(help="CPUs per Ray worker (default 1).")
    ] = None,
    worker_gpus: Annotated[
        float | None, typer.Option(help="GPUs per Ray worker (default 0).")
    ] = None,
) -> None:
    """Run (or resume) an experiment file's sweep, comparison or continual experiment and
    publish its figures, table and data under figures/<name>/."""
    from cimsim.continual.experiment import is_continual, load_continual, publish_continual
    from cimsim.core.io import read_toml
    from cimsim.runs.compare import default_compare_dir
    from cimsim.runs.experiments import executor_table, load_experiment, publish
    from cimsim.watermark.experiment import is_watermark

    check_torch_device(device)
    if is_watermark(experiment):
        run_watermark_file(experiment, figures_dir, out, resolve_cache_dir(cache_dir), device)
        return
    table = executor_table(experiment, read_toml(experiment, "experiment file"))
    given = {"kind": executor, "address": address, "workers": workers,
             "worker_cpus": worker_cpus, "worker_gpus": worker_gpus}  # fmt: skip
    table.update({k: v for k, v in given.items() if v is not None})
    runner = make_executor(
        table.get("kind", "local"), table.get("address"), table.get("workers", 2),
        table.get("worker_cpus", 1.0), table.get("worker_gpus", 0.0),
    )  # fmt: skip
    if is_continual(experiment):
        name, _, continual = load_continual(experiment)
        continual = dataclasses.replace(continual, compute_device=device)
        out_dir = out if out is not None else continual.default_out_dir()
        run_continual_and_report(continual, out_dir, resolve_cache_dir(cache_dir), runner)
        target = publish_continual(name, experiment, out_dir, figures_dir)
        print(f"published {target}/ (figures, data, config and the experiment file)")
        return

    spec = load_experiment(experiment)
    config = dataclasses.replace(spec.sweep, compute_device=device)
    card = config.resolve_card(spec.card)
    if spec.signoff is not None:
        tolerance = dataclasses.replace(spec.tolerance(), sweep=config)
        out = out if out is not None else tolerance.default_out_dir(card)
        run_tolerance_and_report(tolerance, card, out, resolve_cache_dir(cache_dir), runner)
        target = publish(spec, out, figures_dir)
        print(f"published {target}/ (figure, data, config and the experiment file)")
        return
    methods = spec.methods or None
    if out is None:
        out = (
            default_compare_dir(config, card, spec.methods)
            if methods
            else config.default_out_dir(card)
        )
    run_sweep_and_report(config, card, out, resolve_cache_dir(cache_dir), 0.01, methods, runner)
    target = publish(spec, out, figures_dir)
    print(f"published {target}/ (figure, data, config and the experiment file)")


def run_watermark_file(
    experiment: Path, figures_dir: Path, out: Path | None, cache_dir: Path, device: str
) -> None:
    """A watermark experiment: the kit (reused when it exists), the sweep, the published files."""
    import dataclasses

    from cimsim.cli.common import progress_bars
    from cimsim.cli.reporting import report_kit, report_sweep
    from cimsim.watermark.experiment import kit_matches, load_watermark, publish_watermark
    from cimsim.watermark.kit import embed_kit
    from cimsim.watermark.sweep import run_watermark_sweep

    name, _, kit_config, sweep_config = load_watermark(experiment)
    kit_config = dataclasses.replace(kit_config, compute_device=device)
    root = out if out is not None else Path("runs") / name
    kit_dir, sweep_dir = root / "kit", root / "sweep"
    with progress_bars() as progress:
        if not kit_matches(kit_dir, kit_config):
            embed_kit(kit_config, kit_dir, cache_dir=cache_dir, progress=progress)
        report_kit(kit_dir)
        run_watermark_sweep(kit_dir, sweep_config, sweep_dir, cache_dir=cache_dir, device=device,
                            progress=progress)  # fmt: skip
    report_sweep(sweep_dir)
    target = publish_watermark(name, experiment, kit_dir, sweep_dir, figures_dir)
    print(f"published {target}/ (figure, data, the kit's checks and the experiment file)")
