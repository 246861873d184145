"""The GPU path, checked in a few minutes: the same runs on the CPU and on CUDA, side by side.

    .venv/bin/python benchmarks/gpu_check.py [--device cuda:0] [--cache-dir DIR]

Where CUDA exists it runs, and prints one table:

1. **Noise statistics**: each shipped noise model programs a (768, 768) weight on both devices
   with the same seeds; the normalised programming error's mean and standard deviation must
   agree within 3 % (CPU and CUDA generators give different streams for one seed, so chips are
   compared by their statistics, not bit for bit).
2. **The default sweep at a reduced grid** (MiniLM + LoRA, BBC News, ``channel``, σ 0.02 and
   0.05, 3 chips, 200 articles) on both devices, the adapter trained once on the CPU and reused:
   the digital accuracy must agree to one article, each σ's mean chip accuracy within three
   standard errors of the difference (plus one article); seconds per point on each device.
3. **SmolLM2-135M forward passes** (16 × 128 tokens): digital, a ``channel`` chip and a chip
   behind the ``rram-macro`` periphery, and re-programming, timed on CUDA (medians of 5).

It exits 1 when a check fails. On a machine without CUDA it says so and exits 0;
``--device cpu`` runs every step CPU against CPU, which exercises the script itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def noise_statistics(device: str) -> list[dict[str, object]]:
    from cimsim.chip.cards import load_card, shipped_cards
    from cimsim.chip.deploy import chip_generator, program_weights

    rows = []
    target = torch.randn(768, 768, generator=torch.Generator().manual_seed(0)) * 0.05
    for name in shipped_cards():
        card = load_card(name)
        stats = {}
        for where in ("cpu", device):
            errors = []
            for seed in range(5):
                weights = target.to(where)
                out = program_weights(card.noise, weights, chip_generator(seed, where), card.tile)
                errors.append(((out - weights) / weights.abs().amax()).float().cpu().flatten())
            error = torch.cat(errors)
            stats[where] = (float(error.mean()), float(error.std()))
        (cpu_mean, cpu_std), (gpu_mean, gpu_std) = stats["cpu"], stats[device]
        ok = abs(gpu_std - cpu_std) <= 0.03 * cpu_std + 1e-9 and abs(gpu_mean - cpu_mean) <= (
            0.03 * cpu_std + 1e-9
        )
        rows.append({"check": f"noise {name}", "cpu": f"{cpu_mean:+.2e} ± {cpu_std:.3e}",
                     "gpu": f"{gpu_mean:+.2e} ± {gpu_std:.3e}", "ok": ok})  # fmt: skip
    return rows


def reduced_sweep(device: str, cache: Path) -> list[dict[str, object]]:
    import pandas as pd

    from cimsim.eval.config import EvalConfig
    from cimsim.runs.sweep import SweepConfig, run_sweep

    base = SweepConfig(values=(0.02, 0.05), instances=3, eval=EvalConfig(test_size=200))
    frames, seconds = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for side, where in (("reference", "cpu"), ("device", device)):
            # The CPU first: it trains the adapter the device reuses (same cache key).
            config = dataclasses.replace(base, compute_device=where)
            out = Path(scratch) / side
            started = time.perf_counter()
            run_sweep(config, out, cache_dir=cache)
            seconds[side] = time.perf_counter() - started
            frames[side] = pd.read_csv(out / "results.csv")
    rows = []
    cpu, gpu = frames["reference"], frames["device"]
    digital = [float(f.loc[f["card"] == "digital", "accuracy"].iloc[0]) for f in (cpu, gpu)]
    rows.append(
        {
            "check": "digital accuracy",
            "cpu": f"{digital[0]:.3f}",
            "gpu": f"{digital[1]:.3f}",
            "ok": abs(digital[0] - digital[1]) <= 1 / 200,
        }
    )
    for value in base.values:
        a, b = (f.loc[(f["card"] != "digital") & (f["value"] == value), "accuracy"]
                for f in (cpu, gpu))  # fmt: skip
        spread = (a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)) ** 0.5
        ok = abs(a.mean() - b.mean()) <= 3 * spread + 1 / 200
        rows.append({"check": f"chips at sigma {value:g} (mean ± sd)",
                     "cpu": f"{a.mean():.3f} ± {a.std():.3f}",
                     "gpu": f"{b.mean():.3f} ± {b.std():.3f}", "ok": bool(ok)})  # fmt: skip
    points = len(base.values) * base.instances + 1
    rows.append({"check": "sweep seconds per point (incl. load)",
                 "cpu": f"{seconds['reference'] / points:.2f}",
                 "gpu": f"{seconds['device'] / points:.2f}", "ok": True})  # fmt: skip
    return rows


def forward_timing(device: str) -> list[dict[str, object]]:
    from cimsim.chip.cards import load_card
    from cimsim.chip.deploy import count_analog_weights, deploy, undeploy
    from cimsim.eval.models import load_model

    loaded = load_model("smollm2-135m", device=device)
    model = loaded.model.eval()
    ids = torch.randint(0, 1000, (16, 128), generator=torch.Generator().manual_seed(0)).to(device)

    def synchronize() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)

    def timed(step) -> float:  # median of 5 after a warm-up
        with torch.inference_mode():
            step()
            times = []
            for _ in range(5):
                synchronize()
                started = time.perf_counter()
                step()
                synchronize()
                times.append(time.perf_counter() - started)
        return statistics.median(times)

    digital = timed(lambda: model(input_ids=ids))
    rows = [{"check": "smollm2 forward, digital (ms)", "cpu": "", "gpu": f"{digital * 1e3:.1f}",
             "ok": True}]  # fmt: skip
    for name in ("channel", "rram-macro"):
        card = load_card(name)
        deploy(model, card.noise, 1, card.tile)
        chip = timed(lambda: model(input_ids=ids))
        weights = count_analog_weights(model)
        program = timed(lambda card=card: deploy(model, card.noise, 2, card.tile))
        undeploy(model)
        rows.append(
            {
                "check": f"smollm2 forward, {name} chip (ms; x digital)",
                "cpu": "",
                "gpu": f"{chip * 1e3:.1f} ({digital / chip:.2f}x)",
                "ok": True,
            }
        )
        rows.append({"check": f"re-programming {name} (ns per weight)", "cpu": "",
                     "gpu": f"{program / weights * 1e9:.2f}", "ok": True})  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here (torch.cuda.is_available() is False): nothing to check")
        return 0
    from cimsim.core.paths import default_cache_dir

    cache = args.cache_dir or default_cache_dir()
    rows = noise_statistics(args.device) + reduced_sweep(args.device, cache)
    rows += forward_timing(args.device)
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    print(f"device: {name}; torch {torch.__version__}")
    print("| check | cpu | gpu | ok |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['check']} | {row['cpu']} | {row['gpu']} | {'yes' if row['ok'] else 'NO'} |")
    failed = [row["check"] for row in rows if not row["ok"]]
    if failed:
        print(f"mismatch: {', '.join(map(str, failed))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
