"""``cimsim continual``: grow LoRA branches task after task on a noisy analog base.

Registered on :data:`cimsim.cli.app` when :mod:`cimsim.cli` is imported (kept in its own module so
the CLI's files stay small).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cimsim.cli import (
    EXIT_INTERRUPTED,
    Lam,
    LearningRate,
    Mu,
    TrainDevice,
    TrainNoise,
    _cache_dir,
    _check_device,
    _console,
    _progress_bars,
    _train_config,
    app,
    path_value,
)
from cimsim.errors import CimsimError


def _names(option: str, value: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    if not names:
        raise CimsimError(f"{option} needs a comma-separated list, got '{value}'")
    return names


def default_dir(config: Any) -> Path:
    """``runs/continual-<model>-<n tasks>-<objective>-<hash of the config>``."""
    from cimsim.config import config_hash, to_dict

    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(config.model).name)
    grid = {k: v for k, v in to_dict(config).items() if k not in ("methods", "values")}
    return Path("runs") / (
        f"continual-{slug}-{len(config.tasks)}tasks-{config.objective}-{config_hash(grid)}"
    )


def run_and_report(config: Any, out_dir: Path, cache_dir: Path) -> None:
    """Run (or resume) behind progress bars, then print the AP/FT summary."""
    import pandas as pd

    from cimsim.continual.runner import run_continual
    from cimsim.results import read_points

    try:
        with _progress_bars() as progress:
            run_continual(config, out_dir, cache_dir=cache_dir, progress=progress)
    except KeyboardInterrupt:
        saved = len(read_points(out_dir / "points.jsonl"))
        print(
            f"cimsim: interrupted; {saved} finished evaluations are saved in {out_dir}; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    summary = pd.read_csv(out_dir / "summary.csv")
    console = _console()
    console.print(
        "AP (mean final accuracy) and FT (forgetting), mean ± std over chips and task orders; "
        "sigma in the card's unit:"
    )
    console.print(summary.round(3).to_string(index=False))
    for name in ("results.csv", "metrics.csv", "summary.csv", "matrices.png", "ap_ft.png"):
        console.print(f"written: {out_dir / name}")


@app.command()
def continual(
    tasks: Annotated[
        str | None,
        typer.Option(
            help="Task sequence, comma list (default: movie-yesno,tweets-yesno,bbc-yesno)."
        ),
    ] = None,
    methods: Annotated[
        str,
        typer.Option(
            help="Comma list of: gated (GainLoRA), seq-lora, sum, olora, joint (upper bound)."
        ),
    ] = "gated,seq-lora",
    objective: Annotated[
        str, typer.Option(help="Training objective of every stage: lora, noise-aware, halora.")
    ] = "lora",
    orders: Annotated[
        int, typer.Option(help="Task orders: the given one, its reverse, then seeded shuffles.")
    ] = 2,
    noise: Annotated[
        str,
        typer.Option(
            help="Sigmas of the evaluation chips (range syntax as in `sweep`); for 'channel', "
            "sigma is the noise std as a fraction of the channel's max |w|."
        ),
    ] = "0.05",
    seeds: Annotated[int, typer.Option(help="Chip instances per sigma.")] = 3,
    device: Annotated[str, typer.Option(help="Device card of the evaluation chips.")] = "channel",
    model: Annotated[
        str, typer.Option(help="Registered model, HF directory or hub id.")
    ] = "minilm",
    lam: Lam = 0.5,
    mu: Mu = 1e-3,
    train_device: TrainDevice = "channel",
    train_noise: TrainNoise = 0.05,
    epochs: Annotated[int, typer.Option(help="Training epochs per task.")] = 2,
    train_size: Annotated[int, typer.Option(help="Training examples per task (0: all).")] = 300,
    lr: LearningRate = 1e-3,
    test_size: Annotated[int, typer.Option(help="Test examples per task (0: all).")] = 200,
    max_length: Annotated[int, typer.Option(help="Tokens per input text.")] = 64,
    gate_energy: Annotated[
        float, typer.Option(help="gated: GPM energy threshold of the old-task subspaces.")
    ] = 0.999,
    gate_lr: Annotated[float, typer.Option(help="gated: learning rate of the newest gate.")] = 1e-3,
    gate_hidden: Annotated[
        int, typer.Option(help="gated: width of the gate MLP's hidden layer.")
    ] = 384,
    lam_orth: Annotated[float, typer.Option(help="olora: weight of the orthogonality loss.")] = 0.5,
    seed: Annotated[int, typer.Option(help="Root seed of inits, orders and chips.")] = 0,
    out: Annotated[
        Path | None, typer.Option(parser=path_value, help="Results folder (default under runs/).")
    ] = None,
    torch_device: Annotated[str, typer.Option(help="torch device.")] = "cpu",
    cache_dir: Annotated[
        Path | None, typer.Option(parser=path_value, help="Cache for models and data.")
    ] = None,
) -> None:
    """Continual learning on a noisy analog base: accuracy matrices, AP and FT per method."""
    from cimsim.continual.runner import DEFAULT_TASKS, ContinualConfig
    from cimsim.gates import GateConfig
    from cimsim.ranges import parse_range
    from cimsim.sweep import EvalConfig

    try:
        config = ContinualConfig(
            model=model,
            tasks=_names("--tasks", tasks) if tasks is not None else DEFAULT_TASKS,
            methods=_names("--methods", methods),
            objective=objective,
            orders=orders,
            card=device,
            values=tuple(parse_range(noise)),
            instances=seeds,
            seed=seed,
            train=_train_config(epochs, train_size, lr, seed, lam, mu, train_device, train_noise),
            gate=GateConfig(hidden=gate_hidden, energy=gate_energy, lr=gate_lr),
            lam_orth=lam_orth,
            eval=EvalConfig(test_size=test_size or None, max_length=max_length),
            compute_device=torch_device,
        )
    except ValueError as err:
        raise CimsimError(str(err)) from None
    _check_device(torch_device)
    run_and_report(config, out if out is not None else default_dir(config), _cache_dir(cache_dir))


PUBLISHED = (
    "results.csv", "metrics.csv", "summary.csv", "gates.csv", "matrices.png", "matrices.pdf",
    "ap_ft.png", "ap_ft.pdf", "config.json", "points.jsonl", "training.jsonl",
)  # fmt: skip


def run_experiment(
    experiment: Path, figures_dir: Path, out: Path | None, cache_dir: Path, device: str
) -> None:
    """``cimsim run`` for a continual experiment file: run, then publish to figures/<name>/."""
    import dataclasses
    import shutil

    from cimsim.continual.experiment import load_continual

    name, _, config = load_continual(experiment)
    config = dataclasses.replace(config, compute_device=device)
    _check_device(device)
    out_dir = out if out is not None else default_dir(config)
    run_and_report(config, out_dir, cache_dir)
    target = figures_dir / name
    target.mkdir(parents=True, exist_ok=True)
    for file in PUBLISHED:
        if (out_dir / file).exists():
            shutil.copy(out_dir / file, target / file)
    shutil.copy(experiment, target / "experiment.toml")
    print(f"published {target}/ (figures, data, config and the experiment file)")
