"""``cimsim run``: run (or resume) an experiment file and publish it under figures/<name>/."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from cimsim.cli.common import (
    CacheDir,
    RunDir,
    TorchDevice,
    check_torch_device,
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
) -> None:
    """Run (or resume) an experiment file's sweep, comparison or continual experiment and
    publish its figures, table and data under figures/<name>/."""
    from cimsim.continual.experiment import is_continual, load_continual, publish_continual
    from cimsim.runs.compare import default_compare_dir
    from cimsim.runs.experiments import load_experiment, publish

    check_torch_device(device)
    if is_continual(experiment):
        name, _, continual = load_continual(experiment)
        continual = dataclasses.replace(continual, compute_device=device)
        out_dir = out if out is not None else continual.default_out_dir()
        run_continual_and_report(continual, out_dir, resolve_cache_dir(cache_dir))
        target = publish_continual(name, experiment, out_dir, figures_dir)
        print(f"published {target}/ (figures, data, config and the experiment file)")
        return

    spec = load_experiment(experiment)
    config = dataclasses.replace(spec.sweep, compute_device=device)
    card = config.resolve_card(spec.card)
    if spec.signoff is not None:
        tolerance = dataclasses.replace(spec.tolerance(), sweep=config)
        out = out if out is not None else tolerance.default_out_dir(card)
        run_tolerance_and_report(tolerance, card, out, resolve_cache_dir(cache_dir))
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
    run_sweep_and_report(config, card, out, resolve_cache_dir(cache_dir), 0.01, methods)
    target = publish(spec, out, figures_dir)
    print(f"published {target}/ (figure, data, config and the experiment file)")
