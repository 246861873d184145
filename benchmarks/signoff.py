"""Sign-off cost: the full grid on the full test set against the threshold search.

    .venv/bin/python benchmarks/signoff.py experiments/signoff/signoff-default.toml

Both runs judge the same common chips of the experiment file's deployment against its rule
(budget, target yield, confidence): (b) is the file's own sign-off (a search for each chip's
threshold, early decisions), (a) the same chips at every grid value on every test example. The
results folders are kept under ``--work`` (``runs/benchmark-signoff/`` by default): ``cimsim run
FILE --out <work>/adaptive`` then publishes (b) without evaluating anything again, and
``--reuse-full-grid`` keeps a finished (a) (about 70 minutes on 2 cores for the default file).
It prints a Markdown table and writes ``results/signoff-<name>.json`` (example evaluations,
wall time, the certified tolerance of each, whether they agree).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

from cimsim.core.paths import default_cache_dir
from cimsim.runs.experiments import load_experiment
from cimsim.runs.results import environment
from cimsim.runs.tolerance import run_tolerance

SCHEMA = "cimsim.benchmark.signoff/1"
HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", type=Path, help="an experiment file with a [signoff] table")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=Path("runs/benchmark-signoff"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--reuse-full-grid",
        action="store_true",
        help="keep a finished full-grid folder under --work (its evaluations do not depend on "
        "the adaptive search) and report the wall time it recorded",
    )
    args = parser.parse_args()

    spec = load_experiment(args.experiment)
    if spec.signoff is None:
        raise SystemExit(f"{args.experiment} has no [signoff] table")
    adaptive = spec.tolerance()
    full = dataclasses.replace(
        adaptive,
        signoff=dataclasses.replace(adaptive.signoff, search="grid", early_stop=False),
    )
    cache = args.cache_dir or default_cache_dir()
    path = args.out or HERE / "results" / f"{spec.name}.json"
    prior_commit = (
        json.loads(path.read_text())["environment"]["git"]["commit"] if path.exists() else None
    )
    reused = None
    measured = {}
    for name, config in (("adaptive", adaptive), ("full-grid", full)):
        out = args.work / spec.name / name
        kept = out / "summary.json"
        if name == "full-grid" and args.reuse_full_grid:
            # The wall time is the one the earlier benchmark measured; the folder must be the
            # finished grid it measured (resuming evaluates nothing then).
            prior = json.loads(path.read_text())["measured"]["full-grid"]
            run_tolerance(config, out, cache_dir=cache)
            summary = json.loads(kept.read_text())
            if summary["decisions"] != prior["decisions"]:
                raise SystemExit(f"{out} is not the grid {path} measured: drop --reuse-full-grid")
            seconds = prior["seconds"]
            reused = prior.get("measured_at", prior_commit)
        else:
            shutil.rmtree(out, ignore_errors=True)  # timed from an empty folder
            started = time.perf_counter()
            run_tolerance(config, out, cache_dir=cache)
            seconds = time.perf_counter() - started
            summary = json.loads(kept.read_text())
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
        if name == "full-grid" and reused is not None:
            measured[name]["measured_at"] = reused  # the commit whose run timed this grid
    a, b = measured["full-grid"], measured["adaptive"]
    result = {
        "schema": SCHEMA,
        "experiment": str(args.experiment),
        "config": dataclasses.asdict(adaptive),
        "measured": measured,
        "ratio_example_evaluations": round(a["example_evaluations"] / b["example_evaluations"], 2),
        "ratio_seconds": round(a["seconds"] / b["seconds"], 2),
        "same_answer": a["certified_value"] == b["certified_value"],
        "target": ">= 5x fewer example evaluations, the same certified answer",
        "load_average": os.getloadavg(),
        "environment": environment(),
    }
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
