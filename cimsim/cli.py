"""The ``cimsim`` command line: parse options, build frozen configs, call the library.

Heavy imports (torch, transformers, matplotlib) happen inside the commands, so ``cimsim --help`` is
instant. Every user error ends as one line on stderr and exit code 2 (see :func:`main`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from cimsim.errors import CimsimError

app = typer.Typer(
    help="Simulate LoRA-adapted language models on noisy compute-in-memory (RRAM) tiles.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    rich_markup_mode=None,
)

EXIT_FAILURE = 1  # the environment failed: a path, the disk, memory
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # an error no check anticipated (EX_SOFTWARE)
EXIT_INTERRUPTED = 130

# Options of every command that trains (sweep, compare, train, continual), defined once.
Lam = Annotated[float, typer.Option(help="halora: weight of the noisy loss.")]
Mu = Annotated[float, typer.Option(help="halora: weight of the spectral regulariser.")]
TrainDevice = Annotated[
    str, typer.Option(help="Device card of the training noise (noise-aware, halora).")
]
TrainNoise = Annotated[
    float, typer.Option(help="Sigma of the training noise, in that card's unit.")
]
LearningRate = Annotated[float, typer.Option(help="Learning rate.")]


def path_value(value: str | Path) -> Path:
    """Parse a file or folder option: an empty value is refused (``Path("")`` is the current
    folder, so ``--out ''`` would write results into whatever folder the user stands in)."""
    if isinstance(value, Path):  # an option's default
        return value
    if not value.strip():
        raise typer.BadParameter("the path is empty")
    return Path(value)


def _check_budget(budget: float) -> None:
    if not 0 <= budget < 100:
        raise CimsimError(f"--budget is in accuracy points, between 0 and 100; got {budget}")


def _cache_dir(option: Path | None) -> Path:
    from cimsim.paths import default_cache_dir

    return option if option is not None else default_cache_dir()


def _console(stderr: bool = False) -> Any:
    """A rich console that prints text as is: units like ``× max|W[row,:]|`` are not markup,
    and paths are never wrapped mid-line."""
    from rich.console import Console

    return Console(stderr=stderr, markup=False, highlight=False, soft_wrap=True)


class _RichProgress:
    """The library's progress protocol: rich bars with an ETA on stderr when it is a terminal;
    messages, and stage lines when there are no bars, on stdout. Piped or in CI, stderr thus
    carries nothing but the one-line error, if any."""

    def __init__(self, progress: Any, stdout: Any) -> None:
        self.progress, self.stdout = progress, stdout
        self.task: Any = None

    def stage(self, description: str, total: int) -> None:
        self.task = self.progress.add_task(description, total=total)
        if self.progress.disable:
            self.stdout.print(f"{description}: {total} steps", highlight=False)

    def advance(self, steps: int = 1) -> None:
        self.progress.advance(self.task, steps)

    def log(self, message: str) -> None:
        self.stdout.print(message, highlight=False)


_TORCH_DEVICE = re.compile(r"^(cpu|cuda|mps|xpu|meta)(:\d+)?$")


@app.command()
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
    max_length: Annotated[int, typer.Option(help="Tokens per input text.")] = 64,
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
    cache_dir: Annotated[
        Path | None, typer.Option(parser=path_value, help="Cache for adapters and fetched data.")
    ] = None,
) -> None:
    """Sweep noise over chip instances: accuracy against sigma (or any card field), a results
    folder and a figure. As `cimsim compare`: one sweep per method on the same chips, a paired
    table (Markdown, LaTeX) and one figure."""
    from cimsim.devices import DEFAULT_CARD, load_card
    from cimsim.lora import LoraConfig
    from cimsim.sweep import EvalConfig, SweepConfig, parse_axis

    if device is not None and _TORCH_DEVICE.match(device):
        torch_device = _one_of("--torch-device", torch_device, "--device", device)
    elif device is not None:
        card = _one_of("--card", card, "--device", device)
    if noise_model is not None:
        card = _one_of("--card/--device", card, "--noise-model", noise_model)
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
            train=_train_config(epochs, train_size, lr, seed, lam, mu, train_device, train_noise),
            eval=EvalConfig(
                test_size=test_size or None, max_length=max_length, batch_size=batch_size
            ),
            compute_device=torch_device or "cpu",
        )
    except ValueError as err:
        raise CimsimError(str(err)) from None
    _check_budget(budget)
    _check_device(config.compute_device)
    resolved = config.resolve_card()
    if len(methods) == 1 and not comparing:
        out_dir = out if out is not None else config.default_out_dir(resolved)
        _run_with_progress(config, out_dir, _cache_dir(cache_dir), budget / 100)
        return
    for other in methods[1:]:  # every method's config is valid before any work starts
        dataclasses.replace(config, method=other)
    out_dir = out if out is not None else _compare_dir(config, resolved, methods)
    _run_with_progress(config, out_dir, _cache_dir(cache_dir), budget / 100, methods)


def _train_config(
    epochs: int,
    train_size: int,
    lr: float,
    seed: int,
    lam: float,
    mu: float,
    train_device: str,
    train_noise: float,
) -> Any:
    """The TrainConfig the shared training options describe (0 training examples: all)."""
    from cimsim.train import TrainConfig

    return TrainConfig(
        epochs=epochs,
        train_size=train_size or None,
        lr=lr,
        seed=seed,
        lam=lam,
        mu=mu,
        noise_card=train_device,
        noise_sigma=train_noise,
    )


def _compare_dir(config: Any, card: Any, methods: tuple[str, ...]) -> Path:
    """``runs/compare-<model>-<task>-<card>-<hash>``: one folder per method inside."""
    from cimsim.config import config_hash, to_dict

    slug = "-".join(
        re.sub(r"[^A-Za-z0-9_.-]+", "_", p)
        for p in ("compare", Path(config.model).name, Path(config.task).stem, card.name)
    )
    return Path("runs") / f"{slug}-{config_hash([to_dict(config), card.to_dict(), methods])}"


def _one_of(name: str, value: str | None, other_name: str, other: str) -> str:
    """``other``, unless ``value`` already says something different."""
    if value is not None and value != other:
        raise CimsimError(f"{other_name} {other} contradicts {name} {value}")
    return other


def _check_device(device: str) -> None:
    import torch

    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as err:
        raise CimsimError(
            f"torch device '{device}' is not usable here: {str(err).splitlines()[0]}"
        ) from None


@contextlib.contextmanager
def _progress_bars() -> Iterator[_RichProgress]:
    """Rich progress bars with an ETA on stderr (a terminal only), messages on stdout."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = _console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        yield _RichProgress(bar, _console())


