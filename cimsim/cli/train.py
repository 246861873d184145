"""``cimsim train``: train one LoRA adapter and write it with its log and loss curve."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cimsim.cli.common import (
    CacheDir,
    Lam,
    LearningRate,
    MaxLength,
    Mu,
    PromptTokens,
    TorchDevice,
    TrainDevice,
    TrainNoise,
    check_torch_device,
    path_value,
    progress_bars,
    resolve_cache_dir,
    rich_console,
    train_config,
)
from cimsim.core.errors import CimsimError


def train(
    out: Annotated[
        Path,
        typer.Option(parser=path_value, help="Folder for the adapter, its log and loss curve."),
    ],
    method: Annotated[
        str, typer.Option(help="lora | noise-aware | halora | auto-halora.")
    ] = "lora",
    model: Annotated[
        str, typer.Option(help="Registered model, HF directory or hub id.")
    ] = "minilm",
    task: Annotated[str, typer.Option(help="Registered task or a .jsonl/.csv file.")] = "bbc-news",
    lam: Lam = 0.5,
    mu: Mu = 1e-3,
    train_device: TrainDevice = "channel",
    train_noise: TrainNoise = 0.05,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 2,
    train_size: Annotated[int, typer.Option(help="Training examples (0: all).")] = 600,
    lr: LearningRate = 1e-3,
    max_length: MaxLength = 64,
    prompt_tokens: PromptTokens = "joined",
    seed: Annotated[int, typer.Option(help="Seed of the init, data order, training chips.")] = 0,
    torch_device: TorchDevice = "cpu",
    cache_dir: CacheDir = None,
) -> None:
    """Train one LoRA adapter (peft format) and write its per-step log and loss curve."""
    from cimsim.runs.train import train_to_folder

    try:
        config = train_config(epochs, train_size, lr, seed, lam, mu, train_device, train_noise)
    except ValueError as err:
        raise CimsimError(str(err)) from None
    check_torch_device(torch_device)
    with progress_bars() as progress:
        paths = train_to_folder(
            model,
            task,
            method,
            config,
            out,
            max_length=max_length,
            prompt_tokens=prompt_tokens,
            device=torch_device,
            cache_dir=resolve_cache_dir(cache_dir),
            progress=progress,
        )
    for path in paths:
        rich_console().print(f"written: {path}")
