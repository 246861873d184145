"""``cimsim train`` as a library call: one adapter, trained (or taken from the cache), written to a
folder with its training record, per-step log and loss curve."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cimsim.adapters.lora import LoraConfig
from cimsim.adapters.objectives import OBJECTIVES
from cimsim.adapters.train import TrainConfig, trained_adapter
from cimsim.core.errors import CimsimError
from cimsim.core.io import write_atomic
from cimsim.core.progress import Progress
from cimsim.runs.plots import plot_training, save_figure


def train_to_folder(
    model: str,
    task_name: str,
    method: str,
    config: TrainConfig,
    out_dir: Path,
    *,
    max_length: int,
    prompt_tokens: str = "joined",
    device: str,
    cache_dir: Path,
    progress: Progress | None = None,
) -> list[Path]:
    """``cimsim train``: the adapter (peft format), ``training.json`` (the record),
    ``training_log.csv`` (loss parts per step) and ``loss.png``/``.pdf`` in ``out_dir``."""
    from cimsim.eval.models import load_model
    from cimsim.eval.scoring import make_scorer
    from cimsim.eval.tasks import load_task

    if method not in OBJECTIVES:
        raise CimsimError(f"unknown method '{method}'; choose one of: {', '.join(OBJECTIVES)}")
    card = config.load_noise_card() if method != "lora" else None
    task = load_task(task_name, cache_dir=cache_dir)
    loaded = load_model(model, device=device)
    scorer = make_scorer(loaded, max_length, prompt_tokens=prompt_tokens)
    lora = LoraConfig().resolve(loaded.lora_targets)
    adapter_dir, record = trained_adapter(
        loaded, scorer, task, lora, config, cache_dir, progress, method, card=card
    )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CimsimError(f"cannot use {out_dir} as the output folder: {err.strerror}") from None
    shutil.copytree(adapter_dir, out_dir / "adapter", dirs_exist_ok=True)
    write_atomic(out_dir / "training.json", json.dumps(record, indent=2) + "\n")
    paths = write_training_log(record, out_dir, f"{model} on {task.name}: {method}")
    return [out_dir / "adapter", out_dir / "training.json", *paths]


def write_training_log(record: dict, out_dir: Path, title: str) -> list[Path]:
    """An adapter's training record as ``training_log.csv`` (one row per step: the loss and its
    parts, and what an automatic rule chose) and its figure ``loss.png``/``.pdf``."""
    import pandas as pd

    log = pd.DataFrame(record.get("log") or [{"loss": loss} for loss in record.get("losses", [])])
    log.insert(0, "step", range(len(log)))
    write_atomic(out_dir / "training_log.csv", log.to_csv(index=False))
    figures = save_figure(plot_training(log, title=title), out_dir / "loss")
    return [out_dir / "training_log.csv", *figures]
