"""End-to-end noise sweeps on the tiny models: the run folder, resume, interruption, the adapter
cache, reproducibility and redrawing from files alone.

One finished sweep (2 levels x 2 chips) is shared by the module; tests that change a run work on a
copy of it, and every sweep shares one adapter cache, so only a few sweeps train.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import write_topic_task

import cimsim.eval.evaluate
from cimsim.cli import EXIT_INTERRUPTED, main
from cimsim.runs.results import POINT_COLUMNS, SCHEMA_VERSION
from cimsim.runs.sweep import chip_seed

SMALL = (
    *("--seeds", "2", "--epochs", "1", "--train-size", "30", "--test-size", "12"),
    *("--max-length", "16"),
)
SIGMAS = (0.05, 0.2)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

Key = tuple[str, float | None, int]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> dict[str, Path]:
    """The module's task file and adapter cache."""
    root = tmp_path_factory.mktemp("sweeps")
    return {"task": write_topic_task(root / "topics.jsonl"), "cache": root / "cache"}


def sweep_argv(shared: dict[str, Path], model: Path, out: Path, *options: str) -> list[str]:
    """A small sweep of ``model`` on the module's task into ``out``; later options win."""
    base = ["--model", str(model), "--task", str(shared["task"]), "--noise", "0.05,0.2"]
    paths = ["--cache-dir", str(shared["cache"]), "--out", str(out)]
    return ["sweep", *SMALL, *base, *paths, *options]


def compare_argv(shared: dict[str, Path], model: Path, out: Path, *options: str) -> list[str]:
    """The same small run as ``sweep_argv``, as ``cimsim compare``."""
    return ["compare", *sweep_argv(shared, model, out, *options)[1:]]


