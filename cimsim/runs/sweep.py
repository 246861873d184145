"""The noise sweep: a (value of one card field x chip instance) grid -> one tidy row per point.

``run_sweep(config, out_dir)`` loads the model and task, gets the adapter (trained on the ideal
base and cached, loaded from a path, or none), evaluates the digital reference once, then, for
each value of the varied field (``sigma`` by default, or any numeric device/tile field of the
card), programs each chip instance and evaluates it. Each finished point is appended to
``points.jsonl`` and fsynced before the next starts, so re-running on the same folder resumes
where it stopped (finished points are never recomputed).

Chip seeds: instance ``i`` at value ``v`` of field ``f`` of card ``c`` is programmed with
``chip_seed = int(sha256(f"{seed}/{c}/{f}={v!r}/{i}"))[:60 bits]``: one independent generator per
(value, chip instance), so the spread at each value is an independent estimate (adjacent points
do not share chips, which would make curves look smoother than the data supports); the same for
every method and adapter (paired comparisons), and unchanged when the grid grows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cimsim.adapters.lora import LoraConfig
from cimsim.adapters.train import TrainConfig
from cimsim.chip.cards import DEFAULT_CARD, DeviceCard, load_card
from cimsim.chip.placement import Placement, placement_record
from cimsim.core.config import config_hash, from_dict, to_dict, with_defaults
from cimsim.core.errors import CimsimError
from cimsim.core.io import append_point, read_json, write_atomic
from cimsim.core.lock import one_writer
from cimsim.core.progress import Progress, Silent
from cimsim.core.ranges import check_chips, parse_range
from cimsim.eval.config import EvalConfig
from cimsim.runs.results import (
    COMPARISON_FILE,
    CONFIG_FILE,
    POINTS_FILE,
    RESULTS_CSV,
    SCHEMA_VERSION,
    SWEEP_POINT,
    environment,
    points_frame,
    read_points,
)

METHODS = ("lora", "noise-aware", "halora", "auto-halora", "none")
ENGINES = ("cimsim", "aihwkit")
DEFAULT_NOISE = "0.01..0.1"
# Fields that may change between a run and its resumption: the grid may grow.
_GRID_FIELDS = ("values", "instances")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Everything that determines a sweep's numbers."""

    model: str = "minilm"
    """Registered model name, local HF directory or hub id."""
    task: str = "bbc-news"
    """Registered task name or a local .jsonl/.csv file with text,label."""
    method: str = "lora"
    """How the adapter is trained (cached): 'lora' (ideal base), 'noise-aware' (noisy base),
    'halora' (both + spectral regulariser; cimsim.adapters.objectives), 'auto-halora' (halora
    with its scalars and learning rate set during training; cimsim.adapters.auto); 'none': the
    base model alone."""
    adapter: str | None = None
    """A peft LoRA adapter directory to evaluate instead of training one."""
    card: str = DEFAULT_CARD
    """Device card: a shipped card name (cimsim devices) or a .toml file."""
    vary: str = "sigma"
    """The card field on the x axis: sigma (programming noise) or any numeric device/tile field."""
    values: tuple[float, ...] = tuple(parse_range(DEFAULT_NOISE))
    """Values of the varied field."""
    sigma: float | None = None
    """Programming-noise level while another field varies (None: the card's own)."""
    instances: int = 3
    """Chip instances (programming events) per value."""
    seed: int = 0
    """Root of the chip seeds and of the test subsample."""
    engine: str = "cimsim"
    """'cimsim' (fast) or 'aihwkit' (aihwkit's analog tile, for cross-checking)."""
    lora: LoraConfig = LoraConfig()
    """Shape of the LoRA branches."""
    train: TrainConfig = TrainConfig()
    """How the adapter is trained (method 'lora')."""
    eval: EvalConfig = EvalConfig()
    """How accuracy is measured."""
    compute_device: str = "cpu"
    """torch device the model runs on: cpu, cuda, cuda:1, ..."""
    digital: str | None = None
    """Mixed placement: a regular expression over tile names (cimsim.chip.placement); the base
    layers it matches stay digital. None: every base layer is analog."""
    dtype: str = "float32"
    """Dtype of the base weights and of the chips programmed from them: float32, bfloat16 or
    float16 (noise drawn in float32, then cast). LoRA branches stay float32 (trained at full
    precision on the half-precision base), and the adapter cache keys on the dtype."""
    text_column: str | None = None
    """A datasets source's text column (None: ``text``; cimsim.eval.tasks.hfdata)."""
    label_column: str | None = None
    """A datasets source's label column (None: ``label``)."""
    in_place: bool = False
    """Write each chip into the base weights themselves, the digital ones waiting on the host
    (cimsim.chip.deploy): no device memory for a chip; the same numbers as a buffered chip."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise CimsimError(
                f"unknown method '{self.method}'; choose one of: {', '.join(METHODS)}"
            )
        if self.engine not in ENGINES:
            raise CimsimError(
                f"unknown engine '{self.engine}'; choose one of: {', '.join(ENGINES)}"
            )
        if self.adapter is not None and self.method != "lora":
            raise CimsimError(
                f"--adapter gives a trained LoRA adapter; it cannot be combined with "
                f"--method {self.method}"
            )
        if not self.values:
            raise CimsimError("the sweep needs at least one value")
        check_chips(self.instances, self.seed)
        if self.sigma is not None and self.vary == "sigma":
            raise CimsimError("a fixed sigma only makes sense while another field varies")
        Placement(self.digital)  # a user error now if the pattern does not compile
        if self.digital is not None and self.engine != "cimsim":
            raise CimsimError("--digital (mixed placement) needs the cimsim engine")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise CimsimError(f"--dtype is float32, bfloat16 or float16, got '{self.dtype}'")
        if (self.dtype != "float32" or self.in_place) and self.engine != "cimsim":
            raise CimsimError("--dtype and --in-place need the cimsim engine")

    @property
    def placement(self) -> Placement:
        return Placement(self.digital)

    def resolve_card(self, loaded: DeviceCard | None = None) -> DeviceCard:
        """The card with the fixed sigma applied; a user error if any value does not fit.

        ``loaded`` is the card ``self.card`` names, when the caller has already loaded it (the
        command line does, to read its default range); the run passes the result down.
        """
        card = loaded if loaded is not None else load_card(self.card)
        if self.sigma is not None:
            card = card.with_value("sigma", self.sigma)
        for value in self.values:
            card.with_value(self.vary, value)
        return card

    def default_out_dir(self, card: DeviceCard, root: Path = Path("runs")) -> Path:
        """``runs/<model>-<task>-<method>-<card>[-<field>]-<hash of config and card>``."""
        parts = [Path(self.model).name, Path(self.task).stem, self.method, card.name]
        if self.vary != "sigma":
            parts.append(self.vary)
        slug = "-".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", p) for p in parts)
        return root / f"{slug}-{config_hash([self.hashed(), card.to_dict()])}"

    def hashed(self) -> dict[str, Any]:
        """The config as its folder name hashes it: fields added since folders were first
        named are left out at their defaults, so a folder's default name stays the same."""
        data = to_dict(self)
        for key, default in _LATER_FIELDS.items():
            if data[key] == default:
                del data[key]
        if data["eval"]["prompt_tokens"] == "joined":
            del data["eval"]["prompt_tokens"]
        return data


