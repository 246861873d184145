"""Speed and memory of cimsim's engine beside plain PyTorch and aihwkit's torch tile, in one run.

    .venv/bin/python benchmarks/engine.py [--model toy|minilm|smollm2-135m] [--repeats N]
                                          [--threads N] [--out FILE]

Prints a Markdown table and writes ``benchmarks/results/engine-<model>.json`` (schema
``SCHEMA``: the settings, every raw timing, the ratios, the targets of DESIGN.md and the
environment). Machines are noisy, so only ratios measured side by side count: in every repeat
the engines run one after the other in a rotating order, and each number is the median over
repeats.

What is measured (the model's analog layers are the ones ``cimsim.chip.deploy`` maps; the same
set is converted by aihwkit):

* memory: bytes a deployed chip adds, divided by the bytes of the analog layers' digital weights.
  cimsim: the buffers ``deploy`` fills (``programmed_weight``, ``channel_scale``); the digital
  model is shared. aihwkit: every tensor its analog layers hold, deduplicated by storage: the
  layers' parameters and buffers (tile weights, mapping scales, alpha, biases) and the tiles'
  internals (``reference_combined_weights``, ``programmed_weights``, ``drift_noise_parameters``,
  ``drift_readout_tensor``, ``drift_baseline``). aihwkit's deep copy of the digital rest of the
  model (embeddings, norms, head) is reported separately and not in the ratio.
* throughput: forward passes on one fixed input (random token ids for the language models,
  N(0, 1) inputs for ``toy``), relative to the plain PyTorch model, for (i) weight noise only
  (``channel`` card, ideal periphery) and (ii) 8-bit DAC/ADC, output noise 0.04, 512-row tiles,
  with bound management none and iterative.
* re-programming: ns per analog weight of ``cimsim.chip.deploy.deploy`` on an already deployed model
  vs aihwkit's ``program_analog_weights()``, for the ``channel`` and ``pcm`` cards.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import itertools
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cimsim.chip.aihwkit_engine import aihwkit_deploy
from cimsim.chip.cards import DeviceCard, load_card
from cimsim.chip.deploy import analog_layers, attach_tiles, count_analog_weights, deploy
from cimsim.chip.tile import TileConfig
from cimsim.core.io import write_atomic
from cimsim.runs.results import environment

SCHEMA = "cimsim.benchmark.engine/1"
RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {  # DESIGN.md, "Targets"; aihwkit's figures there are what it measured, not targets
    "memory": ("<=", 1.25),
    "throughput-weight-noise": (">=", 0.9),
    "throughput-periphery": (">=", 0.6),
    "reprogram_ns_per_weight": ("<=", 10.0),
}
MIN_SAMPLE_S = 0.2
PERIPHERY = TileConfig(rows=512, cols=512, dac_bits=8, adc_bits=8, out_noise=0.04)


def _card(name: str, tile: TileConfig | None = None) -> DeviceCard:
    return dataclasses.replace(load_card(name), tile=tile or TileConfig())


SETTINGS = {
    "weight-noise": _card("channel"),
    "periphery-bm-none": _card("channel", PERIPHERY),
    "periphery-bm-iterative": _card(
        "channel", dataclasses.replace(PERIPHERY, bound_management="iterative")
    ),
}


def load(name: str) -> tuple[nn.Module, dict[str, Any], str]:
    """The digital model, the fixed keyword arguments of every forward pass, and what they are."""
    generator = torch.Generator().manual_seed(0)
    if name == "toy":
        model = nn.Sequential(*(nn.Linear(256, 256) for _ in range(4))).eval()
        return model, {"input": torch.randn(512, 256, generator=generator)}, "(512, 256) N(0,1)"
    from cimsim.eval.models import load_model

    loaded = load_model(name)
    batch, seq = (8, 64) if loaded.kind == "encoder" else (4, 64)
    config: Any = loaded.model.config
    vocab = config.vocab_size
    ids = torch.randint(0, vocab, (batch, seq), generator=generator)
    inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if loaded.kind == "causal":
        inputs["use_cache"] = False  # one scoring pass, as evaluation does
    return loaded.model, inputs, f"token ids ({batch}, {seq})"


def forward(model: nn.Module, inputs: dict[str, Any]) -> Callable[[], Any]:
    return lambda: model(**inputs)


def interleaved(runs: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each run, one sample per repeat; the order rotates so that drifts of
    a shared machine hit every engine alike. A sample loops a fast call for >= MIN_SAMPLE_S."""
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    calls = {}
    with torch.no_grad():
        for name, run in runs.items():
            start = time.perf_counter()
            run()  # warm-up: allocations, lazy initialisation; sizes the sample
            calls[name] = max(1, math.ceil(MIN_SAMPLE_S / (time.perf_counter() - start)))
        for r in range(repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                start = time.perf_counter()
                for _ in range(calls[name]):
                    runs[name]()
                times[name].append((time.perf_counter() - start) / calls[name])
    return times


def _nbytes(tensors: list[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors``."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def cimsim_bytes(model: nn.Module) -> int:
    tensors = []
    for layer in analog_layers(model):
        tensors += [t for t in (layer.programmed_weight, layer.channel_scale) if t is not None]
    return _nbytes(tensors)


def aihwkit_bytes(analog: Any) -> tuple[int, int]:
    """(bytes of the analog layers and their tiles' internals, bytes of the rest of the copy)."""
    held: list[torch.Tensor] = []
    for _, layer in analog.named_analog_layers():
        held += list(layer.parameters()) + list(layer.buffers())
        for tile in layer.analog_tiles():
            for value in vars(tile).values():
                values = value if isinstance(value, (list, tuple)) else [value]
                held += [v for v in values if isinstance(v, torch.Tensor)]
    everything = list(analog.parameters()) + list(analog.buffers())
    layer_bytes = _nbytes(held)
    return layer_bytes, _nbytes(held + everything) - layer_bytes


def measure_setting(
    digital: nn.Module, cim: nn.Module, inputs: dict, card: DeviceCard, repeats: int
) -> dict[str, Any]:
    deploy(cim, card.noise, seed=0, tile=card.tile)
    analog = aihwkit_deploy(digital, card, seed=0)
    aihwkit_layers, aihwkit_rest = aihwkit_bytes(analog)
    times = interleaved(
        {
            "digital": forward(digital, inputs),
            "cimsim": forward(cim, inputs),
            "aihwkit": forward(analog, inputs),
        },
        repeats,
    )
    del analog
    gc.collect()
    return {
        "card": card.to_dict(),
        "bytes": {"cimsim": cimsim_bytes(cim), "aihwkit": aihwkit_layers},
        "aihwkit_copy_of_digital_rest_bytes": aihwkit_rest,
        "seconds": times,
    }


def measure_reprogramming(
    digital: nn.Module, cim: nn.Module, card: DeviceCard, repeats: int
) -> dict[str, Any]:
    deploy(cim, card.noise, seed=0, tile=card.tile)  # buffers exist: re-programming reuses them
    analog: Any = aihwkit_deploy(digital, card, seed=0)
    aihwkit_layers, _ = aihwkit_bytes(analog)
    seeds = itertools.count(1)  # a new chip instance each call
    times = interleaved(
        {
            "cimsim": lambda: deploy(cim, card.noise, seed=next(seeds), tile=card.tile),
            "aihwkit": analog.program_analog_weights,
        },
        repeats,
    )
    del analog
    gc.collect()
    return {
        "card": card.to_dict(),
        "bytes": {"cimsim": cimsim_bytes(cim), "aihwkit": aihwkit_layers},
        "seconds": times,
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def run(model_name: str, repeats: int) -> dict[str, Any]:
    load_before = os.getloadavg()[0]  # the machine is shared: say how busy it was
    digital, inputs, input_desc = load(model_name)
    digital.requires_grad_(False)
    cim = copy.deepcopy(digital)
    attach_tiles(cim)
    n_weights = count_analog_weights(cim)
    weight_bytes = 4 * n_weights
    throughput = {
        name: measure_setting(digital, cim, inputs, card, repeats)
        for name, card in SETTINGS.items()
    }
    reprogram = {
        name: measure_reprogramming(digital, cim, _card(name), repeats)
        for name in ("channel", "pcm")
    }
    return {
        "schema": SCHEMA,
        "model": model_name,
        "input": input_desc,
        "repeats": repeats,
        "analog_weights": n_weights,
        "analog_weight_bytes": weight_bytes,
        "throughput": throughput,
        "reprogram": reprogram,
        "targets": TARGETS,
        "environment": {
            **environment(),
            "torch_threads": torch.get_num_threads(),
            "cpu": _cpu_name(),
            "cpu_count": os.cpu_count(),
            "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        },
    }


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _speed_ratio(digital: list[float], engine: list[float]) -> float:
    """Median over repeats of digital / engine time, each pair from the same repeat (so a slow
    moment of the shared machine slows both)."""
    return _median([d / e for d, e in zip(digital, engine, strict=True)])


def summarise(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (measure, setting): cimsim's and aihwkit's figure and cimsim's target."""
    rows = []
    weight_bytes = result["analog_weight_bytes"]
    for name, entry in {**result["throughput"], **result["reprogram"]}.items():
        rows.append(
            {
                "measure": "memory added / linear-weight bytes",
                "setting": name,
                "cimsim": entry["bytes"]["cimsim"] / weight_bytes,
                "aihwkit": entry["bytes"]["aihwkit"] / weight_bytes,
                "target": "memory",
                "unit": "x",
            }
        )
    for name, entry in result["throughput"].items():
        seconds = entry["seconds"]
        rows.append(
            {
                "measure": "throughput vs plain torch "
                f"({_median(seconds['digital']) * 1e3:.1f} ms/forward)",
                "setting": name,
                "cimsim": _speed_ratio(seconds["digital"], seconds["cimsim"]),
                "aihwkit": _speed_ratio(seconds["digital"], seconds["aihwkit"]),
                "target": "throughput-weight-noise"
                if name == "weight-noise"
                else "throughput-periphery",
                "unit": "x",
            }
        )
    for name, entry in result["reprogram"].items():
        per_weight = 1e9 / result["analog_weights"]
        rows.append(
            {
                "measure": "re-programming, ns per weight",
                "setting": name,
                "cimsim": _median(entry["seconds"]["cimsim"]) * per_weight,
                "aihwkit": _median(entry["seconds"]["aihwkit"]) * per_weight,
                "target": "reprogram_ns_per_weight",
                "unit": "ns",
            }
        )
    for row in rows:
        op, bound = TARGETS[row["target"]]
        row["target"] = f"{op} {bound:g}"
        row["met"] = row["cimsim"] <= bound if op == "<=" else row["cimsim"] >= bound
    return rows


def markdown(result: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    env = result["environment"]
    lines = [
        f"### {result['model']}: {result['analog_weights']:,} analog weights, input "
        f"{result['input']}, median of {result['repeats']}, {env['torch_threads']} threads, "
        f"torch {env['packages']['torch']}, aihwkit {env['packages']['aihwkit']}, load average "
        f"{env['load_average_1min']['before']:.1f} -> {env['load_average_1min']['after']:.1f} "
        f"on {env['cpu_count']} CPUs",
        "",
        "| measure | setting | cimsim | aihwkit | cimsim target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        fmt = "{:.2f}x" if row["unit"] == "x" else "{:.1f}"
        lines.append(
            f"| {row['measure']} | {row['setting']} | {fmt.format(row['cimsim'])} | "
            f"{fmt.format(row['aihwkit'])} | {row['target']} | {'yes' if row['met'] else 'NO'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toy", choices=["toy", "minilm", "smollm2-135m"])
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats (median is kept)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, help="result file (default: results/engine-MODEL.json)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args.model, args.repeats)
    rows = summarise(result)
    result["summary"] = rows
    path = args.out or RESULTS / f"engine-{args.model}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(result, indent=2) + "\n")
    print(markdown(result, rows))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
