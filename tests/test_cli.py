"""Every way a user can get the ``cimsim`` command line wrong: one stderr line, exit 2, no
traceback.

Also: the listing commands, ``--help``, and that a failed call never damages results on disk.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import write_topic_task

from cimsim.adapters.lora import LoraConfig, add_lora, save_adapter
from cimsim.cli import EXIT_USAGE, main

SMALL = (
    *("--seeds", "2", "--epochs", "1", "--train-size", "30", "--test-size", "12"),
    *("--max-length", "16", "--noise", "0.05"),
)
RESULT_FILES = ("config.json", "points.jsonl", "results.csv")

SweepArgs = Callable[..., list[str]]


def user_error(capsys: pytest.CaptureFixture[str], code: int) -> str:
    """Check that a call failed as a user error; return its one stderr line."""
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("cimsim: error: ")
    return lines[0]


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {name: (run_dir / name).read_bytes() for name in RESULT_FILES}


@pytest.fixture
def sweep_args(tmp_path: Path, tiny_bert_dir: Path, topic_task_file: Path) -> SweepArgs:
    """``sweep`` on the tiny model and task, small, in tmp_path; later options win."""

    def build(*options: str) -> list[str]:
        base = ["--model", str(tiny_bert_dir), "--task", str(topic_task_file)]
        paths = ["--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "run")]
        return ["sweep", *SMALL, *base, *paths, *options]

    return build


# ---------------------------------------------------------------- noise ranges


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("0.1..0.01", "'0.1..0.01'"),
        ("", "empty noise range"),
        ("-0.1", "'-0.1'"),
        ("0.01..-0.1", "'0.01..-0.1'"),
        ("nan", "'nan'"),
        ("inf", "'inf'"),
        ("0.01...0.1", "'0.01...0.1'"),
        ("a..b", "'a..b'"),
        ("0.01..0.1:1", "'0.01..0.1:1'"),
        ("0.01..0.1:x", "'0.01..0.1:x'"),
        ("0.1..0.1", "'0.1..0.1'"),
        ("0.01..0.1/0", "'0.01..0.1/0'"),
        ("0.1,0.1", "'0.1,0.1'"),
    ],
)
def test_bad_noise_range(
    spec: str,
    named: str,
    sweep_args: SweepArgs,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = user_error(capsys, main(sweep_args("--noise", spec)))
    assert named in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("spec", ["0..0.1/1e-7", "0..0.1:1000000", "0..0.1/1e-300"])
def test_absurdly_large_grid_is_refused(
    spec: str,
    sweep_args: SweepArgs,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import cimsim.runs.sweep

    def must_not_start(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a sweep over --noise {spec} was started")

    monkeypatch.setattr(cimsim.runs.sweep, "run_sweep", must_not_start)
    line = user_error(capsys, main(sweep_args("--noise", spec)))
    assert f"'{spec}'" in line


# ---------------------------------------------------------------- names, files, adapters


def _broken_jsonl(directory: Path) -> Path:
    path = directory / "broken.jsonl"
    path.write_text(
        '{"text": "a", "label": "x"}\n{"text": "b", "label\n{"text": "c", "label": 1}\n'
    )
    return path


def _csv_without_label(directory: Path) -> Path:
    path = directory / "nolabel.csv"
    path.write_text("text,topic\nhello,a\nbye,b\n")
    return path


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (("--task", "nosuchtask"), "nosuchtask"),
        (("--noise-model", "nope"), "nope"),
        (("--method", "nomethod"), "nomethod"),
        (("--seeds", "0"), "--seeds"),
        (("--seeds", "x"), "--seeds"),
        (("--seeds", "99999999999"), "--seeds must be in 1..10000"),  # was: out of memory
        (("--seed", "-1"), "seed must be in 0.."),
        (("--seed", "99999999999999999999999"), "seed must be in 0.."),
        (("--lr", "inf"), "lr must be a positive finite number"),
        (("--method", "halora", "--mu", "inf"), "mu must be a finite number"),
        (("--task", "/nonexistent.jsonl"), "/nonexistent.jsonl"),
        (("--method", "none", "--adapter", "/nonexistent"), "--adapter"),
        (("--device", "nosuchdevice"), "nosuchdevice"),
        (("--budget", "-1"), "--budget"),
        (("--lora-r", "0"), "rank"),
        (("--no-such-option",), "--no-such-option"),
        (("--executor", "dask"), "--executor is local or ray"),
        (("--executor", "ray", "--workers", "0"), "--workers must be at least 1"),
        (("--dtype", "int8"), "--dtype is float32, bfloat16 or float16"),
        (("--engine", "aihwkit", "--in-place"), "need the cimsim engine"),
    ],
)
def test_bad_option_before_any_loading(
    options: tuple[str, ...],
    named: str,
    sweep_args: SweepArgs,
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = user_error(capsys, main(sweep_args(*options)))
    assert named in line


@pytest.mark.parametrize(
    "argv",
    [
        ["sweep", "--out", ""],
        ["sweep", "--cache-dir", " "],
        ["sweep", "--adapter", ""],
        ["run", ""],
        ["run", "x.toml", "--figures-dir", ""],
        ["train", "--method", "lora", "--out", ""],
        ["plot", ""],
        ["continual", "--out", ""],
        ["devices", "fit", "m.csv", "--out", ""],
        ["devices", "example-measurements", ""],
    ],
)
def test_empty_path_is_refused(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``Path("")`` is the current folder: an empty --out would write results into it."""
    monkeypatch.chdir(tmp_path)
    line = user_error(capsys, main(argv))
    assert "the path is empty" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("make_file", "named"),
    [(_broken_jsonl, "line 2"), (_csv_without_label, "label")],
    ids=["jsonl-broken-line", "csv-without-label-column"],
)
def test_corrupt_task_file(
    make_file: Callable[[Path], Path],
    named: str,
    sweep_args: SweepArgs,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = make_file(tmp_path)
    line = user_error(capsys, main(sweep_args("--task", str(path))))
    assert str(path) in line
    assert named in line


@pytest.fixture(scope="module")
def adapters(
    tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path, tiny_llama_dir: Path
) -> Path:
    """A folder of adapters that do not suit the tiny BERT, each for one reason."""
    from cimsim.eval.models import load_model

    root = tmp_path_factory.mktemp("adapters")
    for name, model_dir, targets in (
        ("llama", tiny_llama_dir, ("q_proj", "v_proj")),
        ("wrong-rank", tiny_bert_dir, ("query", "value")),
    ):
        loaded = load_model(str(model_dir))
        lora = LoraConfig(r=4, target_modules=targets)
        add_lora(loaded.model, lora)
        save_adapter(loaded.model, root / name, lora, base_model_name_or_path=str(model_dir))
    config_file = root / "wrong-rank" / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "r": 8}))  # the weights stay rank 4

    def variant(name: str, weights: bytes | None = None, **changes: object) -> None:
        shutil.copytree(root / "wrong-rank", root / name)
        (root / name / "adapter_config.json").write_text(json.dumps({**config, **changes}))
        if weights is not None:
            (root / name / "adapter_model.safetensors").write_bytes(weights)

    variant("garbage-weights", weights=b"not a safetensors file" * 4)
    variant("not-lora", peft_type="PREFIX_TUNING")
    variant("layernorm-target", target_modules=["LayerNorm"])
    variant("extra-target", target_modules=["query", "value", "key"])
    (root / "garbage-config").mkdir()
    (root / "garbage-config" / "adapter_config.json").write_text("{not json")
    return root