_LATER_FIELDS = {"dtype": "float32", "in_place": False, "text_column": None, "label_column": None}


def parse_axis(
    card: DeviceCard, noise: str | None, vary: str | None
) -> tuple[str, tuple[float, ...], float | None]:
    """(field, values, fixed sigma) from the CLI's words: ``--noise RANGE`` sweeps sigma (default:
    the card's range); ``--vary FIELD=RANGE`` sweeps a card field, with ``--noise`` then one fixed
    sigma."""
    if vary is None:
        return "sigma", tuple(parse_range(card.noise_range if noise is None else noise)), None
    field, _, spec = vary.partition("=")
    field = field.strip()
    if not field or not spec.strip():
        raise CimsimError(f"--vary '{vary}': expected FIELD=RANGE, e.g. adc_bits=4..8:5")
    values = tuple(parse_range(spec, what=f"--vary {field}"))
    fixed = parse_range(noise) if noise is not None else None
    if fixed is not None and len(fixed) != 1:
        raise CimsimError("with --vary, --noise takes one value: the fixed sigma")
    return field, values, fixed[0] if fixed else None


def chip_seed(seed: int, card: str, field: str, value: float, instance: int) -> int:
    """The seed of chip ``instance`` at ``field = value`` (see the module docstring)."""
    key = f"{seed}/{card}/{field}={value!r}/{instance}"
    return int(hashlib.sha256(key.encode()).hexdigest()[:15], 16)