@pytest.fixture(scope="module")
def finished(
    shared: dict[str, Path], tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A finished sweep; read it, never change it (copy it first)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(sweep_argv(shared, tiny_bert_dir, out)) == 0
    return out


@pytest.fixture
def run_copy(finished: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


@pytest.fixture
def evaluations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per call of ``cimsim.eval.evaluate.evaluate`` (run_sweep imports it when it
    runs)."""
    calls: list[int] = []
    real = cimsim.eval.evaluate.evaluate

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cimsim.eval.evaluate, "evaluate", counted)
    return calls


def points(run_dir: Path) -> dict[Key, dict[str, Any]]:
    """The rows of ``points.jsonl`` by (card, value, instance), timings dropped."""
    rows = [json.loads(line) for line in (run_dir / "points.jsonl").read_text().splitlines()]
    by_key = {(r["card"], r["value"], r["instance"]): r for r in rows}
    assert len(by_key) == len(rows), "a point was evaluated twice"
    for row in rows:
        del row["eval_seconds"]
    return by_key


def noisy_keys(sigmas: tuple[float, ...], instances: int = 2) -> set[Key]:
    return {("channel", s, i) for s in sigmas for i in range(instances)}


def read_config(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "config.json").read_text())


# ---------------------------------------------------------------- the run folder


def test_sweep_writes_a_complete_run_folder(finished: Path) -> None:
    record = read_config(finished)
    assert record["schema"] == SCHEMA_VERSION
    assert {"config", "model", "task", "card", "axis", "adapter", "sessions"} <= set(record)
    assert record["config"]["values"] == list(SIGMAS)
    assert record["config"]["instances"] == 2
    assert record["model"]["kind"] == "encoder"
    assert record["task"]["label_names"] == ["money", "music", "sport"]
    assert record["card"]["name"] == "channel"
    assert record["adapter"]["cached"] is False
    session = record["sessions"][0]
    assert {"packages", "git", "python"} <= set(session)
    assert session["packages"]["torch"]

    rows = points(finished)
    assert set(rows) == {("digital", None, -1)} | noisy_keys(SIGMAS)
    for (noise_model, sigma, instance), row in rows.items():
        expected = (
            None if noise_model == "digital" else chip_seed(0, "channel", "sigma", sigma, instance)
        )
        assert row["chip_seed"] == expected
        assert row["n_examples"] == 12
        assert row["accuracy"] == row["n_correct"] / 12

    results = pd.read_csv(finished / "results.csv")
    assert tuple(results.columns) == POINT_COLUMNS
    assert len(results) == 5

    summary = pd.read_csv(finished / "summary.csv")
    assert summary["sigma"].tolist() == list(SIGMAS)
    assert summary["n"].tolist() == [2, 2]

    png, pdf = (finished / "sweep.png").read_bytes(), (finished / "sweep.pdf").read_bytes()
    assert png.startswith(PNG_MAGIC)
    assert pdf.startswith(b"%PDF") and len(pdf) > 1000
    adapter_config = json.loads((finished / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["peft_type"] == "LORA"
    assert (finished / "adapter" / "adapter_model.safetensors").stat().st_size > 0


def test_results_csv_keeps_chip_seeds_exact(finished: Path) -> None:
    results = pd.read_csv(finished / "results.csv", dtype={"chip_seed": "Int64"})
    noisy = results[results["noise_model"] == "channel"]
    assert len(noisy) == 4
    for row in noisy.to_dict("records"):
        assert row["chip_seed"] == chip_seed(0, "channel", "sigma", row["sigma"], row["instance"])


def test_result_files_follow_the_umask_like_points_jsonl(finished: Path) -> None:
    """Atomic writes go through private temporary files; the results must not stay private."""
    mode = (finished / "points.jsonl").stat().st_mode & 0o777
    for name in ("config.json", "results.csv", "summary.csv", "sweep.png", "sweep.pdf"):
        assert (finished / name).stat().st_mode & 0o777 == mode, name
    folder_mode = finished.stat().st_mode & 0o777
    assert (finished / "adapter").stat().st_mode & 0o777 == folder_mode


# ---------------------------------------------------------------- resume and interruption


def test_rerun_evaluates_nothing(
    run_copy: Path,
    shared: dict[str, Path],
    tiny_bert_dir: Path,
    evaluations: list[int],
) -> None:
    before = (run_copy / "points.jsonl").read_bytes()
    assert main(sweep_argv(shared, tiny_bert_dir, run_copy)) == 0
    assert evaluations == []
    assert (run_copy / "points.jsonl").read_bytes() == before
    assert len(read_config(run_copy)["sessions"]) == 2


def test_growing_the_grid_evaluates_only_the_new_points(
    run_copy: Path,
    shared: dict[str, Path],
    tiny_bert_dir: Path,
    evaluations: list[int],
) -> None:
    before = (run_copy / "points.jsonl").read_bytes()
    argv = sweep_argv(shared, tiny_bert_dir, run_copy, "--noise", "0.05,0.1,0.2")
    assert main(argv) == 0
    assert len(evaluations) == 2
    assert (run_copy / "points.jsonl").read_bytes().startswith(before)
    assert set(points(run_copy)) == {("digital", None, -1)} | noisy_keys((0.05, 0.1, 0.2))
    assert read_config(run_copy)["config"]["values"] == [0.05, 0.1, 0.2]
    summary = pd.read_csv(run_copy / "summary.csv")
    assert summary["n"].tolist() == [2, 2, 2]


def test_torn_last_line_is_dropped_and_its_point_recomputed(
    run_copy: Path,
    finished: Path,
    shared: dict[str, Path],
    tiny_bert_dir: Path,
    evaluations: list[int],
) -> None:
    points_file = run_copy / "points.jsonl"
    lines = points_file.read_bytes().splitlines(keepends=True)
    last = lines.pop()
    points_file.write_bytes(b"".join(lines) + last[: len(last) // 2])  # died mid-write
    assert main(sweep_argv(shared, tiny_bert_dir, run_copy)) == 0
    assert len(evaluations) == 1
    text = points_file.read_text()
    assert text.endswith("\n")
    assert all(json.loads(line) for line in text.splitlines())
    assert points(run_copy) == points(finished)


def test_interrupted_sweep_keeps_its_points_and_resumes(
    finished: Path,
    shared: dict[str, Path],
    tiny_bert_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls: list[int] = []
    real = cimsim.eval.evaluate.evaluate

    def interrupted_on_third_call(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(cimsim.eval.evaluate, "evaluate", interrupted_on_third_call)
    out = tmp_path / "run"
    argv = sweep_argv(shared, tiny_bert_dir, out)
    assert main(argv) == EXIT_INTERRUPTED
    messages = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(messages) == 1, messages
    assert messages[0].startswith("cimsim: interrupted")
    assert "2 finished points" in messages[0] and str(out) in messages[0]
    saved = points(out)
    assert set(saved) == {("digital", None, -1), ("channel", 0.05, 0)}
    assert saved == {key: row for key, row in points(finished).items() if key in saved}

    monkeypatch.setattr(cimsim.eval.evaluate, "evaluate", real)
    assert main(argv) == 0
    assert points(out) == points(finished)


# ---------------------------------------------------------------- cache and reproducibility


def test_same_config_elsewhere_uses_the_cached_adapter_and_repeats_every_number(
    finished: Path, shared: dict[str, Path], tiny_bert_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "again"
    assert main(sweep_argv(shared, tiny_bert_dir, out)) == 0
    assert read_config(out)["adapter"]["cached"] is True
    assert points(out) == points(finished)
    digital = ("digital", None, -1)
    assert points(out)[digital]["accuracy"] == points(finished)[digital]["accuracy"]


@pytest.fixture(scope="module")
def bare_runs(
    shared: dict[str, Path], tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Base-model sweeps (no adapter) at noise levels that do move the tiny model's accuracy:
    root seed 0 twice, into different folders, and root seed 1."""
    root = tmp_path_factory.mktemp("bare")
    runs = {}
    for name, seed in (("seed0", "0"), ("seed0-again", "0"), ("seed1", "1")):
        runs[name] = root / name
        options = ("--method", "none", "--noise", "2,5", "--seeds", "3", "--seed", seed)
        assert main(sweep_argv(shared, tiny_bert_dir, runs[name], *options)) == 0
    return runs


def test_method_none_evaluates_the_base_model_without_an_adapter(
    bare_runs: dict[str, Path],
) -> None:
    run_dir = bare_runs["seed0"]
    assert not (run_dir / "adapter").exists()
    assert read_config(run_dir)["adapter"] is None
    rows = points(run_dir)
    assert set(rows) == {("digital", None, -1)} | noisy_keys((2.0, 5.0), instances=3)
    assert {row["method"] for row in rows.values()} == {"none"}


def test_same_root_seed_repeats_every_chip(bare_runs: dict[str, Path]) -> None:
    first, again = points(bare_runs["seed0"]), points(bare_runs["seed0-again"])
    assert first == again
    noisy = [row["accuracy"] for key, row in first.items() if key[0] == "channel"]
    assert len(set(noisy)) > 1, "every chip scored the same: the comparison proves nothing"


def test_another_root_seed_programs_other_chips(bare_runs: dict[str, Path]) -> None:
    ours, theirs = points(bare_runs["seed1"]), points(bare_runs["seed0"])
    keys = noisy_keys((2.0, 5.0), instances=3)
    for key in keys:
        assert ours[key]["chip_seed"] == chip_seed(1, "channel", "sigma", key[1], key[2])
        assert ours[key]["chip_seed"] != theirs[key]["chip_seed"]
    assert any(ours[key]["accuracy"] != theirs[key]["accuracy"] for key in keys)


# ---------------------------------------------------------------- redrawing, other models


def test_plot_redraws_from_the_files_alone(
    finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cimsim.eval.models
    import cimsim.eval.tasks

    def no_loading(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("plot must not load a model or a task")

    monkeypatch.setattr(cimsim.eval.models, "load_model", no_loading)
    monkeypatch.setattr(cimsim.eval.tasks, "load_task", no_loading)
    run_dir = tmp_path / "elsewhere" / "run"
    shutil.copytree(finished, run_dir)
    for name in ("sweep.png", "sweep.pdf", "summary.csv", "results.csv"):
        (run_dir / name).unlink()
    assert main(["plot", str(run_dir)]) == 0
    assert (run_dir / "sweep.png").read_bytes().startswith(PNG_MAGIC)
    assert (run_dir / "sweep.pdf").stat().st_size > 0
    for name in ("summary.csv", "results.csv"):
        assert (run_dir / name).read_bytes() == (finished / name).read_bytes()


def test_causal_lm_sweep(shared: dict[str, Path], tiny_llama_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "llama"
    options = ("--lora-targets", "q_proj,v_proj", "--noise", "0.05")
    assert main(sweep_argv(shared, tiny_llama_dir, out, *options)) == 0
    assert read_config(out)["model"]["kind"] == "causal"
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert sorted(adapter_config["target_modules"]) == ["q_proj", "v_proj"]
    assert set(points(out)) == {("digital", None, -1)} | noisy_keys((0.05,))


def test_a_causal_folder_written_before_the_tokenization_choice_resumes_as_parts(
    shared: dict[str, Path], tiny_llama_dir: Path, tmp_path: Path, evaluations: list[int]
) -> None:
    """A stored config without prompt_tokens was scored in parts: resuming it with the joined
    default is refused in one line, with parts it resumes and evaluates nothing."""
    out = tmp_path / "old"
    options = ("--lora-targets", "q_proj,v_proj", "--noise", "0.05", "--method", "none")
    assert main(sweep_argv(shared, tiny_llama_dir, out, *options, "--prompt-tokens", "parts")) == 0
    record = read_config(out)
    del record["config"]["eval"]["prompt_tokens"]  # as written before the field existed
    (out / "config.json").write_text(json.dumps(record))
    before = (out / "points.jsonl").read_text()
    evaluations.clear()
    assert main(sweep_argv(shared, tiny_llama_dir, out, *options)) == 2
    assert main(sweep_argv(shared, tiny_llama_dir, out, *options, "--prompt-tokens", "parts")) == 0
    assert evaluations == [] and (out / "points.jsonl").read_text() == before


def test_an_encoder_folder_written_before_the_tokenization_choice_resumes(
    finished: Path, shared: dict[str, Path], tiny_bert_dir: Path, tmp_path: Path,
    evaluations: list[int],
) -> None:  # fmt: skip
    out = tmp_path / "encoder"
    shutil.copytree(finished, out)
    record = read_config(out)
    del record["config"]["eval"]["prompt_tokens"]
    (out / "config.json").write_text(json.dumps(record))
    evaluations.clear()
    assert main(sweep_argv(shared, tiny_bert_dir, out)) == 0
    assert evaluations == []


def test_training_fields_the_method_does_not_use_may_differ_on_resume(
    run_copy: Path, shared: dict[str, Path], tiny_bert_dir: Path, evaluations: list[int]
) -> None:
    """A lora folder resumes under another lam or auto-halora switch (its adapter is the same);
    a field that shapes lora, the learning rate, is refused."""
    before = (run_copy / "points.jsonl").read_text()
    assert main(sweep_argv(shared, tiny_bert_dir, run_copy, "--lam", "0.9")) == 0
    assert evaluations == [] and (run_copy / "points.jsonl").read_text() == before
    assert main(sweep_argv(shared, tiny_bert_dir, run_copy, "--lr", "0.01")) == 2


def test_an_in_place_sweep_gives_the_buffered_points(
    shared: dict[str, Path], tiny_bert_dir: Path, finished: Path, tmp_path: Path
) -> None:
    out = tmp_path / "in-place"
    assert main(sweep_argv(shared, tiny_bert_dir, out, "--in-place")) == 0
    assert points(out) == points(finished)
    assert read_config(out)["config"]["in_place"] is True
    assert finished.name == "run" and read_config(finished)["config"]["in_place"] is False


def test_a_bfloat16_sweep_runs_its_model_and_chips_in_bfloat16(
    shared: dict[str, Path], tiny_llama_dir: Path, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bf16"
    options = ("--lora-targets", "q_proj,v_proj", "--noise", "0.05", "--dtype", "bfloat16")
    assert main(sweep_argv(shared, tiny_llama_dir, out, *options)) == 0
    config = read_config(out)
    assert config["config"]["dtype"] == "bfloat16"
    rows = points(out)
    assert set(rows) == {("digital", None, -1)} | noisy_keys((0.05,))
    assert all(0 <= r["accuracy"] <= 1 for r in rows.values())
    encoder = tmp_path / "bf16-encoder"  # a classifier head on a bfloat16 encoder too
    assert main(sweep_argv(shared, tiny_bert_dir, encoder, "--dtype", "bfloat16")) == 0
    assert len(points(encoder)) == 1 + 2 * 2


def test_a_default_folder_name_does_not_depend_on_fields_left_at_their_defaults() -> None:
    from cimsim.chip.cards import load_card
    from cimsim.eval.config import EvalConfig
    from cimsim.runs.sweep import SweepConfig

    card = load_card("channel")
    plain = SweepConfig().default_out_dir(card)
    assert SweepConfig(dtype="float32", in_place=False).default_out_dir(card) == plain
    assert SweepConfig(dtype="bfloat16").default_out_dir(card) != plain
    joined = SweepConfig(eval=EvalConfig(prompt_tokens="joined")).default_out_dir(card)
    assert joined == plain
    assert SweepConfig(eval=EvalConfig(prompt_tokens="parts")).default_out_dir(card) != plain


# ---------------------------------------------------------------- device cards and other axes


def test_vary_a_tile_field_on_a_card(
    shared: dict[str, Path], tiny_bert_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "adc"
    options = ("--device", "rram-macro", "--vary", "adc_bits=4,8", "--noise", "0.5")
    assert main(sweep_argv(shared, tiny_bert_dir, out, *options)) == 0
    record = read_config(out)
    assert record["card"]["name"] == "rram-macro" and record["card"]["tile"]["rows"] == 512
    assert record["axis"] == {**record["axis"], "varied": "adc_bits", "unit": "bits"}
    results = pd.read_csv(out / "results.csv", dtype={"chip_seed": "Int64"})
    noisy = results[results["card"] == "rram-macro"]
    # The CSV follows the varied field: a column named after it, next to value and its unit.
    assert sorted(noisy["adc_bits"].unique()) == [4, 8]
    assert (noisy["varied"] == "adc_bits").all() and (noisy["value_unit"] == "bits").all()
    assert (noisy["sigma"] == 0.5).all()
    seeds = {chip_seed(0, "rram-macro", "adc_bits", v, i) for v in (4.0, 8.0) for i in range(2)}
    assert set(noisy["chip_seed"]) == seeds
    summary = pd.read_csv(out / "summary.csv")
    assert summary["value"].tolist() == [4.0, 8.0]
    assert (out / "sweep.png").stat().st_size > 0


def test_a_users_card_file_and_a_drift_axis(
    shared: dict[str, Path], tiny_bert_dir: Path, tmp_path: Path
) -> None:
    card = tmp_path / "lab.toml"
    card.write_text('name = "lab"\n[device]\nmodel = "rram"\nsigma = 1.0\n')
    out = tmp_path / "drift"
    options = ("--device", str(card), "--vary", "drift_time_s=1,86400", "--noise", "1")
    options += ("--method", "none")
    assert main(sweep_argv(shared, tiny_bert_dir, out, *options)) == 0
    assert read_config(out)["config"]["card"] == str(card)
    assert "drift_time_s" in pd.read_csv(out / "results.csv").columns


def test_the_aihwkit_engine_runs_the_same_sweep(
    shared: dict[str, Path], tiny_bert_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "aihwkit"
    options = ("--device", "pcm", "--noise", "1", "--engine", "aihwkit", "--method", "none")
    assert main(sweep_argv(shared, tiny_bert_dir, out, *options)) == 0
    assert read_config(out)["config"]["engine"] == "aihwkit"
    assert len(points(out)) == 1 + 2  # digital + 2 chips


def test_the_aihwkit_engine_refuses_what_it_cannot_simulate(
    shared: dict[str, Path], tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = ("--device", "rram-macro", "--noise", "1", "--engine", "aihwkit", "--method", "none")
    assert main(sweep_argv(shared, tiny_bert_dir, tmp_path / "x", *options)) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("cimsim: error:") and "\n" not in error
    assert not (tmp_path / "x").exists()  # refused before any work


@pytest.mark.parametrize("method", ["noise-aware", "halora"])
def test_noise_robust_methods_train_their_own_cached_adapter(
    shared: dict[str, Path], tiny_bert_dir: Path, tmp_path: Path, method: str
) -> None:
    out = tmp_path / method
    options = ("--method", method, "--train-noise", "0.1", "--noise", "0.05")
    assert main(sweep_argv(shared, tiny_bert_dir, out, *options)) == 0
    record = read_config(out)["adapter"]
    assert record["method"] == method and record["cached"] is False
    parts = {"noisy"} if method == "noise-aware" else {"ideal", "noisy", "spectral"}
    assert all(parts <= set(step) for step in record["log"])
    assert main(sweep_argv(shared, tiny_bert_dir, tmp_path / "again", *options)) == 0
    assert read_config(tmp_path / "again")["adapter"]["cached"] is True


def test_compare_runs_every_method_on_the_same_chips(
    shared: dict[str, Path], tiny_bert_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "compare"
    argv = compare_argv(shared, tiny_bert_dir, out, "--methods", "lora,halora", "--mu", "0.01")
    assert main(argv) == 0
    seeds = {
        method: {key: row["chip_seed"] for key, row in points(out / method).items()}
        for method in ("lora", "halora")
    }
    assert seeds["lora"] == seeds["halora"]  # paired: the very same chip instances
    markdown = (out / "comparison.md").read_text()
    assert "| lora |" in markdown and "| halora |" in markdown and "**" in markdown
    assert markdown.index("| lora |") < markdown.index("| halora |")  # the order asked for
    latex = (out / "comparison.tex").read_text()
    assert r"\begin{tabular}" in latex and r"\mathbf" in latex and r"\pm" in latex
    table = pd.read_csv(out / "comparison.csv")
    assert set(table["method"]) == {"lora", "halora"} and (table["n"] == 2).all()
    assert (out / "comparison.png").read_bytes().startswith(PNG_MAGIC)
    assert (out / "halora" / "sweep.png").exists()


def test_compare_refuses_a_repeated_method(
    shared: dict[str, Path], tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = compare_argv(shared, tiny_bert_dir, tmp_path / "x", "--methods", "lora,lora")
    assert main(argv) == 2
    assert "distinct methods" in capsys.readouterr().err


def test_train_writes_adapter_log_and_loss_curve(
    shared: dict[str, Path], tiny_bert_dir: Path, tmp_path: Path
) -> None:
    from peft import PeftConfig

    out = tmp_path / "trained"
    argv = ["train", "--out", str(out), "--method", "halora", "--model", str(tiny_bert_dir)]
    argv += ["--task", str(shared["task"]), "--epochs", "2", "--train-size", "30"]
    argv += ["--max-length", "16", "--cache-dir", str(shared["cache"])]
    assert main(argv) == 0
    log = pd.read_csv(out / "training_log.csv")
    assert list(log.columns[:2]) == ["step", "loss"]
    assert {"ideal", "noisy", "spectral"} <= set(log.columns) and len(log) == 4  # 2 x ceil(30/16)
    assert json.loads((out / "training.json").read_text())["method"] == "halora"
    assert PeftConfig.from_pretrained(str(out / "adapter")).peft_type == "LORA"
    assert (out / "loss.png").read_bytes().startswith(PNG_MAGIC)


def test_train_refuses_an_unknown_method(
    tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--out", str(tmp_path / "x"), "--method", "qlora"]
    argv += ["--model", str(tiny_bert_dir), "--cache-dir", str(tmp_path)]
    assert main(argv) == 2
    assert "unknown method 'qlora'" in capsys.readouterr().err


def test_compare_with_one_chip_instance_writes_its_tables(
    shared: dict[str, Path], tiny_bert_dir: Path, tmp_path: Path
) -> None:
    """One chip per value: no spread to report, but every table and figure is written."""
    out = tmp_path / "compare1"
    argv = compare_argv(shared, tiny_bert_dir, out, "--methods", "lora,halora", "--seeds", "1")
    assert main(argv) == 0
    table = pd.read_csv(out / "comparison.csv")
    assert (table["n"] == 1).all()
    assert "| halora |" in (out / "comparison.md").read_text()
    assert "| halora − lora |" in (out / "comparison.md").read_text()  # no spread: dashes
    assert pd.read_csv(out / "comparison_pairs.csv")["paired_se"].isna().all()
    assert (out / "comparison.png").read_bytes().startswith(PNG_MAGIC)


def test_the_comparison_table_bolds_every_method_tied_for_best() -> None:
    import pandas as pd

    from cimsim.runs.compare import to_latex, to_markdown

    table = pd.DataFrame(
        {"0.02": [(0.85, 0.0), (0.85, 0.01), (0.80, 0.02)], "digital": [0.9, 0.95, 0.95]},
        index=pd.Index(["lora", "noise-aware", "halora"], name="method"),
    )
    markdown = to_markdown(table, "sigma", "× max|W[row,:]|")
    assert "| lora | **0.850 ± 0.000** | 0.900 |" in markdown
    assert "| noise-aware | **0.850 ± 0.010** | **0.950** |" in markdown
    assert "| halora | 0.800 ± 0.020 | **0.950** |" in markdown
    assert to_latex(table, "sigma", "× max|W[row,:]|").count(r"\mathbf") == 4


def _points(accuracy: dict[str, list[list[float]]], digital: dict[str, float]) -> pd.DataFrame:
    """A comparison's rows: ``accuracy[method][value_index][instance]`` at values 0.02, 0.04, ..."""
    rows = [
        {"method": m, "card": "channel", "value": 0.02 * (v + 1), "instance": i, "accuracy": a}
        for m, grid in accuracy.items()
        for v, chips in enumerate(grid)
        for i, a in enumerate(chips)
    ]
    rows += [
        {"method": m, "card": "digital", "value": None, "instance": -1, "accuracy": a}
        for m, a in digital.items()
    ]
    return pd.DataFrame(rows)


def test_paired_differences_follow_their_formulas() -> None:
    import numpy as np
    from scipy import stats

    from cimsim.runs.compare import paired_differences, pairs_markdown

    a = [[0.80, 0.70, 0.75], [0.60, 0.50, 0.58]]
    b = [[0.84, 0.71, 0.80], [0.65, 0.52, 0.60]]
    pairs = paired_differences(_points({"a": a, "b": b}, {"a": 0.9, "b": 0.88}), ("a", "b"))
    assert len(pairs) == 1
    row = pairs.iloc[0]
    chips_a, chips_b = np.mean(a, axis=0), np.mean(b, axis=0)  # each chip's average over values
    d = chips_b - chips_a
    assert (row["method"], row["reference"], row["chips"]) == ("b", "a", 3)
    assert row["difference"] == pytest.approx(d.mean())
    sem = lambda x: x.std(ddof=1) / np.sqrt(len(x))  # noqa: E731
    assert row["combined_se"] == pytest.approx(np.hypot(sem(chips_a), sem(chips_b)))
    assert row["paired_se"] == pytest.approx(sem(d))
    half = stats.t.ppf(0.975, 2) * sem(d)
    assert (row["low"], row["high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert row["digital_difference"] == pytest.approx(-0.02)
    assert "| b − a | +0.032 |" in pairs_markdown(pairs)
    assert "| −0.020 |" in pairs_markdown(pairs)
    three = paired_differences(_points({"a": a, "b": b, "c": a}, {}), ("a", "b", "c"))
    pairs3 = list(zip(three["method"], three["reference"], strict=True))
    assert pairs3 == [("b", "a"), ("c", "a"), ("c", "b")]


def test_the_paired_interval_covers_the_true_difference_at_its_level() -> None:
    """Chips that share an effect across methods (what pairing removes) and a true difference
    of 0.01: the 95 % paired interval covers it in 95 % of simulated comparisons, while the
    combined standard error is the larger, as the pairing promises."""
    import numpy as np

    from cimsim.runs.compare import paired_differences

    rng = np.random.default_rng(7)
    runs, covered, wider = 1500, 0, 0
    for _ in range(runs):
        chip = rng.normal(0.7, 0.05, size=(2, 5))  # (values, chips): shared by both methods
        a = chip + rng.normal(0, 0.01, size=chip.shape)
        b = chip + 0.01 + rng.normal(0, 0.01, size=chip.shape)
        row = paired_differences(_points({"a": a.tolist(), "b": b.tolist()}, {}), ("a", "b"))
        covered += int(row["low"].iloc[0] <= 0.01 <= row["high"].iloc[0])
        wider += int(row["combined_se"].iloc[0] > row["paired_se"].iloc[0])
    assert 0.93 <= covered / runs <= 0.97  # binomial sd 0.006 around 0.95
    assert wider / runs > 0.95


def test_rows_pair_each_chip_with_digital_and_the_report_counts_passing_chips(
    run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from cimsim.runs.report import write_report
    from cimsim.runs.sweep import unpack_bits

    rows = [json.loads(line) for line in (run_copy / "points.jsonl").read_text().splitlines()]
    digital = next(r for r in rows if r["card"] == "digital")
    right = unpack_bits(digital["correct"], digital["n_examples"])
    assert int(np.sum(right)) == digital["n_correct"]
    for row in rows:
        if row["card"] != "digital":  # broken - fixed is the paired drop in examples
            assert row["broken"] - row["fixed"] == digital["n_correct"] - row["n_correct"]
    report = write_report(run_copy, budget=0.5)
    assert report.rule is not None and [y.chips for y in report.yields] == [2, 2]
    for y in report.yields:
        chips = [r for r in rows if r.get("value") == y.value]
        assert y.passes == sum(r["broken"] <= report.rule.max_broken for r in chips)
    capsys.readouterr()
    assert main(["plot", str(run_copy)]) == 0
    assert "chips within budget per σ" in capsys.readouterr().out
    # a folder written without the pairing keeps the mean-based tolerance line
    old = tmp_path / "old"
    shutil.copytree(run_copy, old)
    lines = (old / "points.jsonl").read_text().splitlines()
    stripped = [
        {k: v for k, v in json.loads(x).items() if k not in ("broken", "fixed")} for x in lines
    ]
    (old / "points.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stripped))
    assert write_report(old).yields == []
    assert main(["plot", str(old)]) == 0
    assert "tolerance: σ" in capsys.readouterr().out
