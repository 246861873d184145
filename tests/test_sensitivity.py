"""Per-layer sensitivity and mixed placement on the tiny encoder with one layer made fragile:
an input feature that is exactly zero (its LayerNorm gain and bias are zero) meets a huge
weight in one layer's value projection. Digitally the weight multiplies zero; on a chip the
``channel`` model's noise scales with each row's max |w|, so that layer alone is ruined."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import write_topic_task

from cimsim.chip.deploy import deploy, named_tiles, undeploy
from cimsim.chip.placement import Placement, any_of, block_of, kind_of, layer_groups
from cimsim.cli import main
from cimsim.noise_models import get_noise_model

FRAGILE = "encoder.layer.1.attention.self.value"


@pytest.fixture(scope="module")
def fragile_dir(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertModel

    directory = tmp_path_factory.mktemp("fragile-bert")
    model = BertModel.from_pretrained(tiny_bert_dir)
    with torch.no_grad():
        norm = model.encoder.layer[0].output.LayerNorm
        norm.weight[0] = norm.bias[0] = 0.0  # feature 0 is exactly zero into block 1
        model.encoder.layer[1].attention.self.value.weight[:, 0] = 100.0
    model.save_pretrained(directory)
    for name in tiny_bert_dir.iterdir():
        if name.name.startswith(("tokenizer", "special", "vocab")):
            (directory / name.name).write_bytes(name.read_bytes())
    return directory


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sensitivity")
    task = write_topic_task(root / "topics.jsonl", n_per_label=100)
    return {"task": task, "cache": root / "cache"}


def options(shared: dict[str, Path], model: Path) -> list[str]:
    small = ["--epochs", "3", "--train-size", "240", "--lr", "1e-2", "--max-length", "16"]
    small += ["--batch-size", "16", "--test-size", "0"]
    return [*small, "--model", str(model), "--task", str(shared["task"]),
            "--cache-dir", str(shared["cache"])]  # fmt: skip


def test_groups_name_kinds_and_blocks_of_encoders_and_decoders() -> None:
    bert = "bert.encoder.layer.3.attention.self.query"
    assert (kind_of(bert), block_of(bert)) == ("q", 3)
    assert kind_of("bert.encoder.layer.0.attention.output.dense") == "o"
    assert kind_of("bert.encoder.layer.0.intermediate.dense") == "mlp_in"
    assert kind_of("bert.encoder.layer.0.output.dense") == "mlp_out"
    assert [kind_of(f"model.layers.1.{m}") for m in ("self_attn.k_proj", "mlp.down_proj")] == [
        "k",
        "mlp_out",
    ]
    names = [f"model.layers.{b}.self_attn.{p}_proj" for b in (0, 1) for p in "qv"]
    assert layer_groups(names, "block") == {"block 0": names[:2], "block 1": names[2:]}
    assert list(layer_groups(names, [r"\.v_proj$"]).values()) == [names[1::2]]
    assert Placement(any_of(names[:1]))(names[0]) and not Placement(any_of(names[:1]))(names[2])


def test_a_placement_keeps_the_analog_tiles_of_the_all_analog_chip(tiny_bert_dir: Path) -> None:
    from transformers import BertModel

    model = BertModel.from_pretrained(tiny_bert_dir).eval()
    noise = get_noise_model("channel", sigma=0.1)
    x = torch.randint(1000, 2000, (2, 8))
    digital = model(x).last_hidden_state
    deploy(model, noise, 7)
    chip = {n: t.programmed_weight.clone() for n, t in named_tiles(model)}
    analog = model(x).last_hidden_state
    assert not torch.equal(analog, digital)
    deploy(model, noise, 7, digital=lambda name: False)  # matching nothing: the plain chip
    assert torch.equal(model(x).last_hidden_state, analog)
    deploy(model, noise, 7, digital=lambda name: True)  # matching everything: digital
    assert torch.equal(model(x).last_hidden_state, digital)
    deploy(model, noise, 7, digital=Placement(r"layer\.1\.").predicate)
    for name, tile in named_tiles(model):
        if "layer.1." in name:
            assert tile.programmed_weight is None
        else:
            assert torch.equal(tile.programmed_weight, chip[name])
    undeploy(model)


SENSITIVITY = ["--noise", "0.05", "--seeds", "2", "--groups", "kind,module"]


@pytest.fixture(scope="module")
def sensitivity_run(
    shared: dict[str, Path], fragile_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("fragile") / "sensitivity"
    argv = ["sensitivity", *options(shared, fragile_dir), *SENSITIVITY, "--out", str(out)]
    assert main(argv) == 0
    return out


def test_sensitivity_ranks_the_fragile_layer_first(
    shared: dict[str, Path], fragile_dir: Path, sensitivity_run: Path
) -> None:
    out = sensitivity_run
    table = pd.read_csv(out / "table.csv")
    kinds = table[table["grouping"] == "kind"].sort_values("drop", ascending=False)
    modules = table[table["grouping"] == "module"].sort_values("drop", ascending=False)
    assert kinds.iloc[0]["group"] == "v"
    assert modules.iloc[0]["group"].endswith(FRAGILE)
    best = modules.sort_values("recovery", ascending=False).iloc[0]
    assert best["group"].endswith(FRAGILE)  # keeping it digital recovers the most
    summary = json.loads((out / "summary.json").read_text())
    ranked = summary["values"][0]["by"]
    assert ranked["kind"]["most_sensitive"] == "v"
    assert ranked["module"]["best_recovery"].endswith(FRAGILE)
    assert (out / "sensitivity.png").stat().st_size > 0
    rows = len((out / "points.jsonl").read_text().splitlines())
    argv = ["sensitivity", *options(shared, fragile_dir), *SENSITIVITY, "--out", str(out)]
    assert main(argv) == 0  # resumes: nothing is evaluated again
    assert len((out / "points.jsonl").read_text().splitlines()) == rows


def test_keeping_the_fragile_layer_digital_raises_the_certified_tolerance(
    shared: dict[str, Path], fragile_dir: Path, tmp_path: Path
) -> None:
    common = ["tolerance", *options(shared, fragile_dir), "--noise", "0.01..0.2:6"]
    common += ["--chips", "6", "--budget", "20", "--yield", "0.5"]
    assert main([*common, "--out", str(tmp_path / "all")]) == 0
    pattern = FRAGILE.replace(".", r"\.")
    assert main([*common, "--digital", pattern, "--out", str(tmp_path / "mixed")]) == 0
    plain, mixed = (
        json.loads((tmp_path / name / "summary.json").read_text()) for name in ("all", "mixed")
    )
    assert (mixed["certified_value"] or 0) > (plain["certified_value"] or 0)
    record = json.loads((tmp_path / "mixed" / "config.json").read_text())["placement"]
    assert [name.endswith(FRAGILE) for name in record["digital_layers"]] == [True]
    assert 0 < record["analog_fraction"] < 1


def test_the_placement_from_the_sensitivity_table_keeps_the_fragile_layer_digital(
    shared: dict[str, Path], fragile_dir: Path, sensitivity_run: Path, tmp_path: Path
) -> None:
    argv = ["tolerance", *options(shared, fragile_dir), "--noise", "0.01..0.2:6", "--chips", "6"]
    argv += ["--budget", "20", "--yield", "0.5", "--out", str(tmp_path / "placed")]
    argv += ["--place-from", str(sensitivity_run), "--place-by", "module", "--require", "0.2"]
    assert main(argv) == 0
    record = json.loads((tmp_path / "placed" / "placement.json").read_text())
    assert len(record["steps"]) == 1  # the first group already reaches the target
    assert [g.endswith(FRAGILE) for g in record["reached"]["groups"]] == [True]
    assert record["reached"]["certified_value"] == 0.2
    assert main(argv[:-2]) == 2  # --place-from without --require: a usage error


def test_a_bad_pattern_is_one_line_and_no_folder(
    shared: dict[str, Path], tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "bad"
    argv = ["sweep", *options(shared, tiny_bert_dir), "--digital", "(", "--out", str(out)]
    assert main(argv) == 2
    assert "is not a regular expression" in capsys.readouterr().err
    assert not out.exists()
    argv = ["sensitivity", *options(shared, tiny_bert_dir), "--groups", "re:nothing-matches"]
    assert main([*argv, "--out", str(out)]) == 2
    assert "matches no analog layer" in capsys.readouterr().err
    assert not out.exists()


def test_a_sweep_with_everything_digital_is_digital_and_with_nothing_is_the_plain_sweep(
    shared: dict[str, Path], tiny_bert_dir: Path, tmp_path: Path
) -> None:
    def rows(out: Path) -> dict[tuple, tuple]:
        lines = (out / "points.jsonl").read_text().splitlines()
        return {(r["card"], r["value"], r["instance"]): (r["n_correct"], r.get("broken"),
                r.get("fixed")) for r in map(json.loads, lines)}  # fmt: skip

    argv = ["sweep", *options(shared, tiny_bert_dir), "--noise", "0.5,2", "--seeds", "2"]
    runs = {name: tmp_path / name for name in ("plain", "nothing", "everything")}
    assert main([*argv, "--out", str(runs["plain"])]) == 0
    assert main([*argv, "--digital", "no-such-layer", "--out", str(runs["nothing"])]) == 0
    assert main([*argv, "--digital", ".", "--out", str(runs["everything"])]) == 0
    assert rows(runs["nothing"]) == rows(runs["plain"])
    digital = rows(runs["everything"])
    n_correct = digital[("digital", None, -1)][0]
    assert all(v == (n_correct, 0, 0) for k, v in digital.items() if k[0] != "digital")
    assert rows(runs["plain"]) != digital  # the chips do differ from digital
    placement = json.loads((runs["everything"] / "config.json").read_text())["placement"]
    assert placement["analog_fraction"] == 0.0