def program_chip(
    model: Any, card: str, sigma: float | None, chip: int, seed: int = 0, in_place: bool = False
) -> dict[str, Any]:
    """Deploy onto ``model`` chip ``chip`` of ``card`` at ``sigma`` (default: the card's): the
    chip this sweep evaluates as that instance at that sigma. Returns what identifies it."""
    from cimsim.chip.deploy import deploy

    chosen = load_card(card)
    if sigma is not None:
        chosen = chosen.with_value("sigma", float(sigma))
    value = chosen.noise.sigma
    seed_of_chip = chip_seed(seed, chosen.name, "sigma", value, chip)
    deploy(model, chosen.noise, seed_of_chip, chosen.tile, in_place=in_place)
    return {
        "card": chosen.name, "noise_model": chosen.noise.name, "sigma": value,
        "sigma_unit": chosen.noise.sigma_unit, "instance": chip, "chip_seed": seed_of_chip,
    }  # fmt: skip


def _check_resumable(
    record: dict[str, Any], config: SweepConfig, card: DeviceCard, out_dir: Path
) -> SweepConfig:
    """The stored run must be the same sweep up to its grid; return the merged grid's config."""
    stored = record.get("config")
    if not isinstance(stored, dict):
        raise CimsimError(f"{out_dir / CONFIG_FILE} is damaged: its 'config' is not an object")
    current = to_dict(config)
    stored = with_defaults(stored, to_dict(SweepConfig()))  # fields added since that run
    if (record.get("model") or {}).get("kind") == "encoder":
        stored["eval"]["prompt_tokens"] = current["eval"]["prompt_tokens"]  # encoders ignore it
    # Training fields that do not shape this method's adapter may differ (lam for plain lora,
    # auto-halora's switches for halora): the adapter and every point are the same.
    stored["train"] = _shaping(from_dict(TrainConfig, stored["train"]), config)
    current["train"] = _shaping(config.train, config)
    for key, value in current.items():
        was = stored[key]
        if key not in _GRID_FIELDS and was != value:
            raise CimsimError(
                f"{out_dir} holds a different sweep ({key}: {was!r} there, "
                f"{value!r} now); choose another --out"
            )
    if record.get("card") != json.loads(json.dumps(card.to_dict())):
        raise CimsimError(f"{out_dir} was run with a different version of card '{card.name}'")
    values = tuple(sorted(set(stored.get("values", [])) | set(config.values)))
    instances = max(int(stored.get("instances", 0)), config.instances)
    return dataclasses.replace(config, values=values, instances=instances)


def _shaping(train: TrainConfig, config: SweepConfig) -> dict[str, Any]:
    """The training fields that determine ``config``'s adapter (none without training)."""
    if config.method == "none" or config.adapter is not None:
        return {}
    return {**train.base(), **train.objective_fields(config.method)}


def _prepare_run_dir(
    config: SweepConfig, card: DeviceCard, out_dir: Path
) -> tuple[dict[str, Any], list[dict]]:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CimsimError(f"cannot use {out_dir} as the results folder: {err.strerror}") from None
    config_file = out_dir / CONFIG_FILE
    record: dict[str, Any] = {}
    if config_file.exists():
        record = read_json(config_file)
        if record.get("schema") != SCHEMA_VERSION:
            raise CimsimError(
                f"{config_file} has schema {record.get('schema')!r}, not {SCHEMA_VERSION}"
            )
        record["config"] = to_dict(_check_resumable(record, config, card, out_dir))
    elif (out_dir / POINTS_FILE).exists():
        raise CimsimError(f"{out_dir} has {POINTS_FILE} but no {CONFIG_FILE}; choose another --out")
    elif (out_dir / COMPARISON_FILE).exists():
        raise CimsimError(f"{out_dir} holds a comparison, not a single run; choose another --out")
    return record, read_points(out_dir / POINTS_FILE, repair=True, unique=SWEEP_POINT)