@pytest.mark.parametrize(
    ("name", "named"),
    [
        ("missing", "no adapter_config.json"),
        ("llama", "does not fit"),
        ("wrong-rank", "shape (4, 32), the model needs (8, 32)"),
        ("extra-target", "no weights for"),
        ("layernorm-target", "LayerNorm"),
        ("garbage-weights", "corrupt adapter_model.safetensors"),
        ("not-lora", "not a LoRA"),
        ("garbage-config", "adapter_config.json"),
    ],
)
def test_bad_adapter(
    name: str,
    named: str,
    adapters: Path,
    sweep_args: SweepArgs,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = adapters / name
    line = user_error(capsys, main(sweep_args("--adapter", str(path))))
    assert str(path) in line
    assert named in line


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (("--model", "nosuchmodel"), "unknown model 'nosuchmodel'"),  # no slash: no hub lookup
        (("--lora-targets", "nosuchmodule"), "nosuchmodule"),
    ],
)
def test_unknown_name_found_while_loading(
    options: tuple[str, ...],
    named: str,
    sweep_args: SweepArgs,
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = user_error(capsys, main(sweep_args(*options)))
    assert named in line


@pytest.mark.parametrize("config", [None, "{{{ garbage"], ids=["empty-dir", "garbage-config"])
def test_unloadable_model_dir(
    config: str | None,
    sweep_args: SweepArgs,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    if config is not None:
        (model_dir / "config.json").write_text(config)
    line = user_error(capsys, main(sweep_args("--model", str(model_dir))))
    assert f"cannot load model '{model_dir}'" in line


@pytest.mark.parametrize("alpha", ["nan", "inf"])
def test_non_finite_lora_alpha(
    alpha: str, sweep_args: SweepArgs, capsys: pytest.CaptureFixture[str]
) -> None:
    line = user_error(capsys, main(sweep_args("--lora-alpha", alpha, "--method", "lora")))
    assert "alpha" in line


# ---------------------------------------------------------------- results already on disk


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> list[str]:
    """Arguments of a finished base-model sweep (1 level x 2 chips), run once for the module."""
    root = tmp_path_factory.mktemp("finished")
    task = write_topic_task(root / "topics.jsonl")
    args = ["sweep", *SMALL, "--method", "none"]
    args += ["--model", str(tiny_bert_dir), "--task", str(task)]
    args += ["--cache-dir", str(root / "cache"), "--out", str(root / "run")]
    assert main(args) == 0
    return args


def _option(args: list[str], name: str) -> Path:
    return Path(args[args.index(name) + 1])


@pytest.fixture
def run_copy(finished_run: list[str], tmp_path: Path) -> tuple[list[str], Path]:
    """The finished run copied into tmp_path, and the arguments that resume it."""
    run_dir = tmp_path / "run"
    shutil.copytree(_option(finished_run, "--out"), run_dir)
    args = [*finished_run]
    args[args.index("--out") + 1] = str(run_dir)
    return args, run_dir


@pytest.mark.parametrize(
    "change",
    [
        ("--task", "other"),
        ("--model", "llama"),
        ("--seed", "1"),
        ("--noise-model", "multiplicative"),
        ("--method", "lora"),
        ("--max-length", "8"),
    ],
    ids=["task", "model", "seed", "noise-model", "method", "max-length"],
)
def test_different_sweep_into_a_finished_run_changes_nothing(
    change: tuple[str, str],
    run_copy: tuple[list[str], Path],
    tiny_llama_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args, run_dir = run_copy
    option, value = change
    if value == "other":
        value = str(write_topic_task(tmp_path / "other.jsonl", n_per_label=10))
    elif value == "llama":
        value = str(tiny_llama_dir)
    before = snapshot(run_dir)
    line = user_error(capsys, main([*args, option, value]))
    assert str(run_dir) in line and "different sweep" in line
    assert snapshot(run_dir) == before


@pytest.mark.parametrize(
    "damage",
    [lambda line: line[:25] + b"\n", lambda line: b"{}\n", lambda line: b'"value"\n'],
    ids=["cut", "empty-object", "not-an-object"],
)
def test_damaged_middle_line_stops_resume_and_plot_unchanged(
    damage: Callable[[bytes], bytes],
    run_copy: tuple[list[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    args, run_dir = run_copy
    points = run_dir / "points.jsonl"
    lines = points.read_bytes().splitlines(keepends=True)
    assert len(lines) == 3
    points.write_bytes(lines[0] + damage(lines[1]) + lines[2])
    before = snapshot(run_dir)
    for argv in (args, ["plot", str(run_dir)]):
        line = user_error(capsys, main(argv))
        assert str(points) in line and "line 2" in line
        assert snapshot(run_dir) == before


def test_repeated_point_stops_resume_and_plot_unchanged(
    run_copy: tuple[list[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A row written twice (files joined by hand) would count twice in every mean."""
    args, run_dir = run_copy
    points = run_dir / "points.jsonl"
    lines = points.read_bytes().splitlines(keepends=True)
    points.write_bytes(b"".join([*lines, lines[1]]))
    before = snapshot(run_dir)
    for argv in (args, ["plot", str(run_dir)]):
        line = user_error(capsys, main(argv))
        assert str(points) in line and "line 4 repeats line 2" in line
        assert snapshot(run_dir) == before


@pytest.mark.parametrize("part", ["axis", "card", "model", "task"])
def test_plot_refuses_a_record_without_its_parts(
    part: str, run_copy: tuple[list[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Was: the figure drawn with an empty unit and no model or task name."""
    _, run_dir = run_copy
    config = run_dir / "config.json"
    record = json.loads(config.read_text())
    del record[part]
    config.write_text(json.dumps(record))
    before = snapshot(run_dir)
    line = user_error(capsys, main(["plot", str(run_dir)]))
    assert str(config) in line and part in line
    assert snapshot(run_dir) == before


@pytest.mark.parametrize(
    ("setup", "named"),
    [
        (lambda d: None, "nowhere"),
        (lambda d: d.mkdir(), "config.json"),
        (lambda d: (d.mkdir(), (d / "config.json").write_text("[]")), "config.json"),
    ],
    ids=["missing-folder", "no-config", "config-not-an-object"],
)
def test_plot_bad_folder(
    setup: Callable[[Path], object],
    named: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "nowhere"
    setup(folder)
    line = user_error(capsys, main(["plot", str(folder)]))
    assert named in line


def test_plot_refuses_a_budget_a_sweep_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = user_error(capsys, main(["plot", str(tmp_path), "--budget", "nan"]))
    assert "--budget" in line


def test_max_length_beyond_the_models_positions(
    sweep_args: SweepArgs, tiny_bert_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    positions = json.loads((tiny_bert_dir / "config.json").read_text())["max_position_embeddings"]
    line = user_error(capsys, main(sweep_args("--max-length", str(positions + 1))))
    assert f"exceeds the model's {positions} positions" in line


def test_a_sweep_and_a_comparison_never_share_a_folder(
    sweep_args: SweepArgs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    comparison = tmp_path / "comparison"
    comparison.mkdir()
    (comparison / "comparison.csv").write_text("method\n")
    line = user_error(capsys, main(sweep_args("--out", str(comparison))))
    assert "holds a comparison" in line
    single = tmp_path / "single"
    single.mkdir()
    (single / "config.json").write_text("{}")
    args = sweep_args("--out", str(single))
    line = user_error(capsys, main(["compare", "--methods", "lora,noise-aware", *args[1:]]))
    assert "holds a single run" in line


def test_a_path_that_is_a_file_where_a_folder_belongs_is_one_line(
    sweep_args: SweepArgs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    code = main(sweep_args("--cache-dir", str(afile)))
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines() == [f"cimsim: error: Not a directory: {afile}/adapters"]
    assert afile.read_text() == "mine\n"


def test_an_unanticipated_error_is_one_line_and_its_traceback_is_on_request(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import cimsim.cli

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cimsim.cli, "app", broken)
    assert main(["devices"]) == 70
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "cimsim: internal error: ZeroDivisionError: a bug "
        "(set CIMSIM_DEBUG=1 for the traceback, and please report it)"
    ]
    monkeypatch.setenv("CIMSIM_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["devices"])


def test_out_is_an_existing_file(
    sweep_args: SweepArgs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "afile"
    path.write_text("mine\n")
    line = user_error(capsys, main(sweep_args("--out", str(path))))
    assert str(path) in line
    assert path.read_text() == "mine\n"


def test_run_config_with_a_damaged_config_field(
    run_copy: tuple[list[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args, run_dir = run_copy
    record = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**record, "config": [1, 2]}))
    before = snapshot(run_dir)
    line = user_error(capsys, main(args))
    assert "config.json" in line
    assert snapshot(run_dir) == before


# ---------------------------------------------------------------- help and listings


@pytest.mark.parametrize("argv", [["--help"], [], ["sweep", "--help"]])
def test_help_exits_zero(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Usage: cimsim" in out


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["models"], ["minilm"]),
        # Units print whole: rich must not read "[row,:]" as markup.
        (["noise-models"], ["channel", "tensor", "multiplicative", "pcm", "× max|W[row,:]|"]),
        (["tasks", "--cache-dir", "CACHE"], ["bbc-news", "movie", "tweets", "amazon", "nyt"]),
    ],
)
def test_listings(
    argv: list[str], names: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(tmp_path / "cache") if a == "CACHE" else a for a in argv]
    assert main(argv) == 0
    captured = capsys.readouterr()
    for name in names:
        assert name in captured.out
    assert captured.err == ""


def test_console_script_prints_one_line(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("cimsim")
    command = str(script) if script.exists() else shutil.which("cimsim")
    assert command, "the cimsim console script is not installed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    paths = ["--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "run")]
    done = subprocess.run(
        [command, "sweep", "--noise", "0.1..0.01", *paths],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == EXIT_USAGE
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("cimsim: error: ")
    assert "0.1..0.01" in done.stderr


@pytest.mark.parametrize("resume", [False, True])
def test_one_chip_instance_reports_no_spread(
    sweep_args: SweepArgs, tmp_path: Path, capsys: pytest.CaptureFixture[str], resume: bool
):
    """``--seeds 1`` has no spread to report: the table says so instead of failing, on a fresh
    run and on a resumed one (whose summary is rebuilt from the files)."""
    assert main(sweep_args("--seeds", "1")) == 0
    if resume:
        assert main(sweep_args("--seeds", "1")) == 0
    out = capsys.readouterr().out
    assert "Traceback" not in out
    assert "–" in out  # the std column of the one-chip row


def test_plot_refuses_a_comparison_or_foreign_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    compare = tmp_path / "compare"
    compare.mkdir()
    (compare / "comparison.csv").write_text("method\nlora\n")
    assert "is a comparison" in user_error(capsys, main(["plot", str(compare)]))
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"schema": "someone.else/1"}))
    (other / "points.jsonl").write_text("")
    assert "not a sweep" in user_error(capsys, main(["plot", str(other)]))


def test_a_partial_adapter_copy_is_replaced_whole(
    sweep_args: SweepArgs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    (out / ".adapter.partial").mkdir(parents=True)  # a copy an earlier run did not finish
    (out / ".adapter.partial" / "adapter_model.safetensors").write_bytes(b"torn")
    assert main(sweep_args()) == 0, capsys.readouterr().err
    assert not (out / ".adapter.partial").exists()
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert (out / "adapter" / "adapter_model.safetensors").read_bytes() != b"torn"
