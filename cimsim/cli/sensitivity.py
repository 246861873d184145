"""``cimsim sensitivity``: which base layers a chip's accuracy loss comes from (one group analog
at a time, one digital at a time, and a redraw of each group on the chips that miss the
budget)."""

from __future__ import annotations

from typing import Annotated

import typer

from cimsim.cli.common import (
    Adapter,
    BatchSize,
    CacheDir,
    Card,
    Device,
    Epochs,
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
    TorchDeviceOrNone,
    TrainDevice,
    TrainNoise,
    TrainSize,
    Vary,
    check_budget,
    check_torch_device,
    resolve_cache_dir,
    sweep_config,
    train_config,
)
from cimsim.cli.reporting import run_sensitivity_and_report


def sensitivity(
    noise: Annotated[
        str | None,
        typer.Option(help="Sigma value(s) to analyse (range syntax as in `sweep`)."),
    ] = None,
    vary: Vary = None,
    device: Device = None,
    card: Card = None,
    torch_device: TorchDeviceOrNone = None,
    noise_model: NoiseModelName = None,
    groups: Annotated[
        str,
        typer.Option(
            help="Comma-separated groupings: kind (q, k, v, o, mlp_in, mlp_out), block, module, "
            "and re:PATTERN for a group of your own (a regular expression over layer names, "
            "without commas)."
        ),
    ] = "kind,block",
    seeds: Annotated[int, typer.Option(help="Chip instances (the sweep's chips).")] = 3,
    budget: Annotated[
        float,
        typer.Option(help="Chips losing more than this many points are diagnosed (redraws)."),
    ] = 1.0,
    diagnose: Annotated[
        bool, typer.Option(help="Redraw each group of the chips that miss the budget.")
    ] = True,
    model: Model = "minilm",
    task: Task = "bbc-news",
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
    ] = 300,
    max_length: MaxLength = 64,
    prompt_tokens: PromptTokens = "joined",
    batch_size: BatchSize = 64,
    seed: Annotated[int, typer.Option(help="Root seed of chips, subsamples and training.")] = 0,
    out: RunDir = None,
    cache_dir: CacheDir = None,
) -> None:
    """Rank layer groups by the accuracy they cost on the sweep's chips: the drop with only
    the group analog, the recovery with only it digital, and, for a chip that misses the
    budget, the groups whose redraw alone brings it back."""
    from cimsim.runs.sensitivity import SensitivityConfig

    config, chosen = sweep_config(
        model=model, task=task, method=method, adapter=adapter, device=device, card=card,
        torch_device=torch_device, noise_model=noise_model, noise=noise, vary=vary,
        instances=seeds, seed=seed, engine="cimsim", lora_r=lora_r, lora_alpha=lora_alpha,
        lora_targets=lora_targets,
        train=train_config(epochs, train_size, lr, seed, lam, mu, train_device, train_noise),
        test_size=test_size, max_length=max_length, batch_size=batch_size,
        prompt_tokens=prompt_tokens,
    )  # fmt: skip
    check_budget(budget)
    full = SensitivityConfig(
        sweep=config,
        groups=tuple(g.strip() for g in groups.split(",") if g.strip()),
        budget=budget / 100,
        diagnose=diagnose,
    )
    check_torch_device(config.compute_device)
    resolved = config.resolve_card(chosen)
    out_dir = out if out is not None else full.default_out_dir(resolved)
    run_sensitivity_and_report(full, resolved, out_dir, resolve_cache_dir(cache_dir))
