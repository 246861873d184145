"""One writer per results folder: a held folder refuses a second process, a dead holder's lock
is taken over, a failed command leaves no folder, and SIGTERM saves the points like Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_topic_task

from cimsim.cli import EXIT_INTERRUPTED, main
from cimsim.core.lock import LOCK_FILE, holding, read_holder

HOLD = """
import sys, time
from pathlib import Path
from cimsim.core.lock import holding
with holding(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def tiny_sweep(model: Path, task: Path, cache: Path, out: Path, noise: str = "0.2,2") -> list[str]:
    small = ["--epochs", "1", "--train-size", "60", "--max-length", "16", "--test-size", "20"]
    return ["sweep", *small, "--model", str(model), "--task", str(task), "--noise", noise,
            "--seeds", "2", "--cache-dir", str(cache), "--out", str(out)]  # fmt: skip


def test_a_held_folder_refuses_a_second_writer_and_a_dead_holder_is_taken_over(
    tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = sorted(p.name for p in out.iterdir())
        task = write_topic_task(tmp_path / "topics.jsonl")
        argv = tiny_sweep(tiny_bert_dir, task, tmp_path / "cache", out)
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"is in use by pid {holder.pid}" in err and len(err.strip().splitlines()) == 1
        assert sorted(p.name for p in out.iterdir()) == before  # nothing touched
    finally:
        holder.send_signal(signal.SIGKILL)  # dies without releasing: a stale lock
        holder.wait()
    assert read_holder(out)["pid"] == holder.pid
    messages: list[str] = []
    with holding(out, messages.append):
        assert read_holder(out)["pid"] == os.getpid()
    assert messages and f"pid {holder.pid}" in messages[0]
    assert not (out / LOCK_FILE).exists()  # released at the end


def test_a_failed_command_leaves_no_results_folder(tmp_path: Path) -> None:
    out = tmp_path / "never"
    with pytest.raises(RuntimeError), holding(out):
        raise RuntimeError("a run that fails before writing anything")
    assert not out.exists()
    kept = tmp_path / "kept"
    with pytest.raises(RuntimeError), holding(kept):
        (kept / "points.jsonl").write_text("{}\n")
        raise RuntimeError("a run that fails after a point")
    assert (kept / "points.jsonl").exists() and not (kept / LOCK_FILE).exists()


def test_sigterm_saves_the_points_and_the_run_resumes_to_every_point_once(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    task = write_topic_task(tmp_path / "topics.jsonl")
    out = tmp_path / "run"
    argv = tiny_sweep(tiny_bert_dir, task, tmp_path / "cache", out, noise="0.1..2:40")
    command = [sys.executable, "-c", "import sys; from cimsim.cli import main; "
               "sys.exit(main(sys.argv[1:]))", *argv]  # fmt: skip
    run = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    points = out / "points.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (
        not points.exists() or len(points.read_text().splitlines()) < 3
    ):
        time.sleep(0.2)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode == EXIT_INTERRUPTED
    assert "finished points are saved" in err
    assert not (out / LOCK_FILE).exists()
    assert main(argv) == 0  # resumes
    rows = [json.loads(line) for line in points.read_text().splitlines()]
    keys = [(r["card"], r["value"], r["instance"]) for r in rows]
    assert len(keys) == len(set(keys)) == 1 + 40 * 2