@contextlib.contextmanager
def programmed(
    loaded: Any,
    scorer: Any,
    card: DeviceCard,
    seed: int,
    engine: str,
    placement: Placement | None = None,
    in_place: bool = False,
) -> Iterator[Any]:
    """A scorer whose model runs as chip ``seed`` of ``card`` on ``engine``, with the layers
    ``placement`` matches kept digital (``in_place``: :func:`cimsim.chip.deploy.deploy`)."""
    if engine == "cimsim":
        from cimsim.chip.deploy import deploy

        # No undeploy between points: the next chip overwrites the same buffers.
        digital = placement.predicate if placement is not None else None
        deploy(loaded.model, card.noise, seed, card.tile, digital, in_place)
        yield scorer
        return
    from cimsim.chip.aihwkit_engine import aihwkit_deploy
    from cimsim.eval.scoring import make_scorer

    analog = aihwkit_deploy(loaded.model, card, seed)
    tokens = getattr(scorer, "prompt_tokens", "joined")  # the causal scorer's; encoders have none
    yield make_scorer(dataclasses.replace(loaded, model=analog), scorer.max_length, False, tokens)


@dataclasses.dataclass
class Deployment:
    """What every point of a run evaluates: the task and its test subset, the model with its
    adapter, and the scorer."""

    task: Any
    test: Any
    loaded: Any
    scorer: Any
    adapter_dir: Path | None
    adapter_record: dict[str, Any] | None


def check_card(config: SweepConfig, card: DeviceCard) -> DeviceCard | None:
    """Refuse, before any work, what the engine cannot simulate; return the training noise's
    card (None for methods that train without noise)."""
    if config.engine == "aihwkit":
        from cimsim.chip.aihwkit_engine import rpu_config

        for value in config.values:
            rpu_config(card.with_value(config.vary, value))
    noisy_training = config.method in ("noise-aware", "halora", "auto-halora")
    return config.train.load_noise_card() if noisy_training else None


def load_deployment(
    config: SweepConfig,
    train_card: DeviceCard | None,
    cache_dir: Path,
    progress: Progress,
) -> Deployment:
    """Load the task, the model and its adapter (trained and cached, or from a path)."""
    from cimsim.adapters.lora import load_adapter
    from cimsim.adapters.train import trained_adapter
    from cimsim.eval.models import load_model
    from cimsim.eval.scoring import make_scorer
    from cimsim.eval.tasks import load_task

    task = load_task(
        config.task,
        cache_dir=cache_dir,
        text_column=config.text_column,
        label_column=config.label_column,
    )
    test = task.test.subset(config.eval.test_size, seed=config.seed)
    progress.log(f"loading model {config.model}")
    loaded = load_model(config.model, device=config.compute_device, dtype=config.dtype)
    scorer = make_scorer(loaded, config.eval.max_length, prompt_tokens=config.eval.prompt_tokens)
    adapter_record: dict[str, Any] | None = None
    adapter_dir: Path | None = None
    if config.adapter is not None:
        load_adapter(loaded.model, Path(config.adapter))
        adapter_record = {"source": str(Path(config.adapter).resolve())}
        adapter_dir = Path(config.adapter)
    elif config.method != "none":
        lora = config.lora.resolve(loaded.lora_targets)
        adapter_dir, adapter_record = trained_adapter(
            loaded,
            scorer,
            task,
            lora,
            config.train,
            cache_dir,
            progress,
            config.method,
            card=train_card,
        )
    return Deployment(task, test, loaded, scorer, adapter_dir, adapter_record)


def copy_adapter(deployment: Deployment, out_dir: Path) -> None:
    """The evaluated adapter into ``out_dir/adapter``, copied whole or not at all: an
    interrupted copy leaves only the partial folder, which the next run replaces."""
    if deployment.adapter_dir is None or (out_dir / "adapter").exists():
        return
    partial = out_dir / ".adapter.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(deployment.adapter_dir, partial)
    partial.rename(out_dir / "adapter")


def placement_of(config: SweepConfig, deployment: Deployment) -> dict[str, Any]:
    """The placement's record: pattern, layers kept digital, analog weights that remain."""
    from cimsim.chip.deploy import tile_weights

    return placement_record(tile_weights(deployment.loaded.model), config.placement)


