"""Device memory of a deployed chip per analog weight, by dtype and mode, on a real model; the
numbers the on-paper sizing of large models in docs/engine.md starts from.

    .venv/bin/python benchmarks/memory.py [--model smollm2-135m]

For float32 and bfloat16 weights it loads the model, counts the bytes of its parameters, deploys
chip 0 of the channel card (sigma 0.05) buffered and in place, and counts every tensor the chip
adds on the model's device (programmed weights, scales) and what in-place mode keeps on the host
(that a bfloat16 chip is the float32 draw cast is tested in tests/test_deploy.py). Writes
``results/memory-<model>.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from cimsim.chip.cards import load_card
from cimsim.chip.deploy import (
    analog_layers,
    attach_tiles,
    count_analog_weights,
    deploy,
    undeploy,
)
from cimsim.eval.models import load_model
from cimsim.runs.results import environment

HERE = Path(__file__).resolve().parent


def chip_bytes(model: torch.nn.Module) -> tuple[int, int]:
    """(bytes the chip holds on the model's device, bytes waiting on the host)."""
    device = host = 0
    for layer in analog_layers(model):
        for tensor in (layer.programmed_weight, layer.channel_scale):
            if tensor is not None:
                device += tensor.numel() * tensor.element_size()
        if layer._clean is not None:
            host += layer._clean.numel() * layer._clean.element_size()
    return device, host


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    args = parser.parse_args()
    card = load_card("channel").with_value("sigma", 0.05)
    rows = []
    for dtype in ("float32", "bfloat16"):
        loaded = load_model(args.model, dtype=dtype)
        params = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
        attach_tiles(loaded.model)
        analog = count_analog_weights(loaded.model)
        for in_place in (False, True):
            deploy(loaded.model, card.noise, 0, card.tile, in_place=in_place)
            device, host = chip_bytes(loaded.model)
            rows.append(
                {"dtype": dtype, "mode": "in place" if in_place else "buffered",
                 "model_bytes": params, "analog_weights": analog,
                 "chip_device_bytes_per_analog_weight": device / analog,
                 "host_bytes_per_analog_weight": host / analog}
            )  # fmt: skip
            undeploy(loaded.model)
    print("| dtype | mode | model MB | chip adds on device, B/analog weight | on host |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['dtype']} | {r['mode']} | {r['model_bytes'] / 1e6:.0f} | "
            f"{r['chip_device_bytes_per_analog_weight']:.2f} | "
            f"{r['host_bytes_per_analog_weight']:.2f} |"
        )
    out = HERE / "results" / f"memory-{Path(args.model).name}.json"
    out.write_text(json.dumps({"rows": rows, "environment": environment()}, indent=2) + "\n")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
