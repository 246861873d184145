"""``cimsim watermark``: per-chip signatures in hot-swapped LoRA branches (embed, assemble,
verify) and their verification under noise (sweep)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cimsim.cli.common import (
    EXIT_NOT_CERTIFIED,
    CacheDir,
    MaxLength,
    Model,
    RunDir,
    Task,
    TorchDevice,
    check_torch_device,
    path_value,
    progress_bars,
    resolve_cache_dir,
    rich_console,
)
from cimsim.cli.reporting import report_kit, report_sweep
from cimsim.core.errors import CimsimError

watermark_app = typer.Typer(
    help="Per-chip watermark signatures in swappable LoRA branches (Hot-Swap MarkBoard).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

KitDir = Annotated[
    Path, typer.Argument(parser=path_value, help="A kit folder written by `watermark embed`.")
]
Signature = Annotated[str, typer.Option(help="The signature, e.g. 0110100111000101.")]


@watermark_app.command()
def embed(
    out: Annotated[Path, typer.Option(parser=path_value, help="New folder for the kit.")],
    model: Model = "minilm",
    task: Task = "bbc-news",
    bits: Annotated[int, typer.Option(help="Signature length n (2n branches).")] = 16,
    key: Annotated[int, typer.Option(help="The owner's secret key (a seed).")] = 0,
    steps: Annotated[int, typer.Option(help="Training steps of the watermark branches.")] = 300,
    rank: Annotated[int, typer.Option(help="Rank of each watermark branch.")] = 2,
    obfuscation: Annotated[
        float,
        typer.Option(
            help="Largest |R_i| per row as a fraction of the base row's (0: no obfuscation)."
        ),
    ] = 0.5,
    test_size: Annotated[int, typer.Option(help="Test examples of the checks (0: all).")] = 300,
    max_length: MaxLength = 64,
    torch_device: TorchDevice = "cpu",
    cache_dir: CacheDir = None,
) -> None:
    """Train the task's branch (cached) and 2n watermark branches beside it, check every
    signature digitally, and write the owner's kit."""
    from cimsim.adapters.watermark import WatermarkConfig
    from cimsim.eval.config import EvalConfig
    from cimsim.watermark.kit import KitConfig, embed_kit

    check_torch_device(torch_device)
    try:
        config = KitConfig(
            model=model, task=task, compute_device=torch_device,
            eval=EvalConfig(test_size=test_size or None, max_length=max_length),
            watermark=WatermarkConfig(bits=bits, seed=key, steps=steps, rank=rank,
                                      obfuscation_scale=obfuscation),
        )  # fmt: skip
    except ValueError as err:
        raise CimsimError(str(err)) from None
    with progress_bars() as progress:
        embed_kit(config, out, cache_dir=resolve_cache_dir(cache_dir), progress=progress)
    report_kit(out)


@watermark_app.command()
def assemble(
    kit: KitDir,
    signature: Signature,
    out: Annotated[Path, typer.Option(parser=path_value, help="Folder for the chip's model.")],
    obfuscated: Annotated[
        bool, typer.Option(help="Ship the obfuscated base delta and compensations.")
    ] = True,
    torch_device: TorchDevice = "cpu",
    cache_dir: CacheDir = None,
) -> None:
    """Write one chip's model for a signature: one peft adapter (and, obfuscated, the base
    delta). The branches are chosen, nothing is trained."""
    from cimsim.adapters.watermark import parse_signature
    from cimsim.watermark.kit import assemble as assemble_chip
    from cimsim.watermark.kit import load_kit

    loaded = load_kit(kit, cache_dir=resolve_cache_dir(cache_dir), device=torch_device)
    bits = parse_signature(signature, loaded.config.watermark.bits)
    if obfuscated and not loaded.obfuscation:
        raise CimsimError(f"{kit} was embedded without obfuscation; use --no-obfuscated")
    assemble_chip(loaded, bits, out, obfuscated)
    rich_console().print(f"written: {out} (signature {signature})")


@watermark_app.command()
def verify(
    kit: KitDir,
    chip_model: Annotated[
        Path,
        typer.Option(
            "--model-dir", parser=path_value, help="The suspect: a folder `assemble` wrote."
        ),
    ],
    signature: Annotated[str, typer.Option(help="The claimed signature, e.g. 0110....")],
    card: Annotated[str | None, typer.Option(help="Read it on a chip of this card.")] = None,
    sigma: Annotated[float | None, typer.Option(help="The chip's sigma (card's unit).")] = None,
    chip: Annotated[int, typer.Option(help="Chip instance (the sweep's seed rule).")] = 0,
    torch_device: TorchDevice = "cpu",
    cache_dir: CacheDir = None,
) -> None:
    """Read the suspect's signature black-box (queries in, answers out) and decide whether it
    verifies; exit 3 when it does not."""
    from cimsim.watermark.verify import verify_model

    check_torch_device(torch_device)
    result = verify_model(
        kit, chip_model, signature, card=card, sigma=sigma, chip=chip,
        cache_dir=resolve_cache_dir(cache_dir), device=torch_device,
    )  # fmt: skip
    console = rich_console()
    console.print(f"read signature: {result['read']} ({result['queries']} queries per bit)")
    console.print(f"claimed:        {result['claimed']}")
    console.print(
        f"verified: {result['verified']} (false-positive probability <= "
        f"{result['false_positive_bound']:.2g} for a model without the key)"
    )
    if not result["verified"]:
        raise typer.Exit(EXIT_NOT_CERTIFIED)


@watermark_app.command()
def sweep(
    kit: KitDir,
    signature: Signature,
    noise: Annotated[str, typer.Option(help="Sigma values (range syntax as in `sweep`).")] = (
        "0.005,0.01,0.02,0.03,0.04"
    ),
    seeds: Annotated[int, typer.Option(help="Chips per value.")] = 10,
    device: Annotated[str, typer.Option(help="Device card of the chips.")] = "channel",
    budget: Annotated[float, typer.Option(help="Task accuracy budget in points.")] = 2.0,
    seed: Annotated[int, typer.Option(help="Root of the chip seeds.")] = 0,
    out: RunDir = None,
    torch_device: TorchDevice = "cpu",
    cache_dir: CacheDir = None,
) -> None:
    """Read a signature's chips at every sigma, with and without obfuscation: bit error rate,
    verification and task accuracy per chip, yields with exact intervals, figure."""
    from cimsim.cli.common import check_budget
    from cimsim.core.ranges import parse_range
    from cimsim.watermark.sweep import WatermarkSweepConfig, run_watermark_sweep

    check_budget(budget)
    check_torch_device(torch_device)
    try:
        config = WatermarkSweepConfig(
            signature=signature, card=device, values=tuple(parse_range(noise)), instances=seeds,
            seed=seed, budget=budget / 100,
        )  # fmt: skip
    except ValueError as err:
        raise CimsimError(str(err)) from None
    out_dir = out if out is not None else Path("runs") / f"watermark-{kit.name}-{signature}"
    with progress_bars() as progress:
        run_watermark_sweep(
            kit, config, out_dir, cache_dir=resolve_cache_dir(cache_dir), device=torch_device,
            progress=progress,
        )  # fmt: skip
    report_sweep(out_dir)
