"""A continual experiment's config, its results folder's schema and file names.

Kept apart from the runner so that the report (which redraws a folder from its files) and the
runner both read them without importing each other.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path

from cimsim.adapters.gates import GateConfig
from cimsim.adapters.lora import LoraConfig
from cimsim.adapters.train import TrainConfig
from cimsim.chip.cards import DEFAULT_CARD, DeviceCard, load_card
from cimsim.continual.learners import METHODS
from cimsim.core.config import config_hash, to_dict
from cimsim.core.errors import CimsimError
from cimsim.core.ranges import check_chips
from cimsim.eval.config import EvalConfig

SCHEMA = "cimsim.continual/1"
DEFAULT_TASKS = ("movie-yesno", "tweets-yesno", "bbc-yesno")
DEFAULT_METHODS = ("gated", "seq-lora")
CONFIG_FILE, POINTS_FILE = "config.json", "points.jsonl"
GRID_FIELDS = ("methods", "values", "instances", "orders")


@dataclasses.dataclass(frozen=True)
class ContinualConfig:
    """Everything that determines a continual experiment's numbers."""

    model: str = "minilm"
    """Registered model name, local HF directory or hub id."""
    tasks: tuple[str, ...] = DEFAULT_TASKS
    """The task sequence (order 0); registered names or local files."""
    methods: tuple[str, ...] = DEFAULT_METHODS
    """Continual methods: gated, seq-lora, sum, olora, joint."""
    objective: str = "lora"
    """Training objective of every stage: lora, noise-aware or halora
    (:mod:`cimsim.adapters.objectives`)."""
    orders: int = 2
    """Task orders: the given one, its reverse, then seeded permutations."""
    card: str = DEFAULT_CARD
    """Device card of the evaluation chips."""
    values: tuple[float, ...] = (0.05,)
    """Programming-noise sigmas of the evaluation chips, in the card's unit."""
    instances: int = 3
    """Chip instances per sigma."""
    seed: int = 0
    """Root of the branch inits, batch orders, task orders, test subsamples and chip seeds."""
    lora: LoraConfig = LoraConfig()
    """Shape of every branch."""
    train: TrainConfig = TrainConfig(train_size=300)
    """How each stage trains (per task: train_size examples, epochs passes)."""
    gate: GateConfig = GateConfig()
    """gated: gate width and the GPM energy threshold."""
    lam_orth: float = 0.5
    """olora: weight of the orthogonality loss."""
    memory_size: int = 1000
    """gated: training examples of each finished task whose inputs the gates remember (GPM)."""
    prompted: bool = True
    """An encoder reads each text paired with the task's instruction (its prompt without the
    text), as GainLoRA's gates read instruction and input; causal LMs always read the prompt."""
    eval: EvalConfig = EvalConfig(test_size=200)
    """How accuracy is measured (per task)."""
    compute_device: str = "cpu"
    """torch device the model runs on."""

    def __post_init__(self) -> None:
        from cimsim.adapters.objectives import OBJECTIVES

        if len(self.tasks) < 2 or len(set(self.tasks)) != len(self.tasks):
            raise CimsimError(f"--tasks needs at least two distinct tasks, got {self.tasks}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods or len(set(self.methods)) != len(self.methods):
            raise CimsimError(
                f"--methods takes distinct names from {', '.join(METHODS)}; got "
                f"{','.join(self.methods) or 'nothing'}"
            )
        if self.objective not in OBJECTIVES:
            raise CimsimError(
                f"unknown objective '{self.objective}'; choose one of: {', '.join(OBJECTIVES)}"
            )
        n_orders = len(list(itertools.permutations(self.tasks)))
        if not 1 <= self.orders <= n_orders:
            raise CimsimError(f"--orders must be in 1..{n_orders} for {len(self.tasks)} tasks")
        check_chips(self.instances, self.seed)
        if any(not v >= 0 for v in self.values):
            raise CimsimError("noise values must be >= 0")
        if self.memory_size < 1:
            raise CimsimError(f"memory_size must be >= 1, got {self.memory_size}")
        if not self.lam_orth >= 0:
            raise CimsimError(f"--lam-orth must be >= 0, got {self.lam_orth}")

    def resolve_card(self) -> DeviceCard:
        """The evaluation chips' card, loaded once by the run and passed down; a user error if
        it refuses one of the sigmas."""
        card = load_card(self.card)
        for value in self.values:
            card.with_value("sigma", value)
        return card

    def default_out_dir(self, root: Path = Path("runs")) -> Path:
        """``runs/continual-<model>-<n tasks>-<objective>-<hash of the config>`` (the methods and
        sigmas are left out of the hash: a run grows by them)."""
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(self.model).name)
        grid = {k: v for k, v in to_dict(self).items() if k not in ("methods", "values")}
        return root / (
            f"continual-{slug}-{len(self.tasks)}tasks-{self.objective}-{config_hash(grid)}"
        )
