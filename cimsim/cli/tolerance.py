"""``cimsim tolerance``: the certified tolerance of a deployment, from chips judged against an
accuracy budget, with exact intervals; ``--require`` turns it into a gate for a design flow."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cimsim.cli.common import (
    EXIT_NOT_CERTIFIED,
    Adapter,
    Address,
    BatchSize,
    CacheDir,
    Card,
    Device,
    Digital,
    Dtype,
    Epochs,
    Executor,
    InPlace,
    LabelColumn,
    Lam,
    LearningRate,
    LoraAlpha,
    LoraRank,
    LoraTargets,
    MaxLength,
    Model,
    Mu,
    NoiseModelName,
    PromptTokens,
    RunDir,
    Task,
    TextColumn,
    TorchDeviceOrNone,
    TrainDevice,
    TrainNoise,
    TrainSize,
    WorkerCpus,
    WorkerGpus,
    Workers,
    check_torch_device,
    make_executor,
    resolve_cache_dir,
    sweep_config,
    train_config,
)
from cimsim.cli.reporting import (
    run_map_and_report,
    run_placement_and_report,
    run_tolerance_and_report,
)
from cimsim.core.errors import CimsimError


def tolerance(
    noise: Annotated[
        str | None,
        typer.Option(
            help="Search grid of sigma (range syntax as in `sweep`; default: the card's range). "
            "With --vary: one fixed sigma."
        ),
    ] = None,
    vary: Annotated[
        list[str] | None,
        typer.Option(
            help="Search another card field instead of sigma: FIELD=RANGE (see `sweep`). Given "
            "twice, a design-space map: one sign-off over the second field per value of the "
            "first, on the same chips (e.g. --vary adc_bits=5..8:4 --vary sigma=0.5..3:6)."
        ),
    ] = None,
    device: Device = None,
    card: Card = None,
    digital: Digital = None,
    torch_device: TorchDeviceOrNone = None,
    executor: Executor = "local",
    address: Address = None,
    workers: Workers = 2,
    worker_cpus: WorkerCpus = 1.0,
    worker_gpus: WorkerGpus = 0.0,
    dtype: Dtype = "float32",
    in_place: InPlace = False,
    noise_model: NoiseModelName = None,
    chips: Annotated[int, typer.Option(help="Chip instances judged (tens for a yield).")] = 50,
    budget: Annotated[
        float, typer.Option(help="Accuracy drop from digital a chip may have, in points.")
    ] = 1.0,
    target_yield: Annotated[
        float, typer.Option("--yield", help="Fraction of chips that must meet the budget.")
    ] = 0.9,
    confidence: Annotated[float, typer.Option(help="Confidence of every bound.")] = 0.95,
    search: Annotated[
        str,
        typer.Option(help="threshold (each common chip's threshold) or grid (every value)."),
    ] = "threshold",
    chips_mode: Annotated[
        str,
        typer.Option(help="common (one seed per chip at every value) or independent."),
    ] = "common",
    early_stop: Annotated[
        bool,
        typer.Option(
            help="Stop a chip's evaluation once its decision on the full test set is known."
        ),
    ] = True,
    require: Annotated[
        float | None,
        typer.Option(
            help="Exit with code 3 unless the certified tolerance reaches this value "
            "(at least it; at most it for bits and levels)."
        ),
    ] = None,
    place_from: Annotated[
        Path | None,
        typer.Option(
            help="A `cimsim sensitivity` folder: keep its most recovering groups digital, one "
            "more per sign-off, until the certified tolerance reaches --require."
        ),
    ] = None,
    place_by: Annotated[
        str, typer.Option(help="The sensitivity grouping --place-from ranks: kind, block, module.")
    ] = "kind",
    place_max: Annotated[int, typer.Option(help="Most groups --place-from keeps digital.")] = 4,
    model: Model = "minilm",
    task: Task = "bbc-news",
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    method: Annotated[
        str, typer.Option(help="How LoRA is trained: lora, noise-aware, halora, auto-halora, none.")
    ] = "lora",
    lam: Lam = 0.5,
    mu: Mu = 1e-3,
    train_device: TrainDevice = "channel",
    train_noise: TrainNoise = 0.05,
    adapter: Adapter = None,
    lora_r: LoraRank = 8,
    lora_alpha: LoraAlpha = 16.0,
    lora_targets: LoraTargets = "",
    epochs: Epochs = 2,
    train_size: TrainSize = 600,
    lr: LearningRate = 1e-3,
    test_size: Annotated[
        int, typer.Option(help="Test examples (stratified subsample; 0: the whole split).")
    ] = 0,
    max_length: MaxLength = 64,
    prompt_tokens: PromptTokens = "joined",
    batch_size: BatchSize = 64,
    seed: Annotated[int, typer.Option(help="Root seed of chips, subsamples and training.")] = 0,
    out: RunDir = None,
    cache_dir: CacheDir = None,
) -> None:
    """Certify a tolerance: per-chip pass/fail against the budget (paired with digital on the
    same examples), the yield curve with Clopper-Pearson intervals, the largest value whose
    yield lower bound reaches the target, and the test set's resolution."""
    from cimsim.runs.tolerance import SignoffConfig, ToleranceConfig

    vary = vary or []
    if len(vary) > 2:
        raise CimsimError("--vary is given once (a field) or twice (a map of two fields)")
    config, chosen = sweep_config(
        model=model, task=task, method=method, adapter=adapter, device=device, card=card,
        torch_device=torch_device, noise_model=noise_model, noise=noise,
        vary=vary[-1] if vary else None,
        instances=chips, seed=seed, engine="cimsim", lora_r=lora_r, lora_alpha=lora_alpha,
        lora_targets=lora_targets,
        train=train_config(epochs, train_size, lr, seed, lam, mu, train_device, train_noise),
        test_size=test_size, max_length=max_length, batch_size=batch_size, digital=digital,
        prompt_tokens=prompt_tokens,
        dtype=dtype, in_place=in_place, text_column=text_column, label_column=label_column,
    )  # fmt: skip
    signoff = SignoffConfig(
        budget=budget / 100,
        target_yield=target_yield,
        confidence=confidence,
        search=search,
        chips=chips_mode,
        early_stop=early_stop,
    )
    full = ToleranceConfig(sweep=config, signoff=signoff)
    check_torch_device(config.compute_device)
    resolved = config.resolve_card(chosen)
    out_dir = out if out is not None else full.default_out_dir(resolved)
    if len(vary) == 2:
        from cimsim.runs.sweep import parse_axis

        outer, outer_values, _ = parse_axis(chosen, None, vary[0])
        if place_from is not None or require is not None:
            raise CimsimError("a map takes neither --place-from nor --require")
        run_map_and_report(
            full, resolved, outer, outer_values, out_dir, resolve_cache_dir(cache_dir)
        )
        return
    if place_from is not None:
        if require is None:
            raise CimsimError("--place-from needs --require VALUE: the tolerance to reach")
        reached = run_placement_and_report(
            full, resolved, out_dir, resolve_cache_dir(cache_dir), place_from, require,
            place_by, place_max,
        )  # fmt: skip
        if not reached:
            raise typer.Exit(EXIT_NOT_CERTIFIED)
        return
    runner = make_executor(executor, address, workers, worker_cpus, worker_gpus)
    report = run_tolerance_and_report(full, resolved, out_dir, resolve_cache_dir(cache_dir), runner)
    if require is not None:
        reached = report.certified is not None and (
            report.certified.value <= require
            if report.larger_is_better
            else report.certified.value >= require
        )
        if not reached:
            shown = "none" if report.certified is None else f"{report.certified.value:.4g}"
            print(
                f"cimsim: certified tolerance {shown} does not reach --require {require:g}",
                file=sys.stderr,
            )
            raise typer.Exit(EXIT_NOT_CERTIFIED)