def _run_with_progress(
    config: Any,
    out_dir: Path,
    cache_dir: Path,
    budget: float,
    methods: tuple[str, ...] | None = None,
) -> None:
    """Run the sweep (or, with ``methods``, the comparison) behind progress bars, then report."""
    from cimsim.compare import run_compare, write_comparison
    from cimsim.report import write_report
    from cimsim.results import read_points
    from cimsim.sweep import run_sweep

    try:
        with _progress_bars() as progress:
            if methods is None:
                run_sweep(config, out_dir, cache_dir=cache_dir, progress=progress)
            else:
                run_compare(config, methods, out_dir, cache_dir=cache_dir, progress=progress)
    except KeyboardInterrupt:
        saved = sum(len(read_points(path)) for path in out_dir.glob("**/points.jsonl"))
        print(
            f"cimsim: interrupted; {saved} finished points are saved in {out_dir}; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if methods is None:
        _print_report(write_report(out_dir, budget=budget), out_dir)
        return
    for method in methods:  # each method's own folder gets its summary and figure too
        write_report(out_dir / method, budget=budget)
    paths = write_comparison(out_dir, methods, budget)
    _console().print((out_dir / "comparison.md").read_text())
    for path in paths:
        _console().print(f"written: {path}")


def _print_report(report: Any, out_dir: Path) -> None:
    import pandas as pd
    from rich.table import Table

    symbol = "σ" if report.varied == "sigma" else report.varied
    table = Table(title=f"accuracy over chip instances ({symbol} in {report.unit})")
    for column in ("method", "card", symbol, "mean", "± std", "min", "max", "n"):
        table.add_column(column, justify="right")
    for row in report.summary.itertuples():
        std = "–" if pd.isna(row.std) else f"{row.std:.3f}"  # NaN or NA with one instance
        table.add_row(
            row.method,
            row.card,
            f"{row.value:.4g}",
            f"{row.mean:.3f}",
            std,
            f"{row.min:.3f}",
            f"{row.max:.3f}",
            str(row.n),
        )
    console = _console()
    console.print(table)
    if report.digital is not None:
        console.print(f"digital (noise-free) accuracy: {report.digital:.3f}")
    if report.tolerance is not None:
        console.print(f"tolerance: {report.tolerance.text(report.unit)}")
    console.print(f"results: {out_dir}/results.csv, summary.csv, config.json")
    for path in report.figures:
        console.print(f"figure:  {path}")


@app.command()
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
    out: Annotated[
        Path | None, typer.Option(parser=path_value, help="Results folder (default under runs/).")
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(parser=path_value, help="Cache for adapters and data.")
    ] = None,
    device: Annotated[str, typer.Option(help="torch device.")] = "cpu",
) -> None:
    """Run (or resume) an experiment file's sweep, comparison or continual experiment and
    publish its figures, table and data under figures/<name>/."""
    from cimsim.continual.experiment import is_continual
    from cimsim.experiments import load_experiment, publish

    if is_continual(experiment):
        from cimsim.cli_continual import run_experiment

        run_experiment(experiment, figures_dir, out, _cache_dir(cache_dir), device)
        return

    spec = load_experiment(experiment)
    config = dataclasses.replace(spec.sweep, compute_device=device)
    _check_device(device)
    card = config.resolve_card()
    methods = spec.methods or None
    if out is None:
        out = _compare_dir(config, card, spec.methods) if methods else config.default_out_dir(card)
    _run_with_progress(config, out, _cache_dir(cache_dir), 0.01, methods)
    target = publish(spec, out, figures_dir)
    print(f"published {target}/ (figure, data, config and the experiment file)")


