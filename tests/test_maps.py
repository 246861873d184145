"""Design-space maps on the tiny encoder: ADC bits x sigma on the channel card, every cell from
the same chips; each row is the single-field sign-off at that ADC resolution."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_topic_task

from cimsim.cli import main


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("maps")
    return {"task": write_topic_task(root / "topics.jsonl", n_per_label=100), "root": root}


def argv(shared: dict[str, Path], model: Path, out: Path, *options: str) -> list[str]:
    small = ["--epochs", "3", "--train-size", "240", "--lr", "1e-2", "--max-length", "16"]
    small += ["--batch-size", "16", "--chips", "3", "--budget", "20", "--yield", "0.5"]
    where = ["--model", str(model), "--task", str(shared["task"])]
    where += ["--cache-dir", str(shared["root"] / "cache")]
    return ["tolerance", *small, *where, "--out", str(out), *options]


def test_a_map_is_complete_resumable_and_its_rows_are_single_field_signoffs(
    shared: dict[str, Path], tiny_bert_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "map"
    axes = ["--vary", "adc_bits=3,8", "--vary", "sigma=0.2..2:4"]
    assert main(argv(shared, tiny_bert_dir, out, *axes)) == 0
    cells = pd.read_csv(out / "map.csv")
    assert sorted(zip(cells["outer"], cells["inner"], strict=True)) == [
        (bits, sigma) for bits in (3, 8) for sigma in (0.2, 0.8, 1.4, 2.0)
    ]
    assert (cells["chips"] == 3).all()
    assert (out / "map.png").stat().st_size > 0
    points = {p: p.read_text() for p in out.glob("*/points.jsonl")}
    assert main(argv(shared, tiny_bert_dir, out, *axes)) == 0  # resumes: nothing is redone
    assert {p: p.read_text() for p in out.glob("*/points.jsonl")} == points

    card = tmp_path / "channel-adc3.toml"  # the card at the first row's ADC resolution
    card.write_text('name = "channel"\n[device]\nmodel = "channel"\nsigma = 0.02\n'
                    "[tile]\nadc_bits = 3\n")  # fmt: skip
    single = tmp_path / "single"
    assert (
        main(argv(shared, tiny_bert_dir, single, "--card", str(card), "--noise", "0.2..2:4")) == 0
    )
    row = out / "adc_bits=3"

    def decisions(folder: Path) -> list[tuple]:
        rows = [json.loads(line) for line in (folder / "points.jsonl").read_text().splitlines()]
        return sorted((r["value"], r["instance"], r.get("chip_seed"), r.get("passed"),
                       r.get("broken")) for r in rows if r["card"] != "digital")  # fmt: skip

    assert decisions(row) == decisions(single)
    seeds = {r[2] for r in decisions(row)} | {r[2] for r in decisions(out / "adc_bits=8")}
    assert len(seeds) == 3  # every cell of the map judges the same three chips


def test_a_map_of_one_field_twice_is_refused(
    shared: dict[str, Path], tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "bad"
    axes = ["--vary", "sigma=0.2,0.4", "--vary", "sigma=0.2..2:4"]
    assert main(argv(shared, tiny_bert_dir, out, *axes)) == 2
    assert "two different fields" in capsys.readouterr().err
    assert not out.exists()
