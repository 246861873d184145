"""Black-box verification of a shipped model: only its answers to the key's queries are read.

The suspect is a folder ``cimsim watermark assemble`` wrote (or any peft adapter for the kit's
model, with an optional ``base_delta.safetensors``), optionally run as a chip of a device card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from cimsim.adapters.lora import fused, load_adapter
from cimsim.adapters.watermark import (
    answers_of,
    false_positive_bound,
    fold,
    parse_signature,
    read_signature,
    signature_text,
)
from cimsim.watermark.kit import SHIPPED_DELTA, read_kit


def verify_model(
    kit_dir: Path,
    suspect: Path,
    claimed: str,
    *,
    card: str | None = None,
    sigma: float | None = None,
    chip: int = 0,
    cache_dir: Path,
    device: str = "cpu",
) -> dict[str, Any]:
    """Read ``suspect``'s signature with the kit's key and decide whether it is ``claimed``."""
    from cimsim.eval.models import load_model
    from cimsim.eval.scoring import make_scorer
    from cimsim.eval.tasks import load_task

    record, config, key = read_kit(kit_dir)
    signature = parse_signature(claimed, config.watermark.bits)
    task = load_task(config.task, cache_dir=cache_dir)
    loaded = load_model(config.model, device=device)
    load_adapter(loaded.model, suspect, "default")
    if (suspect / SHIPPED_DELTA).is_file():
        fold(loaded.model, load_file(str(suspect / SHIPPED_DELTA), device=device))
    chip_record: dict[str, Any] = {"card": "digital"}
    if card is not None:
        from cimsim.runs.sweep import program_chip

        chip_record = program_chip(loaded.model, card, sigma, chip)
    scorer = make_scorer(loaded, config.eval.max_length, prompt_tokens=config.eval.prompt_tokens)
    with fused(loaded.model):
        answer = answers_of(scorer, task, config.eval.batch_size)
        reading = read_signature(answer, key, record["queries"], config.watermark.threshold)
    return {
        "read": signature_text(reading.bits),
        "claimed": signature_text(signature),
        "verified": reading.verifies(signature),
        "bit_errors": reading.errors(signature),
        "counts": [list(c) for c in reading.counts],
        "queries": reading.queries,
        "false_positive_bound": false_positive_bound(task.n_labels, key.bits),
        "chip": chip_record,
    }