@app.command()
def train(
    out: Annotated[
        Path,
        typer.Option(parser=path_value, help="Folder for the adapter, its log and loss curve."),
    ],
    method: Annotated[str, typer.Option(help="lora | noise-aware | halora.")] = "lora",
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
    max_length: Annotated[int, typer.Option(help="Tokens per input text.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the init, data order, training chips.")] = 0,
    torch_device: Annotated[str, typer.Option(help="torch device.")] = "cpu",
    cache_dir: Annotated[
        Path | None, typer.Option(parser=path_value, help="Cache for adapters and data.")
    ] = None,
) -> None:
    """Train one LoRA adapter (peft format) and write its per-step log and loss curve."""
    from cimsim.train import train_to_folder

    try:
        config = _train_config(epochs, train_size, lr, seed, lam, mu, train_device, train_noise)
    except ValueError as err:
        raise CimsimError(str(err)) from None
    _check_device(torch_device)
    with _progress_bars() as progress:
        paths = train_to_folder(
            model,
            task,
            method,
            config,
            out,
            max_length=max_length,
            device=torch_device,
            cache_dir=_cache_dir(cache_dir),
            progress=progress,
        )
    for path in paths:
        _console().print(f"written: {path}")


@app.command()
def plot(
    run_dir: Annotated[
        Path,
        typer.Argument(
            parser=path_value, help="A results folder of `cimsim sweep` or `cimsim continual`."
        ),
    ],
    budget: Annotated[
        float, typer.Option(help="Accuracy budget in points for the tolerance mark (sweeps).")
    ] = 1.0,
) -> None:
    """Redraw a run's figures and summary from its files alone."""
    from cimsim.continual.runner import SCHEMA as CONTINUAL
    from cimsim.report import write_report
    from cimsim.results import CONFIG_FILE, read_json

    _check_budget(budget)

    config = run_dir / CONFIG_FILE
    if config.is_file() and read_json(config).get("schema") == CONTINUAL:
        from cimsim.continual.report import redraw

        for path in redraw(run_dir):
            _console().print(f"written: {path}")
        return
    _print_report(write_report(run_dir, budget=budget / 100), run_dir)


