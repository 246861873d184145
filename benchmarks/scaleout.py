"""Scale-out on Ray: points per second with 1 and 2 workers at equal total threads, and the
driver's overhead per point, against the local executor, in one run.

    .venv/bin/python benchmarks/scaleout.py [--model minilm] [--points 12] [--test-size 100]

Every configuration sweeps the same points from an empty folder (the adapter comes from the
cache, trained once before timing): ``local`` (this process, 2 torch threads), ``ray 1x2`` (one
actor with 2 CPUs), ``ray 2x1`` (two actors with 1 CPU each; Ray gives each actor
``OMP_NUM_THREADS`` = its CPUs). The overhead per point is measured with a 4-example test set,
where evaluation is nearly free: (ray seconds − local seconds) / points, actor start-up
included. Writes ``results/scaleout-<model>.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from cimsim.core.paths import default_cache_dir
from cimsim.eval.config import EvalConfig
from cimsim.runs.executors import RayExecutor
from cimsim.runs.results import environment
from cimsim.runs.sweep import SweepConfig, run_sweep

HERE = Path(__file__).resolve().parent


def timed(config: SweepConfig, cache: Path, executor: RayExecutor | None) -> float:
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        run_sweep(config, Path(scratch) / "run", cache_dir=cache, executor=executor)
        return time.perf_counter() - started


def main() -> None:
    import ray

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--points", type=int, default=12, help="chips (4 sigma x points/4)")
    parser.add_argument("--test-size", type=int, default=100)
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    cache = args.cache_dir or default_cache_dir()
    torch.set_num_threads(2)
    base = SweepConfig(
        model=args.model, values=(0.01, 0.02, 0.03, 0.04), instances=max(args.points // 4, 1),
        eval=EvalConfig(test_size=args.test_size),
    )  # fmt: skip
    points = len(base.values) * base.instances
    timed(dataclasses.replace(base, values=(0.01,), instances=1), cache, None)  # adapter, cache
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows = []
    for name, executor in (
        ("local", None),
        ("ray 1x2", RayExecutor(workers=1, cpus=2)),
        ("ray 2x1", RayExecutor(workers=2, cpus=1)),
    ):
        seconds = timed(base, cache, executor)
        rows.append({"executor": name, "seconds": round(seconds, 2),
                     "points_per_second": round(points / seconds, 3)})  # fmt: skip
    tiny = dataclasses.replace(base, eval=EvalConfig(test_size=4))
    local = timed(tiny, cache, None)
    remote = timed(tiny, cache, RayExecutor(workers=2, cpus=1))
    ray.shutdown()
    result = {
        "schema": "cimsim.benchmark.scaleout/1",
        "model": args.model, "points": points, "test_size": args.test_size, "runs": rows,
        "overhead_seconds_per_point": round((remote - local) / points, 3),
        "overhead_runs": {"local": round(local, 2), "ray 2x1": round(remote, 2)},
        "cpus": os.cpu_count(), "load_average": os.getloadavg(), "environment": environment(),
    }  # fmt: skip
    out = HERE / "results" / f"scaleout-{args.model}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"| executor | seconds for {points} points | points per second |")
    print("|---|---|---|")
    for row in rows:
        print(f"| {row['executor']} | {row['seconds']} | {row['points_per_second']} |")
    print(f"overhead per point (4-example points, actor start-up included): "
          f"{result['overhead_seconds_per_point']} s")  # fmt: skip
    print(f"written: {out}")


if __name__ == "__main__":
    main()
