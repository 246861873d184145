"""Watermark signatures in swappable branches: the key, a tiny kit that reads back every
assembled signature and no other, swapping that changes only the swapped bits, black-box
verification of a shipped model (and its false-positive path), obfuscation, the noise sweep."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from cimsim.adapters.lora import lora_layers
from cimsim.adapters.train import TrainConfig
from cimsim.adapters.watermark import (
    WatermarkConfig,
    branch_name,
    false_positive_bound,
    make_key,
    parse_signature,
    watermark_loss,
)
from cimsim.cli import main
from cimsim.eval.config import EvalConfig
from cimsim.watermark.kit import KitConfig, embed_kit, load_kit
from cimsim.watermark.sweep import WatermarkSweepConfig, run_watermark_sweep

BITS = 3


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> tuple[Path, Path]:
    """A 3-bit kit on the tiny encoder and the 3-topic task; (kit folder, cache)."""
    from conftest import write_topic_task

    root = tmp_path_factory.mktemp("watermark")
    task = write_topic_task(root / "topics.jsonl")
    config = KitConfig(
        model=str(tiny_bert_dir), task=str(task), checks=4,
        train=TrainConfig(epochs=1, train_size=24, batch_size=8),
        eval=EvalConfig(test_size=None, max_length=16),
        watermark=WatermarkConfig(bits=BITS, steps=200, rank=4, batch_size=16, lr=1e-2,
                                  queries=8),
    )  # fmt: skip
    embed_kit(config, root / "kit", cache_dir=root / "cache")
    return root / "kit", root / "cache"


def test_the_key_is_the_seeds_and_each_bit_has_two_targets() -> None:
    config = WatermarkConfig(bits=16)
    key = make_key(config, n_labels=5)
    assert key == make_key(config, n_labels=5)
    assert key != make_key(WatermarkConfig(bits=16, seed=1), n_labels=5)
    assert len(set(key.phrases)) == 16 and all(a != b for a, b in key.targets)
    assert all(0 <= t < 5 for pair in key.targets for t in pair)
    assert false_positive_bound(2, 16) == 2.0**-16
    assert parse_signature("0110", 4) == (0, 1, 1, 0)
    for bad in ("011", "01a0", ""):
        with pytest.raises(Exception, match="0 and 1"):
            parse_signature(bad, 4)


def test_every_checked_signature_reads_back_and_no_other_does(kit: tuple[Path, Path]) -> None:
    checks = json.loads((kit[0] / "watermark.json").read_text())["checks"]
    assert checks["unmarked"]["verifies"] == 0
    assert len(checks["signatures"]) == 4
    for row in checks["signatures"]:
        for variant in ("plain", "obfuscated"):
            assert row[variant]["verified"], row
            assert row[variant]["read"] == row["signature"]
            assert row[variant]["verifies_others"] == 0
        assert row["obfuscated"]["accuracy"] == pytest.approx(row["plain"]["accuracy"], abs=0.09)
    assert checks["false_positive_bound"] == pytest.approx(3.0**-BITS)


def test_a_trigger_stops_pushing_at_its_confidence() -> None:
    config = WatermarkConfig(trigger_confidence=0.9, clean_weight=2.0)
    sure = torch.log(torch.tensor([[0.95, 0.03, 0.02]]))  # target 0 at 0.95: no push
    unsure = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))  # target 0 at 0.5: CE - log(1/0.9)
    teacher = torch.log(torch.tensor([[0.6, 0.3, 0.1]]))
    kept = torch.log(torch.tensor([[0.3, 0.6, 0.1]]))
    goal = torch.tensor([0, 0])
    loss, kl = watermark_loss(torch.cat([sure, unsure]), goal, kept, teacher, config)
    expected_kl = sum(t * math.log(t / k) for t, k in [(0.6, 0.3), (0.3, 0.6), (0.1, 0.1)])
    assert kl.item() == pytest.approx(expected_kl, rel=1e-5)
    push = (math.log(1 / 0.5) - math.log(1 / 0.9)) / 2
    assert loss.item() == pytest.approx(push + 2.0 * expected_kl, rel=1e-5)


def test_the_learning_rate_decays_along_a_cosine(kit: tuple[Path, Path]) -> None:
    log = json.loads((kit[0] / "watermark.json").read_text())["training"]["log"]
    steps = len(log)
    for step in (0, steps // 4, steps // 2, steps - 1):
        expected = 1e-2 * (1 + math.cos(math.pi * step / steps)) / 2
        assert log[step]["lr"] == pytest.approx(expected, rel=1e-9)


def test_swapping_a_branch_changes_only_that_bit(kit: tuple[Path, Path]) -> None:
    loaded = load_kit(kit[0], cache_dir=kit[1])
    signature = (0, 1, 0)
    loaded.show(signature, obfuscated=False)
    before = set(next(iter(lora_layers(loaded.loaded.model).values())).active_adapters)
    first = loaded.read()
    swapped = (0, 0, 0)
    loaded.show(swapped, obfuscated=False)
    after = set(next(iter(lora_layers(loaded.loaded.model).values())).active_adapters)
    assert before ^ after == {branch_name(1, 1), branch_name(1, 0)}
    second = loaded.read()
    assert first.bits == signature and second.bits == swapped


def test_obfuscation_cancels_digitally_and_removal_leaves_r_in_the_base(
    kit: tuple[Path, Path],
) -> None:
    loaded = load_kit(kit[0], cache_dir=kit[1])
    assert loaded.obfuscation
    texts = list(loaded.test.texts)
    outputs = {}
    for obfuscated in (False, True):
        loaded.show((1, 0, 1), obfuscated)
        with torch.no_grad():
            outputs[obfuscated] = loaded.scorer(texts, loaded.task)
    scale = outputs[False].abs().max()
    assert torch.allclose(outputs[True], outputs[False], atol=1e-4 * scale)
    for layer, delta in loaded.delta.items():  # the base holds W + R now
        assert lora_layers(loaded.loaded.model)[layer].weight.abs().max() > 0
        assert delta.abs().max() > 0
    removal = json.loads((kit[0] / "watermark.json").read_text())["checks"]["removal"]
    assert len(removal["plain"]) == len(removal["obfuscated"]) == BITS


def test_a_shipped_chip_verifies_black_box_and_nothing_else_does(
    kit: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    kit_dir, cache = kit
    chip = tmp_path / "chip"
    common = ["--cache-dir", str(cache)]
    assert main(["watermark", "assemble", str(kit_dir), "--signature", "101",
                 "--out", str(chip), *common]) == 0  # fmt: skip
    assert (chip / "adapter_model.safetensors").is_file() and (chip / "base_delta.safetensors")
    config = json.loads((chip / "adapter_config.json").read_text())
    assert config["r"] == 8 + BITS * (4 + 1)  # the task branch, 3 watermarks, 3 compensations
    capsys.readouterr()
    verify = ["watermark", "verify", str(kit_dir), "--model-dir", str(chip), *common]
    assert main([*verify, "--signature", "101"]) == 0
    assert "read signature: 101" in capsys.readouterr().out
    assert main([*verify, "--signature", "100"]) == 3  # another signature: no false verification
    unmarked = ["watermark", "verify", str(kit_dir), "--model-dir", str(kit_dir / "task")]
    assert main([*unmarked, "--signature", "101", *common]) == 3
    out = capsys.readouterr().out
    assert "verified: False" in out


def test_bad_watermark_input_is_one_line(
    kit: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    kit_dir, cache = kit
    cases = [
        ["watermark", "assemble", str(kit_dir), "--signature", "10", "--out", str(tmp_path / "a")],
        ["watermark", "assemble", str(tmp_path), "--signature", "101", "--out",
         str(tmp_path / "b")],
        ["watermark", "sweep", str(kit_dir), "--signature", "1x1", "--out", str(tmp_path / "c")],
        ["watermark", "embed", "--out", str(kit_dir), "--model", "minilm"],
        ["watermark", "sweep", str(kit_dir), "--signature", "101", "--noise", "-1",
         "--out", str(tmp_path / "d")],
    ]  # fmt: skip
    for argv in cases:
        capsys.readouterr()
        assert main([*argv, "--cache-dir", str(cache)]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("cimsim: error:") and err.count("\n") == 1, err
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


def test_the_sweep_reads_every_chip_resumes_and_draws(
    kit: tuple[Path, Path], tmp_path: Path
) -> None:
    kit_dir, cache = kit
    config = WatermarkSweepConfig(signature="011", values=(0.0, 0.5), instances=2)
    out = tmp_path / "sweep"
    run_watermark_sweep(kit_dir, config, out, cache_dir=cache)
    rows = [json.loads(line) for line in (out / "points.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * (1 + 2 * 2)  # (plain, obfuscated) x (digital + 2 sigmas x 2 chips)
    zero = [r for r in rows if r["value"] == 0.0]
    assert all(r["verified"] and r["broken"] == 0 for r in zero)  # sigma 0: the digital model
    noisy = [r for r in rows if r["value"] == 0.5]
    assert {r["chip_seed"] for r in noisy if r["variant"] == "plain"} == {
        r["chip_seed"] for r in noisy if r["variant"] == "obfuscated"
    }
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["variant"]) == {"plain", "obfuscated"} and (summary["chips"] == 2).all()
    facts = json.loads((out / "summary.json").read_text())
    assert facts["by_variant"]["plain"]["verification"]["all_chips_up_to"] in (0.0, 0.5)
    for _, line in summary.iterrows():  # observed drop: (broken - fixed) / n within the budget
        chips = [r for r in rows if r["variant"] == line["variant"] and r["value"] == line["value"]]
        drops = [(r["broken"] - r["fixed"]) / r["n_examples"] for r in chips]
        assert line["observed_within"] == sum(d <= config.budget for d in drops)
        assert line["observed_drop_max"] == pytest.approx(max(drops))
    assert facts["by_variant"]["plain"]["task_observed"]["all_chips_up_to"] in (0.0, 0.5)
    assert (out / "watermark.png").stat().st_size > 0
    before = (out / "points.jsonl").read_text()
    run_watermark_sweep(kit_dir, config, out, cache_dir=cache)
    assert (out / "points.jsonl").read_text() == before
