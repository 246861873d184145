"""``cimsim tolerance`` end to end on the tiny encoder: common chips, the threshold search
against the full grid, the cannot-certify path, the --require gate, resume and redraw."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_topic_task
from torch import nn

from cimsim.chip.deploy import deploy, undeploy
from cimsim.cli import EXIT_NOT_CERTIFIED, main
from cimsim.noise_models import get_noise_model
from cimsim.runs.sweep import SweepConfig
from cimsim.runs.tolerance import ToleranceConfig, common_chip_seed

GRID = "0.2..2:6"  # the tiny encoder goes from every chip passing to none passing


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tolerance")
    task = write_topic_task(root / "topics.jsonl", n_per_label=100)  # 60 test examples
    return {"task": task, "cache": root / "cache"}


def argv(shared: dict[str, Path], model: Path, out: Path, *options: str) -> list[str]:
    small = ["--epochs", "3", "--train-size", "240", "--lr", "1e-2", "--max-length", "16"]
    small += ["--batch-size", "16"]
    where = [
        "--model",
        str(model),
        "--task",
        str(shared["task"]),
        "--cache-dir",
        str(shared["cache"]),
    ]
    return ["tolerance", *small, *where, "--out", str(out), "--noise", GRID, *options]


def decisions(out: Path) -> dict[tuple[float, int], dict]:
    rows = [json.loads(line) for line in (out / "points.jsonl").read_text().splitlines()]
    return {(r["value"], r["instance"]): r for r in rows if r["card"] != "digital"}


def thresholds(out: Path, values: list[float], chips: int) -> list[int]:
    """Each chip's last passing index (fails from then on), from its decisions."""
    found = []
    decided = decisions(out)
    for i in range(chips):
        passing = [j for j, v in enumerate(values) if decided.get((v, i), {}).get("passed")]
        failing = [
            j for j, v in enumerate(values) if (v, i) in decided and not decided[(v, i)]["passed"]
        ]
        first_fail = min(failing) if failing else len(values)
        found.append(max([j for j in passing if j < first_fail], default=-1))
    return found


def test_a_common_chip_at_two_sigmas_differs_only_in_scale() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 5))
    clean = model[0].weight.detach().clone()
    seed = common_chip_seed(0, "channel", "sigma", 3)
    errors = []
    for sigma in (0.02, 0.05):
        deploy(model, get_noise_model("channel", sigma), seed)
        with torch.no_grad():
            programmed = (model(torch.eye(8)) - model[0].bias).T  # (5, 8): W' row by row
        errors.append(programmed - clean)
        undeploy(model)
    assert torch.allclose(errors[1], errors[0] * (0.05 / 0.02), atol=1e-6)
    assert errors[0].abs().max() > 0


def test_resolution_fields_are_searched_from_the_most_bits_down() -> None:
    sweep = SweepConfig(card="rram-macro", vary="adc_bits", values=(4.0, 6.0, 8.0), sigma=1.0)
    assert ToleranceConfig(sweep=sweep).ordered_values() == [8.0, 6.0, 4.0]
    assert ToleranceConfig().ordered_values() == sorted(ToleranceConfig().sweep.values)


