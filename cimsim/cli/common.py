"""What every command shares: the options defined once, path parsing, the console, progress bars,
the checks of a torch device and a budget, and the exit codes."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from cimsim.core.errors import CimsimError

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


# Options of every command that loads a model or writes a results folder, defined once.
CacheDir = Annotated[
    Path | None,
    typer.Option(parser=path_value, help="Cache for adapters, converted models and fetched data."),
]
RunDir = Annotated[
    Path | None,
    typer.Option(parser=path_value, help="Results folder (default under runs/); re-run to resume."),
]
TorchDevice = Annotated[str, typer.Option(help="torch device: cpu, cuda, cuda:1, mps.")]
MaxLength = Annotated[int, typer.Option(help="Tokens per input text.")]


def check_budget(budget: float) -> None:
    if not 0 <= budget < 100:
        raise CimsimError(f"--budget is in accuracy points, between 0 and 100; got {budget}")


def resolve_cache_dir(option: Path | None) -> Path:
    from cimsim.core.paths import default_cache_dir

    return option if option is not None else default_cache_dir()


def rich_console(stderr: bool = False) -> Any:
    """A rich console that prints text as is: units like ``× max|W[row,:]|`` are not markup,
    and paths are never wrapped mid-line."""
    from rich.console import Console

    return Console(stderr=stderr, markup=False, highlight=False, soft_wrap=True)


class RichProgress:
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



TORCH_DEVICE = re.compile(r"^(cpu|cuda|mps|xpu|meta)(:\d+)?$")

def train_config(
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
    from cimsim.adapters.train import TrainConfig

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


def one_of(name: str, value: str | None, other_name: str, other: str) -> str:
    """``other``, unless ``value`` already says something different."""
    if value is not None and value != other:
        raise CimsimError(f"{other_name} {other} contradicts {name} {value}")
    return other


def check_torch_device(device: str) -> None:
    import torch

    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as err:
        raise CimsimError(
            f"torch device '{device}' is not usable here: {str(err).splitlines()[0]}"
        ) from None


@contextlib.contextmanager
def progress_bars() -> Iterator[RichProgress]:
    """Rich progress bars with an ETA on stderr (a terminal only), messages on stdout."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = rich_console(stderr=True)
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
        yield RichProgress(bar, rich_console())

