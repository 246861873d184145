"""``cimsim sweep`` and ``cimsim compare``: accuracy against a card field over chip instances,
for one training method or several on the same chips."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from cimsim.cli.common import (
    TORCH_DEVICE,
    CacheDir,
    Lam,
    LearningRate,
    MaxLength,
    Mu,
    TrainDevice,
    TrainNoise,
    check_budget,
    check_torch_device,
    one_of,
    path_value,
    resolve_cache_dir,
    train_config,
)
from cimsim.cli.reporting import run_sweep_and_report
from cimsim.core.errors import CimsimError


def sweep(
    ctx: typer.Context,
    noise: Annotated[
        str | None,
        typer.Option(
            help="Values of sigma, the programming-noise level: a..b (10 points), a..b:n, "
            "a..b/step or a,b,c; default: the card's range (0.01..0.1 for 'channel', where sigma "
            "is the noise std as a fraction of the output channel's max |w|: "
            "w' = w + sigma*max|W[row,:]|*z, once per chip). With --vary: one fixed sigma."
        ),
    ] = None,
    vary: Annotated[
        str | None,
        typer.Option(
            help="Sweep another card field instead of sigma: FIELD=RANGE, e.g. adc_bits=4..8:5, "
            "drift_time_s=1,3600,86400, stuck_at_gmax_rate=0..0.02:5 (see `cimsim devices show`)."
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            help="Device card (name or .toml; see `cimsim devices`), or a torch device "
            "(cpu, cuda, cuda:1, mps) to run on."
        ),
    ] = None,
    card: Annotated[str | None, typer.Option(help="Device card, explicitly.")] = None,
    torch_device: Annotated[str | None, typer.Option(help="torch device, explicitly.")] = None,
    noise_model: Annotated[
        str | None,
        typer.Option(help="Shorthand for the shipped card of a noise model (cimsim noise-models)."),
    ] = None,
    engine: Annotated[
        str, typer.Option(help="cimsim (fast) or aihwkit (its analog tile, to cross-check).")
    ] = "cimsim",
    seeds: Annotated[int, typer.Option(help="Chip instances (programming events) per value.")] = 3,
    model: Annotated[
        str, typer.Option(help="Registered model, local HF directory or hub id.")
    ] = "minilm",
    task: Annotated[
        str, typer.Option(help="Registered task or a .jsonl/.csv with text,label.")
    ] = "bbc-news",
    method: Annotated[
        str | None,
        typer.Option(
            "--method",
            "--methods",
            help="How LoRA is trained: lora (ideal base), noise-aware (a fresh noisy base every "
            "step), halora ((1-lam) ideal + lam noisy + mu spectral); none: base model only. "
            "A comma list compares methods on the same chips (default for `compare`: "
            "lora,noise-aware,halora; for `sweep`: lora).",
        ),
    ] = None,
    lam: Lam = 0.5,
    mu: Mu = 1e-3,
    train_device: TrainDevice = "channel",
    train_noise: TrainNoise = 0.05,
    adapter: Annotated[
        Path | None,
        typer.Option(
            parser=path_value, help="Evaluate this peft LoRA adapter instead of training."
        ),
    ] = None,
    lora_r: Annotated[int, typer.Option(help="LoRA rank.")] = 8,
    lora_alpha: Annotated[float, typer.Option(help="LoRA alpha (scale = alpha / r).")] = 16.0,
    lora_targets: Annotated[
        str, typer.Option(help="Comma-separated module names; default: q and v projections.")
    ] = "",
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 2,
    train_size: Annotated[
        int, typer.Option(help="Training examples (stratified subsample; 0: all).")
    ] = 600,
    lr: LearningRate = 1e-3,
    test_size: Annotated[
        int, typer.Option(help="Test examples (stratified subsample; 0: all).")
    ] = 300,
    max_length: MaxLength = 64,
    batch_size: Annotated[int, typer.Option(help="Texts per evaluation batch.")] = 64,
    seed: Annotated[
        int, typer.Option(help="Root seed of chip instances, subsamples and training.")
    ] = 0,
    budget: Annotated[
        float, typer.Option(help="Accuracy budget in points for the tolerance figure.")
    ] = 1.0,
    out: Annotated[
        Path | None,
        typer.Option(
            parser=path_value,
            help="Results folder (default: runs/<model>-<task>-...-<hash>); re-run to resume.",
        ),
    ] = None,
    cache_dir: CacheDir = None,
) -> None:
    """Sweep noise over chip instances: accuracy against sigma (or any card field), a results
    folder and a figure. As `cimsim compare`: one sweep per method on the same chips, a paired
    table (Markdown, LaTeX) and one figure."""
    from cimsim.adapters.lora import LoraConfig
    from cimsim.chip.cards import DEFAULT_CARD, load_card
    from cimsim.eval.config import EvalConfig
    from cimsim.runs.sweep import SweepConfig, parse_axis

    if device is not None and TORCH_DEVICE.match(device):
        torch_device = one_of("--torch-device", torch_device, "--device", device)
    elif device is not None:
        card = one_of("--card", card, "--device", device)
    if noise_model is not None:
        card = one_of("--card/--device", card, "--noise-model", noise_model)
    comparing = ctx.info_name == "compare"
    if method is None:
        method = "lora,noise-aware,halora" if comparing else "lora"
    methods = tuple(m.strip() for m in method.split(",") if m.strip())
    if not methods:
        raise CimsimError("--method needs at least one method")
    chosen = load_card(card or DEFAULT_CARD)
    field, values, sigma = parse_axis(chosen, noise, vary)
    try:
        config = SweepConfig(
            model=model,
            task=task,
            method=methods[0],
            adapter=str(adapter) if adapter is not None else None,
            card=chosen.origin if card and card.endswith(".toml") else chosen.name,
            vary=field,
            values=values,
            sigma=sigma,
            instances=seeds,
            seed=seed,
            engine=engine,
            lora=LoraConfig(
                r=lora_r,
                lora_alpha=lora_alpha,
                target_modules=tuple(t.strip() for t in lora_targets.split(",") if t.strip()),
            ),
            train=train_config(epochs, train_size, lr, seed, lam, mu, train_device, train_noise),
            eval=EvalConfig(
                test_size=test_size or None, max_length=max_length, batch_size=batch_size
            ),
            compute_device=torch_device or "cpu",
        )
    except ValueError as err:
        raise CimsimError(str(err)) from None
    check_budget(budget)
    check_torch_device(config.compute_device)
    resolved = config.resolve_card(chosen)
    if len(methods) == 1 and not comparing:
        out_dir = out if out is not None else config.default_out_dir(resolved)
        run_sweep_and_report(config, resolved, out_dir, resolve_cache_dir(cache_dir), budget / 100)
        return
    from cimsim.runs.compare import default_compare_dir

    for other in methods[1:]:  # every method's config is valid before any work starts
        dataclasses.replace(config, method=other)
    out_dir = out if out is not None else default_compare_dir(config, resolved, methods)
    run_sweep_and_report(
        config, resolved, out_dir, resolve_cache_dir(cache_dir), budget / 100, methods
    )