@pytest.fixture(scope="module")
def grid_run(
    shared: dict[str, Path], tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("grid") / "run"
    options = ("--chips", "6", "--budget", "20", "--search", "grid", "--no-early-stop")
    assert main(argv(shared, tiny_bert_dir, out, *options)) == 0
    return out


def test_threshold_search_finds_the_thresholds_of_the_full_grid(
    shared: dict[str, Path], tiny_bert_dir: Path, grid_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "threshold"
    assert main(argv(shared, tiny_bert_dir, out, "--chips", "6", "--budget", "20")) == 0
    values = sorted(set(v for v, _ in decisions(grid_run)))
    full = thresholds(grid_run, values, 6)
    assert thresholds(out, values, 6) == full
    grid, adaptive = (json.loads((d / "summary.json").read_text()) for d in (grid_run, out))
    assert adaptive["certified_value"] == grid["certified_value"]
    assert adaptive["example_evaluations"] < grid["example_evaluations"]
    yields = [pd.read_csv(d / "yield.csv")[["value", "passes", "chips"]] for d in (grid_run, out)]
    grid_decisions = decisions(grid_run)
    along = [[grid_decisions[(v, i)]["passed"] for v in values] for i in range(6)]
    if all(chip == sorted(chip, reverse=True) for chip in along):
        # every chip passes up to its threshold and fails after it: the same yield curve
        pd.testing.assert_frame_equal(yields[0], yields[1])


def test_early_stopping_keeps_every_decision_of_the_full_test_set(
    shared: dict[str, Path], tiny_bert_dir: Path, grid_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "early"
    options = ("--chips", "6", "--budget", "20", "--search", "grid")
    assert main(argv(shared, tiny_bert_dir, out, *options)) == 0
    early, full = decisions(out), decisions(grid_run)
    assert {k: r["passed"] for k, r in early.items()} == {k: r["passed"] for k, r in full.items()}
    assert sum(r["n_used"] for r in early.values()) < sum(r["n_used"] for r in full.values())
    assert all(r["n_used"] == r["n_examples"] for r in full.values())


def test_too_few_chips_cannot_certify_and_require_fails_the_build(
    shared: dict[str, Path], tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "three"
    options = ("--chips", "3", "--budget", "20", "--require", "0.05")
    assert main(argv(shared, tiny_bert_dir, out, *options)) == EXIT_NOT_CERTIFIED
    captured = capsys.readouterr()
    assert "3 chips cannot certify 90% yield at 95% confidence: at least 29 are needed" in (
        captured.out
    )
    assert "does not reach --require 0.05" in captured.err
    assert "rule: a chip passes when" in captured.out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["certified_value"] is None and summary["chips_needed_at_all_pass"] == 29


def test_a_reachable_target_is_certified_and_require_passes_up_to_it(
    shared: dict[str, Path],
    tiny_bert_dir: Path,
    grid_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    options = ("--chips", "6", "--budget", "20", "--yield", "0.5")
    out = tmp_path / "half"
    assert main(argv(shared, tiny_bert_dir, out, *options, "--require", "0.2")) == 0
    summary = json.loads((out / "summary.json").read_text())
    table = pd.read_csv(out / "yield.csv")
    certified = table[table["certified"]]
    assert summary["certified_value"] == certified["value"].max()
    assert (certified["lower_bound"] >= 0.5).all()
    first_miss = table[~table["certified"]].head(1)
    assert first_miss.empty or first_miss["lower_bound"].iloc[0] < 0.5
    assert "certified tolerance: σ" in capsys.readouterr().out
    above = summary["certified_value"] + 1
    assert main(argv(shared, tiny_bert_dir, out, *options, "--require", str(above))) == (
        EXIT_NOT_CERTIFIED
    )


def test_a_test_set_too_small_for_the_budget_says_how_many_examples_it_needs(
    shared: dict[str, Path], tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "small-budget"
    assert main(argv(shared, tiny_bert_dir, out, "--chips", "2", "--budget", "1")) == 0
    assert "60 test examples cannot certify a drop of 1 points" in capsys.readouterr().out
    assert "at least 299 are needed" in json.dumps(json.loads((out / "summary.json").read_text()))


def test_a_rerun_resumes_and_plot_redraws_from_the_files(
    shared: dict[str, Path],
    tiny_bert_dir: Path,
    grid_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(grid_run, copy)
    before = (copy / "points.jsonl").read_text()
    options = ("--chips", "6", "--budget", "20", "--search", "grid", "--no-early-stop")
    assert main(argv(shared, tiny_bert_dir, copy, *options)) == 0
    assert (copy / "points.jsonl").read_text() == before  # nothing evaluated again
    (copy / "yield.png").unlink()
    capsys.readouterr()
    assert main(["plot", str(copy)]) == 0
    assert (copy / "yield.png").exists() and "yield per σ" in capsys.readouterr().out
    # a different sign-off in the same folder is refused
    assert main(argv(shared, tiny_bert_dir, copy, "--chips", "6", "--budget", "30")) == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--yield", "1.5"), "--yield must be in (0, 1)"),
        (("--budget", "0"), "--budget is in points"),
        (("--chips-mode", "independent"), "a threshold search needs common chips"),
        (("--search", "dense"), "--search is one of"),
    ],
)
def test_bad_sign_off_options_are_one_line(
    shared: dict[str, Path],
    tiny_bert_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    options: tuple[str, ...],
    message: str,
) -> None:
    out = tmp_path / "bad"
    assert main(argv(shared, tiny_bert_dir, out, *options)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


@pytest.mark.parametrize("size", [1, 2, 7, 20])
def test_threshold_search_finds_every_threshold_from_every_start(size: int) -> None:
    from cimsim.runs.tolerance import threshold_search

    for threshold in range(-1, size):
        for guess in range(size):
            asked: list[int] = []

            def passes(index: int, threshold: int = threshold, asked: list[int] = asked) -> bool:
                asked.append(index)
                return index <= threshold

            assert threshold_search(passes, size, guess) == threshold
            assert len(asked) == len(set(asked))  # no index is judged twice
            if threshold in (guess, guess - 1) and 0 < guess < size - 1:
                assert len(asked) == 2  # a start next to the threshold costs two judgements
            if guess > threshold:  # from above, the one passing index judged is the threshold
                assert [i for i in asked if i <= threshold] == [threshold] * (threshold >= 0)


def test_evaluation_order_puts_the_narrowest_digital_wins_first() -> None:
    from cimsim.runs.tolerance import evaluation_order

    logits = np.array([[2.0, 0.0], [0.1, 0.0], [0.0, 3.0], [1.0, 0.5], [0.0, 0.2]])
    right = np.array([True, True, False, True, True])  # margins 2, 0.1, -, 0.5, 0.2
    assert evaluation_order(logits, right).tolist() == [1, 4, 3, 0, 2]
