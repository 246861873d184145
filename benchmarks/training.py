"""Cost of one training step per method, measured side by side in one run.

    .venv/bin/python benchmarks/training.py [--model minilm] [--repeats N] [--batch 16]

One optimiser step = the method's loss (cimsim.objectives), backward and AdamW, on a fixed
batch of training texts. In every repeat the methods run one after the other in a rotating
order; each number is the median over repeats, and the ratio to plain ``lora`` is taken within
each repeat (machines are shared and noisy, so only such ratios mean anything). Target
(DESIGN.md): a halora step costs at most 2.1x a lora step. Writes
``benchmarks/results/training-<model>.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from cimsim.devices import load_card
from cimsim.lora import LoraConfig
from cimsim.models import load_model
from cimsim.objectives import OBJECTIVES, objective_loss
from cimsim.scoring import make_scorer
from cimsim.tasks import load_task
from cimsim.train import init_lora

TARGET = 2.1
RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--task", default="bbc-news")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()

    loaded = load_model(args.model)
    init_lora(loaded.model, LoraConfig().resolve(loaded.lora_targets), seed=0)
    scorer = make_scorer(loaded, max_length=64)
    task = load_task(args.task)
    texts = list(task.train.texts[: args.batch])
    labels = torch.tensor(task.train.labels[: args.batch])
    card = load_card("channel").with_value("sigma", 0.05)
    params = [p for p in scorer.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=1e-4)

    def step(method: str, index: int) -> float:
        started = time.perf_counter()
        loss, _ = objective_loss(
            method,
            scorer,
            loaded.model,
            texts,
            labels,
            task,
            card=card,
            lam=0.5,
            mu=1e-3,
            seed=0,
            step=index,
        )
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return time.perf_counter() - started

    for method in OBJECTIVES:  # warm-up: allocator, first programming
        step(method, 0)
    seconds: dict[str, list[float]] = {m: [] for m in OBJECTIVES}
    for repeat in range(args.repeats):
        order = OBJECTIVES[repeat % 3 :] + OBJECTIVES[: repeat % 3]
        for method in order:
            seconds[method].append(step(method, repeat + 1))
    ratios = {
        m: statistics.median(t / base for t, base in zip(seconds[m], seconds["lora"], strict=True))
        for m in OBJECTIVES
    }
    print(
        f"### training step, {args.model}, batch {args.batch} x 64 tokens, median of "
        f"{args.repeats}, {torch.get_num_threads()} threads"
    )
    print("| method | seconds per step | × lora step | target |")
    print("|---|---|---|---|")
    for m in OBJECTIVES:
        target = (
            f"≤ {TARGET}: {'met' if ratios[m] <= TARGET else 'MISSED'}" if m == "halora" else ""
        )
        print(f"| {m} | {statistics.median(seconds[m]):.3f} | {ratios[m]:.2f} | {target} |")
    RESULTS.mkdir(exist_ok=True)
    record = {
        "schema": "cimsim.benchmark.training/1",
        "model": args.model,
        "batch": args.batch,
        "repeats": args.repeats,
        "seconds": seconds,
        "ratio_to_lora": ratios,
        "target_halora": TARGET,
        "environment": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "platform": platform.platform(),
        },
    }
    path = RESULTS / f"training-{args.model}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
