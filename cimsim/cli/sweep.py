"""``cimsim sweep`` and ``cimsim compare``: accuracy against a card field over chip instances,
for one training method or several on the same chips."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from cimsim.cli.common import (
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
    Task,
    TextColumn,
    TorchDeviceOrNone,
    TrainDevice,
    TrainNoise,
    TrainSize,
    Vary,
    WorkerCpus,
    WorkerGpus,
    Workers,
    check_budget,
    check_torch_device,
    make_executor,
    path_value,
    resolve_cache_dir,
    sweep_config,
    train_config,
)
from cimsim.cli.reporting import run_harness_and_report, run_sweep_and_report
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
    vary: Vary = None,
    device: Device = None,
    card: Card = None,
    digital: Digital = None,
    executor: Executor = "local",
    address: Address = None,
    workers: Workers = 2,
    worker_cpus: WorkerCpus = 1.0,
    worker_gpus: WorkerGpus = 0.0,
    torch_device: TorchDeviceOrNone = None,
    dtype: Dtype = "float32",
    in_place: InPlace = False,
    noise_model: NoiseModelName = None,
    engine: Annotated[
        str, typer.Option(help="cimsim (fast) or aihwkit (its analog tile, to cross-check).")
    ] = "cimsim",
    seeds: Annotated[int, typer.Option(help="Chip instances (programming events) per value.")] = 3,
    model: Model = "minilm",
    task: Task = "bbc-news",
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    method: Annotated[
        str | None,
        typer.Option(
            "--method",
            "--methods",
            help="How LoRA is trained: lora (ideal base), noise-aware (a fresh noisy base every "
            "step), halora ((1-lam) ideal + lam noisy + mu spectral), auto-halora (halora's lam "
            "and the learning rate set during training, AutoLoRa-style); none: base "
            "model only. "
            "A comma list compares methods on the same chips (default for `compare`: "
            "lora,noise-aware,halora; for `sweep`: lora).",
        ),
    ] = None,
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
        int, typer.Option(help="Test examples (stratified subsample; 0: all).")
    ] = 300,
    max_length: MaxLength = 64,
    prompt_tokens: PromptTokens = "joined",
    batch_size: BatchSize = 64,
    seed: Annotated[
        int, typer.Option(help="Root seed of chip instances, subsamples and training.")
    ] = 0,
    budget: Annotated[
        float, typer.Option(help="Accuracy budget in points for the tolerance figure.")
    ] = 1.0,
    lm_eval_tasks: Annotated[
        str | None,
        typer.Option(
            help="Run these lm-evaluation-harness tasks (comma list) on every chip instead of "
            "the task's accuracy: a causal LM, lm-eval's prompts and metrics "
            "(pip install 'cimsim[lm-eval]'; data from the local datasets cache)."
        ),
    ] = None,
    lm_eval_include: Annotated[
        str | None, typer.Option(help="A folder of lm-eval task YAMLs (local tasks).")
    ] = None,
    lm_eval_limit: Annotated[
        int | None, typer.Option(help="Documents per lm-eval task (default: all).")
    ] = None,
    lm_eval_fewshot: Annotated[
        int | None, typer.Option(help="Few-shot examples per lm-eval task (default: its own).")
    ] = None,
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
    comparing = ctx.info_name == "compare"
    if method is None:
        method = "lora,noise-aware,halora" if comparing else "lora"
    methods = tuple(m.strip() for m in method.split(",") if m.strip())
    if not methods:
        raise CimsimError("--method needs at least one method")
    config, chosen = sweep_config(
        model=model, task=task, method=methods[0], adapter=adapter, device=device, card=card,
        torch_device=torch_device, noise_model=noise_model, noise=noise, vary=vary,
        instances=seeds, seed=seed, engine=engine, lora_r=lora_r, lora_alpha=lora_alpha,
        lora_targets=lora_targets,
        train=train_config(epochs, train_size, lr, seed, lam, mu, train_device, train_noise),
        test_size=test_size, max_length=max_length, batch_size=batch_size, digital=digital,
        prompt_tokens=prompt_tokens,
        dtype=dtype, in_place=in_place, text_column=text_column, label_column=label_column,
    )  # fmt: skip
    check_budget(budget)
    check_torch_device(config.compute_device)
    runner = make_executor(executor, address, workers, worker_cpus, worker_gpus)
    resolved = config.resolve_card(chosen)
    if lm_eval_tasks is not None:
        from cimsim.runs.harness import HarnessConfig

        if comparing or len(methods) > 1 or runner is not None:
            raise CimsimError("--lm-eval-tasks runs one method locally (sweep, --executor local)")
        harness = HarnessConfig(
            sweep=config,
            tasks=tuple(t.strip() for t in lm_eval_tasks.split(",") if t.strip()),
            include_path=lm_eval_include,
            limit=lm_eval_limit,
            num_fewshot=lm_eval_fewshot,
            batch_size=batch_size,
        )
        out_dir = out if out is not None else harness.default_out_dir(resolved)
        run_harness_and_report(harness, resolved, out_dir, resolve_cache_dir(cache_dir))
        return
    if len(methods) == 1 and not comparing:
        out_dir = out if out is not None else config.default_out_dir(resolved)
        run_sweep_and_report(
            config, resolved, out_dir, resolve_cache_dir(cache_dir), budget / 100, None, runner
        )
        return
    from cimsim.runs.compare import default_compare_dir

    for other in methods[1:]:  # every method's config is valid before any work starts
        dataclasses.replace(config, method=other)
    out_dir = out if out is not None else default_compare_dir(config, resolved, methods)
    run_sweep_and_report(
        config, resolved, out_dir, resolve_cache_dir(cache_dir), budget / 100, methods, runner
    )
