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
EXIT_NOT_CERTIFIED = 3  # cimsim tolerance --require: the certified tolerance falls short
EXIT_INTERNAL = 70  # an error no check anticipated (EX_SOFTWARE)
EXIT_INTERRUPTED = 130

# Options of every command that trains (sweep, compare, train, continual), defined once.
Lam = Annotated[
    float, typer.Option(help="halora: weight of the noisy loss (auto-halora sets its own).")
]
Mu = Annotated[float, typer.Option(help="halora: weight of the spectral regulariser.")]
TrainDevice = Annotated[
    str, typer.Option(help="Device card of the training noise (noise-aware, (auto-)halora).")
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
PromptTokens = Annotated[
    str,
    typer.Option(
        help="Causal LMs: 'joined' tokenizes the whole prompt at once (as lm-evaluation-harness); "
        "'parts' its head, text and tail apart (how results without the choice were scored)."
    ),
]

# The deployment's options (sweep, compare, tolerance), defined once.
Vary = Annotated[
    str | None,
    typer.Option(
        help="Sweep another card field instead of sigma: FIELD=RANGE, e.g. adc_bits=4..8:5, "
        "drift_time_s=1,3600,86400, stuck_at_gmax_rate=0..0.02:5 (see `cimsim devices show`)."
    ),
]
Device = Annotated[
    str | None,
    typer.Option(
        help="Device card (name or .toml; see `cimsim devices`), or a torch device "
        "(cpu, cuda, cuda:1, mps) to run on."
    ),
]
Card = Annotated[str | None, typer.Option(help="Device card, explicitly.")]
Digital = Annotated[
    str | None,
    typer.Option(
        help="Mixed placement: keep the base layers whose names match this regular expression "
        "digital (e.g. 'layer\\.0\\.|value'; names as `cimsim sensitivity` lists them)."
    ),
]
Dtype = Annotated[
    str,
    typer.Option(
        help="Base weights and chips in float32, bfloat16 or float16 (noise drawn in float32, "
        "then cast): half the memory per weight."
    ),
]
InPlace = Annotated[
    bool,
    typer.Option(
        help="Write each chip into the base weights (digital ones kept on the host): no device "
        "memory per chip, the same numbers; for models that fill the GPU."
    ),
]
TorchDeviceOrNone = Annotated[str | None, typer.Option(help="torch device, explicitly.")]
NoiseModelName = Annotated[
    str | None,
    typer.Option(help="Shorthand for the shipped card of a noise model (cimsim noise-models)."),
]
Model = Annotated[str, typer.Option(help="Registered model, local HF directory or hub id.")]
Task = Annotated[
    str,
    typer.Option(
        help="Registered task, a .jsonl/.csv with text,label, or a datasets source: a "
        "save_to_disk folder or a .json/.jsonl/.csv/.parquet file (see --text-column)."
    ),
]
TextColumn = Annotated[
    str | None, typer.Option(help="A datasets source's text column (default: text).")
]
LabelColumn = Annotated[
    str | None,
    typer.Option(help="A datasets source's label column (default: label; ClassLabel names used)."),
]
Adapter = Annotated[
    Path | None,
    typer.Option(parser=path_value, help="Evaluate this peft LoRA adapter instead of training."),
]
LoraRank = Annotated[int, typer.Option(help="LoRA rank.")]
LoraAlpha = Annotated[float, typer.Option(help="LoRA alpha (scale = alpha / r).")]
LoraTargets = Annotated[
    str, typer.Option(help="Comma-separated module names; default: q and v projections.")
]
Epochs = Annotated[int, typer.Option(help="Training epochs.")]
TrainSize = Annotated[int, typer.Option(help="Training examples (stratified subsample; 0: all).")]
BatchSize = Annotated[int, typer.Option(help="Texts per evaluation batch.")]

# Where points are evaluated (sweep, compare, tolerance, continual, run), defined once.
Executor = Annotated[
    str, typer.Option(help="Where chips are evaluated: local, or ray (pip install 'cimsim[ray]').")
]
Address = Annotated[
    str | None,
    typer.Option(
        help="Ray cluster to join (auto: the one `ray start --head` made); default: a new "
        "local one."
    ),
]
Workers = Annotated[int, typer.Option(help="Ray workers (actors), each loading the model once.")]
WorkerCpus = Annotated[float, typer.Option(help="CPUs per Ray worker.")]
WorkerGpus = Annotated[float, typer.Option(help="GPUs per Ray worker.")]


def make_executor(
    executor: str, address: str | None, workers: int, cpus: float, gpus: float
) -> Any:
    """The executor the options name: None (local, this process) or a RayExecutor."""
    if executor == "local":
        return None
    if executor != "ray":
        raise CimsimError(f"--executor is local or ray, got '{executor}'")
    from cimsim.runs.executors import RayExecutor

    return RayExecutor(address, workers, cpus, gpus)


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
    """The TrainConfig the shared training options describe (0 training examples: all); a
    value it refuses is a user error."""
    from cimsim.adapters.train import TrainConfig

    try:
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
    except ValueError as err:
        raise CimsimError(str(err)) from None


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


def sweep_config(
    *,
    model: str,
    task: str,
    method: str,
    adapter: Path | None,
    device: str | None,
    card: str | None,
    torch_device: str | None,
    noise_model: str | None,
    noise: str | None,
    vary: str | None,
    instances: int,
    seed: int,
    engine: str,
    lora_r: int,
    lora_alpha: float,
    lora_targets: str,
    train: Any,
    test_size: int,
    max_length: int,
    batch_size: int,
    prompt_tokens: str = "joined",
    digital: str | None = None,
    dtype: str = "float32",
    in_place: bool = False,
    text_column: str | None = None,
    label_column: str | None = None,
) -> tuple[Any, Any]:
    """The SweepConfig the deployment options describe (sweep, compare, tolerance) and the card
    it names, loaded once. ``--device`` is a card or a torch device, whichever it names."""
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
    chosen = load_card(card or DEFAULT_CARD)
    field, values, sigma = parse_axis(chosen, noise, vary)
    try:
        config = SweepConfig(
            model=model,
            task=task,
            method=method,
            adapter=str(adapter) if adapter is not None else None,
            card=chosen.origin if card and card.endswith(".toml") else chosen.name,
            vary=field,
            values=values,
            sigma=sigma,
            instances=instances,
            seed=seed,
            engine=engine,
            lora=LoraConfig(
                r=lora_r,
                lora_alpha=lora_alpha,
                target_modules=tuple(t.strip() for t in lora_targets.split(",") if t.strip()),
            ),
            train=train,
            eval=EvalConfig(
                test_size=test_size or None,
                max_length=max_length,
                batch_size=batch_size,
                prompt_tokens=prompt_tokens,
            ),
            compute_device=torch_device or "cpu",
            digital=digital,
            dtype=dtype,
            in_place=in_place,
            text_column=text_column,
            label_column=label_column,
        )
    except ValueError as err:
        raise CimsimError(str(err)) from None
    return config, chosen