def describe(config: SweepConfig, card: DeviceCard, deployment: Deployment) -> dict[str, Any]:
    """The parts of a run's config.json that say what was evaluated: card, model, task, axis."""
    loaded, task = deployment.loaded, deployment.task
    return {
        "card": card.to_dict(),
        "model": {
            "name": loaded.name,
            "kind": loaded.kind,
            "source": loaded.source,
            "path": loaded.path,
            "fingerprint": loaded.fingerprint,
            "params": loaded.n_params,
        },
        "task": {
            "name": task.name,
            "source": task.source,
            "fingerprint": task.fingerprint,
            "label_names": list(task.label_names),
            "n_train": len(task.train),
            "n_test": len(task.test),
            "n_eval": len(deployment.test),
        },
        "axis": {
            "varied": config.vary,
            "unit": card.unit(config.vary),
            "noise_model": card.noise.name,
            "sigma_unit": card.noise.sigma_unit,
            "formula": (type(card.noise).__doc__ or "").strip(),
            "chip_seed_rule": "sha256(f'{seed}/{card}/{field}={value!r}/{instance}')[:15 hex]",
        },
        "placement": placement_of(config, deployment),
        "adapter": deployment.adapter_record,
    }


def pack_bits(correct: Any) -> str:
    """A bool vector as hex (bit i of the vector is bit i of the bytes, little-endian)."""
    import numpy as np

    return np.packbits(np.asarray(correct, dtype=bool), bitorder="little").tobytes().hex()


