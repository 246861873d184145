"""``cimsim continual``: grow LoRA branches task after task on a noisy analog base."""

from __future__ import annotations

from typing import Annotated

import typer

from cimsim.cli.common import (
    Address,
    CacheDir,
    Executor,
    Lam,
    LearningRate,
    MaxLength,
    Mu,
    RunDir,
    TorchDevice,
    TrainDevice,
    TrainNoise,
    WorkerCpus,
    WorkerGpus,
    Workers,
    check_torch_device,
    make_executor,
    resolve_cache_dir,
    train_config,
)
from cimsim.cli.reporting import run_continual_and_report
from cimsim.core.errors import CimsimError


def _names(option: str, value: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    if not names:
        raise CimsimError(f"{option} needs a comma-separated list, got '{value}'")
    return names


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
        str,
        typer.Option(
            help="Training objective of every stage: lora, noise-aware, halora, auto-halora."
        ),
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
    max_length: MaxLength = 64,
    gate_energy: Annotated[
        float, typer.Option(help="gated: GPM energy threshold of the old-task subspaces.")
    ] = 0.999,
    gate_lr: Annotated[float, typer.Option(help="gated: learning rate of the newest gate.")] = 1e-3,
    gate_hidden: Annotated[
        int, typer.Option(help="gated: width of the gate MLP's hidden layer.")
    ] = 384,
    lam_orth: Annotated[float, typer.Option(help="olora: weight of the orthogonality loss.")] = 0.5,
    seed: Annotated[int, typer.Option(help="Root seed of inits, orders and chips.")] = 0,
    out: RunDir = None,
    torch_device: TorchDevice = "cpu",
    executor: Executor = "local",
    address: Address = None,
    workers: Workers = 2,
    worker_cpus: WorkerCpus = 1.0,
    worker_gpus: WorkerGpus = 0.0,
    cache_dir: CacheDir = None,
) -> None:
    """Continual learning on a noisy analog base: accuracy matrices, AP and FT per method."""
    from cimsim.adapters.gates import GateConfig
    from cimsim.continual.config import DEFAULT_TASKS, ContinualConfig
    from cimsim.core.ranges import parse_range
    from cimsim.eval.config import EvalConfig

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
            train=train_config(epochs, train_size, lr, seed, lam, mu, train_device, train_noise),
            gate=GateConfig(hidden=gate_hidden, energy=gate_energy, lr=gate_lr),
            lam_orth=lam_orth,
            eval=EvalConfig(test_size=test_size or None, max_length=max_length),
            compute_device=torch_device,
        )
    except ValueError as err:
        raise CimsimError(str(err)) from None
    check_torch_device(torch_device)
    out_dir = out if out is not None else config.default_out_dir()
    runner = make_executor(executor, address, workers, worker_cpus, worker_gpus)
    run_continual_and_report(config, out_dir, resolve_cache_dir(cache_dir), runner)
