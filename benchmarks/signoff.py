"""Sign-off cost: the full grid on the full test set against bisection with early decisions.

    .venv/bin/python benchmarks/signoff.py                 # MiniLM + LoRA, BBC News, 50 chips

Both runs judge the same common chips of the same deployment against the same rule (budget,
target yield, confidence); (a) evaluates every chip at every grid value on every test example,
(b) bisects each chip's threshold and stops a chip's evaluation once its decision on the full
test set is determined. It prints a Markdown table and writes ``results/signoff-<model>.json``
(example evaluations, wall time, the certified tolerance of each, whether they agree).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from cimsim.core.paths import default_cache_dir
from cimsim.core.ranges import parse_range
from cimsim.eval.config import EvalConfig
from cimsim.runs.results import environment
from cimsim.runs.sweep import SweepConfig
from cimsim.runs.tolerance import SignoffConfig, ToleranceConfig, run_tolerance

SCHEMA = "cimsim.benchmark.signoff/1"
HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--task", default="bbc-news")
    parser.add_argument("--noise", default="0.001..0.02:20", help="the search grid of sigma")
    parser.add_argument("--chips", type=int, default=50)
    parser.add_argument("--budget", type=float, default=1.0, help="points")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    sweep = SweepConfig(
        model=args.model,
        task=args.task,
        values=tuple(parse_range(args.noise)),
        instances=args.chips,
        eval=EvalConfig(test_size=None),
    )
    adaptive = ToleranceConfig(sweep=sweep, signoff=SignoffConfig(budget=args.budget / 100))
    full = dataclasses.replace(
        adaptive, signoff=SignoffConfig(budget=args.budget / 100, search="grid", early_stop=False)
    )
    cache = args.cache_dir or default_cache_dir()
    work = Path(tempfile.mkdtemp(prefix="cimsim-signoff-"))
    measured = {}
    try:
        for name, config in (("adaptive", adaptive), ("full-grid", full)):
            out = work / name
            started = time.perf_counter()
            run_tolerance(config, out, cache_dir=cache)
            seconds = time.perf_counter() - started
            summary = json.loads((out / "summary.json").read_text())
            measured[name] = {
                "seconds": round(seconds, 1),
                "example_evaluations": summary["example_evaluations"],
                "decisions": summary["decisions"],
                "certified_value": summary["certified_value"],
                "certified_yield_lower_bound": summary["certified_yield_lower_bound"],
                "not_certified_because": summary["not_certified_because"],
                "rule": summary["rule"],
                "yield": (out / "yield.csv").read_text(),
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    a, b = measured["full-grid"], measured["adaptive"]
    result = {
        "schema": SCHEMA,
        "config": dataclasses.asdict(adaptive),
        "measured": measured,
        "ratio_example_evaluations": round(a["example_evaluations"] / b["example_evaluations"], 2),
        "ratio_seconds": round(a["seconds"] / b["seconds"], 2),
        "same_answer": a["certified_value"] == b["certified_value"],
        "target": ">= 5x fewer example evaluations, the same certified answer",
        "load_average": os.getloadavg(),
        "environment": environment(),
    }
    path = args.out or HERE / "results" / f"signoff-{args.model}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print("| run | example evaluations | chip decisions | wall s | certified σ |")
    print("|---|---|---|---|---|")
    for name in ("full-grid", "adaptive"):
        m = measured[name]
        print(
            f"| {name} | {m['example_evaluations']} | {m['decisions']} | {m['seconds']} | "
            f"{m['certified_value']} |"
        )
    print(
        f"ratio: {result['ratio_example_evaluations']}x fewer example evaluations, "
        f"{result['ratio_seconds']}x less wall time; same answer: {result['same_answer']}"
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