def unpack_bits(text: str, n: int) -> Any:
    """:func:`pack_bits`'s inverse: an ``(n,)`` numpy bool vector."""
    import numpy as np

    raw = np.frombuffer(bytes.fromhex(text), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little")[:n].astype(bool)


@one_writer
def run_sweep(
    config: SweepConfig,
    out_dir: Path,
    *,
    cache_dir: Path,
    card: DeviceCard | None = None,
    progress: Progress | None = None,
    executor: Any = None,
) -> Path:
    """Run (or resume) the sweep into ``out_dir``; returns ``out_dir``. ``card`` is
    ``config.resolve_card()`` when the caller has it (resolved here otherwise). ``executor``
    (:class:`cimsim.runs.executors.RayExecutor`) evaluates the chips elsewhere; this process
    stays the only writer of the folder.

    Every row records, against the digital reference on the same examples, how many examples
    the chip ``broken`` (digital right, chip wrong) and ``fixed`` (the reverse); the digital
    row keeps its per-example results (``correct``, :func:`pack_bits`) so a resumed run pairs
    new chips with the same reference."""
    from cimsim.chip.deploy import undeploy
    from cimsim.eval.evaluate import evaluate

    progress = progress or Silent()
    # Before any work: a bad card or value fails at once.
    card = card if card is not None else config.resolve_card()
    train_card = check_card(config, card)
    record, rows = _prepare_run_dir(config, card, out_dir)
    done = {tuple(r[key] for key in SWEEP_POINT) for r in rows}
    if rows:
        progress.log(f"resuming {out_dir}: {len(rows)} finished points are kept")
    pending = [
        (value, instance)
        for value in sorted(config.values)
        for instance in range(config.instances)
        if (card.name, config.vary, value, instance) not in done
    ]
    need_digital = ("digital", config.vary, None, -1) not in done
    if not pending and not need_digital:  # no model to load, no adapter to train
        _write_record(record, out_dir)
        return out_dir
    deployment = load_deployment(config, train_card, cache_dir, progress)
    loaded, scorer, task, test = (
        deployment.loaded,
        deployment.scorer,
        deployment.task,
        deployment.test,
    )
    copy_adapter(deployment, out_dir)
    if deployment.adapter_record and deployment.adapter_record.get("log"):
        from cimsim.runs.train import write_training_log

        title = f"{config.model} on {deployment.task.name}: {config.method}"
        write_training_log(deployment.adapter_record, out_dir, title)

    record.setdefault("schema", SCHEMA_VERSION)
    record.setdefault("config", to_dict(config))
    record.update(describe(config, card, deployment))
    _write_record(record, out_dir)

    base_row = {
        "model": config.model,
        "task": config.task,
        "method": config.method,
        "varied": config.vary,
    }
    progress.stage(f"sweeping {config.vary} ({card.name})", len(pending) + int(need_digital))

    def finish(row: dict[str, Any], correct: Any) -> None:
        row = {**base_row, **row}
        if reference is not None and row["card"] != "digital" and correct is not None:
            row["broken"] = int((reference & ~correct).sum())
            row["fixed"] = int((~reference & correct).sum())
        append_point(out_dir / POINTS_FILE, row)
        rows.append(row)
        write_atomic(out_dir / RESULTS_CSV, points_frame(rows).to_csv(index=False))
        progress.advance()

    reference = _reference(rows, len(test))  # the digital row's per-example results, if kept
    if need_digital:
        started = time.perf_counter()
        result = evaluate(scorer, task, test, config.eval.batch_size)
        assert result.correct is not None  # evaluate always records the examples
        reference = result.correct.numpy()
        digital: dict[str, Any] = {
            "card": "digital",
            "noise_model": "digital",
            "value": None,
            "instance": -1,
        }
        digital.update(value_unit="", sigma=None, chip_seed=None, correct=pack_bits(reference))
        digital.update(accuracy=result.accuracy, n_correct=result.n_correct)
        digital.update(n_examples=result.n_examples)
        digital["eval_seconds"] = round(time.perf_counter() - started, 3)
        finish(digital, None)
    if executor is not None and pending:
        args = (config, card, train_card, str(cache_dir))
        results = executor.map(_point_worker, args, _remote_point, pending)
    else:
        results = (chip_point(deployment, config, card, v, i) for v, i in pending)
    seen = set()
    for row, correct in results:
        key = (row["value"], row["instance"])
        if key not in seen:  # a retried remote point can come back twice: the first is kept
            seen.add(key)
            finish(row, unpack_bits(correct, len(test)))
    undeploy(loaded.model)
    write_atomic(out_dir / RESULTS_CSV, points_frame(rows).to_csv(index=False))
    return out_dir


def _write_record(record: dict[str, Any], out_dir: Path) -> None:
    """``config.json`` with this session (its start and environment) added."""
    record.setdefault("sessions", []).append({"started": time.time(), **environment()})
    write_atomic(out_dir / CONFIG_FILE, json.dumps(record, indent=2, default=str) + "\n")


def chip_point(
    deployment: Deployment, config: SweepConfig, card: DeviceCard, value: float, instance: int
) -> tuple[dict[str, Any], str]:
    """Program chip ``instance`` at ``value`` and evaluate it: the point's row (without the
    paired counts) and its per-example results, packed. Local and distributed runs call it."""
    from cimsim.eval.evaluate import evaluate

    point_card = card.with_value(config.vary, value)
    seed = chip_seed(config.seed, card.name, config.vary, value, instance)
    started = time.perf_counter()
    loaded, scorer = deployment.loaded, deployment.scorer
    chip = programmed(
        loaded, scorer, point_card, seed, config.engine, config.placement, config.in_place
    )
    with chip as chip_scorer:
        result = evaluate(chip_scorer, deployment.task, deployment.test, config.eval.batch_size)
    row: dict[str, Any] = {
        "card": card.name,
        "noise_model": card.noise.name,
        "value": value,
        "value_unit": card.unit(config.vary),
        "sigma": point_card.noise.sigma,
        "sigma_unit": card.noise.sigma_unit,
        "instance": instance,
        "chip_seed": seed,
    }
    if config.vary != "sigma":
        row[config.vary] = value
    row.update(accuracy=result.accuracy, n_correct=result.n_correct, n_examples=result.n_examples)
    row["eval_seconds"] = round(time.perf_counter() - started, 3)
    assert result.correct is not None
    return row, pack_bits(result.correct.numpy())


def _point_worker(
    config: SweepConfig, card: DeviceCard, train_card: DeviceCard | None, cache_dir: str
) -> tuple[Deployment, SweepConfig, DeviceCard]:
    """A distributed worker's state: the deployment, loaded once (the driver filled the cache)."""
    return load_deployment(config, train_card, Path(cache_dir), Silent()), config, card


def _remote_point(
    state: tuple[Deployment, SweepConfig, DeviceCard], point: tuple[float, int]
) -> tuple[dict[str, Any], str]:
    deployment, config, card = state
    return chip_point(deployment, config, card, *point)


def _reference(rows: list[dict[str, Any]], n: int) -> Any:
    """The digital row's per-example results (None in a folder written without them)."""
    for row in rows:
        if row.get("card") == "digital" and isinstance(row.get("correct"), str):
            return unpack_bits(row["correct"], n)
    return None
