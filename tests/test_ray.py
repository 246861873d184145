"""The Ray executor on a real local cluster (2 CPUs, started here): the same points bit for bit
as the local executor for a sweep, a sign-off and a continual experiment, and every point once
when a worker dies mid-run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import write_topic_task

from cimsim.cli import main

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def sweep_argv(tiny_bert_dir: Path, root: Path, out: Path) -> list[str]:
    task = write_topic_task(root / "topics.jsonl")
    small = ["--epochs", "1", "--train-size", "60", "--max-length", "16", "--test-size", "20"]
    where = ["--model", str(tiny_bert_dir), "--task", str(task), "--cache-dir", str(root / "c")]
    return ["sweep", *small, *where, "--noise", "0.2..2:4", "--seeds", "2", "--out", str(out)]


def points(out: Path) -> dict[tuple, tuple]:
    rows = [json.loads(line) for line in (out / "points.jsonl").read_text().splitlines()]
    return {(r["card"], r["value"], r["instance"]): (r["chip_seed"], r["n_correct"],
            r.get("broken"), r.get("fixed")) for r in rows}  # fmt: skip


def test_ray_gives_the_local_points_bit_for_bit(
    cluster: None, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    local, distributed = tmp_path / "local", tmp_path / "ray"
    assert main(sweep_argv(tiny_bert_dir, tmp_path, local)) == 0
    argv = sweep_argv(tiny_bert_dir, tmp_path, distributed)
    assert main([*argv, "--executor", "ray", "--workers", "2"]) == 0
    assert points(distributed) == points(local)
    assert len(points(local)) == 1 + 4 * 2


def test_a_worker_that_dies_is_replaced_and_every_point_comes_once(
    cluster: None, tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "died"
    # The actors read the hook from their environment: the local cluster's workers inherit it
    # through the job's runtime environment (set by RayExecutor from the driver's).
    monkeypatch.setenv("CIMSIM_TEST_WORKER_DIES_ON", f"0.8,1,{marker}")
    ray.shutdown()
    try:
        out = tmp_path / "ray"
        argv = sweep_argv(tiny_bert_dir, tmp_path, out)
        assert main([*argv, "--executor", "ray", "--workers", "2"]) == 0
        assert marker.exists()  # a worker did die on that point
        rows = (out / "points.jsonl").read_text().splitlines()
        keys = [(r["value"], r["instance"]) for r in map(json.loads, rows)]
        assert len(keys) == len(set(keys)) == 1 + 4 * 2
    finally:
        ray.shutdown()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)


def test_a_sign_off_on_ray_certifies_what_the_local_one_does(
    cluster: None, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    task = write_topic_task(tmp_path / "topics.jsonl", n_per_label=60)
    small = ["--epochs", "2", "--train-size", "120", "--lr", "1e-2", "--max-length", "16"]
    where = ["--model", str(tiny_bert_dir), "--task", str(task), "--cache-dir", str(tmp_path)]
    grid = ["--noise", "0.2..2:6", "--chips", "6", "--budget", "20"]
    local, distributed = tmp_path / "local", tmp_path / "ray"
    assert main(["tolerance", *small, *where, *grid, "--out", str(local)]) == 0
    ray_options = ["--executor", "ray", "--workers", "2"]
    assert main(["tolerance", *small, *where, *grid, *ray_options, "--out", str(distributed)]) == 0
    keep = ("certified_value", "certified_yield_lower_bound", "chips", "digital_accuracy")
    summaries = [json.loads((out / "summary.json").read_text()) for out in (local, distributed)]
    assert [{k: s[k] for k in keep} for s in summaries[:1]] == [
        {k: s[k] for k in keep} for s in summaries[1:]
    ]
    assert (local / "yield.csv").read_text() == (distributed / "yield.csv").read_text()
    # A decision is a function of (value, chip) alone: those made by both runs are identical.
    rows = [
        {(r["value"], r["instance"]): r for r in map(json.loads, f.read_text().splitlines())}
        for f in (local / "points.jsonl", distributed / "points.jsonl")
    ]
    both = set(rows[0]) & set(rows[1])
    assert len(both) >= 7  # the digital row and at least one decision per chip
    for key in both:
        for column in ("chip_seed", "passed", "broken", "fixed", "n_used"):
            assert rows[0][key].get(column) == rows[1][key].get(column), (key, column)


def test_a_continual_experiment_on_ray_writes_the_local_rows_and_branches(
    cluster: None, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    tasks = []
    for name, labels in (("topics", ("sport", "money")), ("moods", ("happy", "sad"))):
        path = tmp_path / f"{name}.jsonl"
        lines = [
            json.dumps({"text": f"{label} {label} word {i}", "label": label})
            for label in labels
            for i in range(30)
        ]
        path.write_text("\n".join(lines) + "\n")
        tasks.append(str(path))

    def argv(out: Path) -> list[str]:
        return [
            "continual", "--model", str(tiny_bert_dir), "--tasks", ",".join(tasks),
            "--methods", "gated,seq-lora", "--noise", "0.05", "--seeds", "2",
            "--train-size", "16", "--epochs", "1", "--test-size", "8", "--max-length", "16",
            "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
        ]  # fmt: skip

    local, distributed = tmp_path / "local", tmp_path / "ray"
    assert main(argv(local)) == 0
    assert main([*argv(distributed), "--executor", "ray", "--workers", "2"]) == 0

    def accuracies(out: Path) -> dict[tuple, tuple]:
        rows = map(json.loads, (out / "points.jsonl").read_text().splitlines())
        return {
            (r["method"], r["order"], r["stage"], r["task"], r["sigma"], r["instance"]): (
                r["chip_seed"], r["n_correct"],
            )
            for r in rows
        }  # fmt: skip

    assert accuracies(distributed) == accuracies(local)
    assert len(accuracies(local)) == 2 * 2 * 3 * 3  # 2 orders x 2 methods x 3 (stage, task) x 3
    for name in ("summary.csv", "gates.csv"):
        assert (distributed / name).is_file(), name
    training = [
        sorted((r["method"], r["order"], r["stage"]) for r in map(json.loads, lines))
        for lines in ((o / "training.jsonl").read_text().splitlines() for o in (local, distributed))
    ]
    assert training[0] == training[1]
    files = sorted(p.relative_to(local) for p in (local / "branches").rglob("*") if p.is_file())
    assert files and files == sorted(
        p.relative_to(distributed) for p in (distributed / "branches").rglob("*") if p.is_file()
    )


def test_an_experiment_file_names_its_executor(
    cluster: None, tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cimsim.runs.executors import RayExecutor

    calls = []
    original = RayExecutor.map

    def counted(self: RayExecutor, *args: Any, **kwargs: Any) -> Any:
        calls.append(self.workers)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(RayExecutor, "map", counted)
    task = write_topic_task(tmp_path / "topics.jsonl")
    text = f"""
name = "on-ray"
description = "a tiny sweep on Ray workers"
[sweep]
model = "{tiny_bert_dir}"
task = "{task}"
noise = "0.2..2:3"
seeds = 2
[sweep.train]
epochs = 1
train_size = 60
[sweep.eval]
test_size = 20
max_length = 16
[executor]
kind = "ray"
workers = 2
"""
    (tmp_path / "on-ray.toml").write_text(text)
    common = ["--cache-dir", str(tmp_path / "c"), "--figures-dir", str(tmp_path / "figures")]
    local, distributed = tmp_path / "local", tmp_path / "ray"
    run = ["run", str(tmp_path / "on-ray.toml"), *common]
    assert main([*run, "--out", str(distributed)]) == 0
    assert calls == [2]  # the file's executor ran the points
    assert main([*run, "--out", str(local), "--executor", "local"]) == 0
    assert calls == [2]  # the command line's executor wins
    assert points(distributed) == points(local) and len(points(local)) == 1 + 3 * 2