@app.command()
def models() -> None:
    """List the registered models with their size and source."""
    from rich.table import Table

    from cimsim.models import list_models

    table = Table(title="models (also: any local HF directory or hub id)")
    for column in ("name", "kind", "params", "installed", "summary", "source"):
        table.add_column(column)
    for row in list_models():
        table.add_row(
            str(row["name"]),
            str(row["kind"]),
            f"{int(row['params']) / 1e6:.1f}M",  # type: ignore[call-overload]
            "yes" if row["installed"] else "no (make setup)",
            str(row["summary"]),
            str(row["source"]),
        )
    _console().print(table)


@app.command()
def tasks(
    cache_dir: Annotated[
        Path | None, typer.Option(parser=path_value, help="Cache for fetched data.")
    ] = None,
) -> None:
    """List the registered tasks with their sizes and sources."""
    from rich.table import Table

    from cimsim.tasks import list_tasks

    table = Table(title="tasks (also: a local .jsonl/.csv with text,label)")
    for column in ("name", "labels", "train", "test", "source"):
        table.add_column(column)
    for row in list_tasks(cache_dir=_cache_dir(cache_dir)):
        sizes = [
            str(row[k]) if row[k] is not None else "fetched on first use"
            for k in ("n_train", "n_test")
        ]
        table.add_row(str(row["name"]), ", ".join(row["label_names"]), *sizes, str(row["source"]))
    _console().print(table)


@app.command("noise-models")
def noise_models() -> None:
    """List the noise models: what sigma means, its unit and the source."""
    from rich.table import Table

    from cimsim.noise_models import NOISE_MODELS

    table = Table(title="noise models (--noise-model)")
    for column in ("name", "sigma means", "unit", "source"):
        table.add_column(column)
    for cls in NOISE_MODELS.values():
        table.add_row(cls.name, cls.summary, cls.sigma_unit, cls.source)
    _console().print(table)


app.command("compare")(sweep)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: user errors become one stderr line and exit code 2."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        result = app(args=argv, prog_name="cimsim", standalone_mode=False)
    except CimsimError as err:
        print(f"cimsim: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except typer.Exit as err:
        return err.exit_code
    except typer.TyperException as err:  # click's usage errors, as vendored by typer
        message = err.format_message() if hasattr(err, "format_message") else str(err)
        if type(err).__name__ == "NoArgsIsHelpError":  # bare `cimsim`: the help is the answer
            print(message)
            return 0
        print(f"cimsim: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except (typer.Abort, KeyboardInterrupt):
        print("cimsim: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as err:  # a path that is a folder, a file, missing, unreadable, a full disk
        where = f": {err.filename}" if err.filename else ""
        print(f"cimsim: error: {err.strerror or err}{where}", file=sys.stderr)
        return EXIT_FAILURE
    except MemoryError:
        print(
            "cimsim: error: out of memory (fewer chips, points or a smaller batch)", file=sys.stderr
        )
        return EXIT_FAILURE
    except Exception as err:  # a case no check caught: one line, the traceback on request
        if os.environ.get("CIMSIM_DEBUG"):
            raise
        print(
            f"cimsim: internal error: {type(err).__name__}: {err} "
            "(set CIMSIM_DEBUG=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    return result if isinstance(result, int) else 0


# Commands kept in their own modules register themselves on `app` when imported.
from cimsim import cli_continual, cli_devices  # noqa: E402, F401

if __name__ == "__main__":
    sys.exit(main())
