"""The Ray executor on a real local cluster (2 CPUs, started here): the same points bit for bit
as the local executor, and every point once when a worker dies mid-run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

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
