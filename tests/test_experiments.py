"""Experiment files: the committed ones parse, bad ones fail with a line naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from cimsim.continual.experiment import is_continual, load_continual
from cimsim.core.errors import CimsimError
from cimsim.eval.config import EvalConfig
from cimsim.runs.experiments import load_experiment
from cimsim.runs.sweep import SweepConfig
from cimsim.watermark.experiment import is_watermark, load_watermark

EXPERIMENTS = sorted((Path(__file__).parent.parent / "experiments").rglob("*.toml"))
SWEEPS = [path for path in EXPERIMENTS if not is_continual(path) and not is_watermark(path)]


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_committed_experiments_parse(path: Path) -> None:
    if is_continual(path):
        name, description, _ = load_continual(path)
    elif is_watermark(path):
        name, description, _, _ = load_watermark(path)
    else:
        experiment = load_experiment(path)
        name, description = experiment.name, experiment.description
    assert name == path.stem
    assert description.strip()


def test_default_experiment_is_the_default_command() -> None:
    experiment = load_experiment(Path(__file__).parent.parent / "experiments/default-sweep.toml")
    assert experiment.sweep == SweepConfig()


def test_nested_tables_fill_nested_configs(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text(
        'name = "x"\n[sweep]\nnoise = "0..0.1:3"\nseeds = 5\n'
        '[sweep.lora]\nr = 4\ntarget_modules = ["query"]\n[sweep.eval]\ntest_size = 50\n'
    )
    sweep = load_experiment(path).sweep
    assert (sweep.vary, sweep.values, sweep.instances) == ("sigma", (0.0, 0.05, 0.1), 5)
    assert (sweep.lora.r, sweep.lora.target_modules, sweep.eval.test_size) == (4, ("query",), 50)
    path.write_text('name = "x"\n[sweep.eval]\ntest_size = 0\n')  # whole split: --test-size 0
    assert load_experiment(path).sweep.eval == EvalConfig(test_size=None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name = ", "not valid TOML"),
        ("[sweep]\n", "'name'"),
        ('name = ".."\n', "must be a folder name"),  # would publish beside figures/
        ('name = "."\n', "must be a folder name"),
        ('name = "a/b"\n', "must be a folder name"),
        ('name = "x"\ncolour = 1\n', "unknown key"),
        ('name = "x"\n[sweep]\nsigmas = [0.1]\n', "unknown key sweep.sigmas"),
        ('name = "x"\n[sweep]\nseeds = 2.5\n', "sweep.seeds must be int, got 2.5"),
        ('name = "x"\n[sweep]\nmodel = 5\n', "sweep.model must be str, got 5"),
        ('name = "x"\n[sweep]\nseed = true\n', "sweep.seed must be int, got True"),
        ('name = "x"\n[sweep]\nnoise = 0.1\n', "sweep.noise must be a string"),
        ('name = "x"\n[sweep]\nnoise = "0.1..0.01"\n', "runs backwards"),
        ('name = "x"\n[sweep.lora]\nrank = 4\n', "unknown key sweep.lora.rank"),
        ('name = "x"\n[executor]\nkind = "dask"\n', "executor.kind is local or ray"),
        ('name = "x"\n[executor]\nworkers = "2"\n', "executor.workers must be int"),
        ('name = "x"\n[executor]\nnodes = 2\n', "unknown key executor.nodes"),
        ('name = "x"\n[sweep.lora]\nr = 0\n', "rank must be >= 1"),
        ('name = "x"\n[sweep.eval]\ntest_size = -1\n', "test_size must be >= 0"),
        ('name = "x"\n[sweep]\ncard = "foo"\n', "unknown device card"),
        ('name = "x"\n[sweep]\nvary = "adc_bits"\n', "expected FIELD=RANGE"),
        ('name = "x"\n[sweep]\nvary = "adc_bits=4..8:5"\nnoise = "0..1"\n', "one value"),
        ('name = "x"\n[sweep]\nmethods = "lora"\n', "sweep.methods must be a non-empty list"),
        ('name = "x"\n[sweep]\nmethods = []\n', "sweep.methods must be a non-empty list"),
        ('name = "x"\n[sweep]\nmethods = ["lora", "qlora"]\n', "unknown method 'qlora'"),
        ('name = "x"\n[sweep]\nmethods = ["lora", "lora"]\n', "lists a method twice"),
        ('name = "x"\n[sweep]\nmethods = ["lora"]\nmethod = "halora"\n', "exclude each other"),
    ],
)
def test_bad_experiment_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(CimsimError, match=message) as caught:
        load_experiment(path)
    assert "\n" not in str(caught.value)


def test_missing_experiment_file(tmp_path: Path) -> None:
    with pytest.raises(CimsimError, match="does not exist"):
        load_experiment(tmp_path / "nope.toml")


def test_vary_with_a_fixed_sigma(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text(
        'name = "x"\n[sweep]\ncard = "rram-macro"\nvary = "adc_bits=4..8:5"\nnoise = "1.5"\n'
    )
    sweep = load_experiment(path).sweep
    assert (sweep.card, sweep.vary, sweep.values, sweep.sigma) == (
        "rram-macro",
        "adc_bits",
        (4.0, 5.0, 6.0, 7.0, 8.0),
        1.5,
    )


def test_methods_make_a_comparison(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text('name = "x"\n[sweep]\nmethods = ["lora", "halora"]\n[sweep.train]\nmu = 0.01\n')
    experiment = load_experiment(path)
    assert experiment.methods == ("lora", "halora")
    assert (experiment.sweep.method, experiment.sweep.train.mu) == ("lora", 0.01)
    default = Path(__file__).parent.parent / "experiments/default-sweep.toml"
    assert load_experiment(default).methods == ()


def test_run_publishes_a_comparison(
    tmp_path: Path, tiny_bert_dir: Path, topic_task_file: Path
) -> None:
    from cimsim.cli import main

    path = tmp_path / "tiny-compare.toml"
    path.write_text(
        f'name = "tiny-compare"\ndescription = "test"\n[sweep]\nmodel = "{tiny_bert_dir}"\n'
        f'task = "{topic_task_file}"\nmethods = ["lora", "halora"]\nnoise = "0.05"\nseeds = 2\n'
        "[sweep.train]\nepochs = 1\ntrain_size = 30\n[sweep.eval]\ntest_size = 12\n"
        "max_length = 16\n"
    )
    figures = tmp_path / "figures"
    argv = ["run", str(path), "--figures-dir", str(figures), "--out", str(tmp_path / "out")]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache")]) == 0
    target = figures / "tiny-compare"
    assert "| halora |" in (target / "comparison.md").read_text()
    for name in ("comparison.tex", "comparison.png", "comparison_pairs.csv", "experiment.toml"):
        assert (target / name).is_file()
    for method in ("lora", "halora"):
        assert (target / method / "results.csv").is_file()
        assert (target / method / "sweep.png").is_file()


def test_a_signoff_table_makes_the_file_a_sign_off(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text(
        'name = "x"\n[sweep]\nnoise = "0.01..0.05:5"\nseeds = 30\n'
        '[signoff]\nbudget = 2\nyield = 0.8\nsearch = "grid"\nearly_stop = false\n'
    )
    tolerance = load_experiment(path).tolerance()
    assert tolerance.sweep.instances == 30 and tolerance.sweep.values == (
        0.01,
        0.02,
        0.03,
        0.04,
        0.05,
    )
    assert tolerance.signoff.budget == 0.02 and tolerance.signoff.target_yield == 0.8
    assert tolerance.signoff.search == "grid" and not tolerance.signoff.early_stop


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[signoff]\nbugdet = 2\n", "unknown key signoff.bugdet"),
        ("[signoff]\nbudget = '2'\n", "signoff.budget must be float"),
        ("[signoff]\nyield = 1.5\n", "--yield must be in (0, 1)"),
        ('[sweep]\nmethods = ["lora", "halora"]\n[signoff]\n', "[signoff] judges one method"),
    ],
)
def test_a_bad_signoff_table_is_one_line(tmp_path: Path, table: str, message: str) -> None:
    path = tmp_path / "x.toml"
    path.write_text(f'name = "x"\n{table}')
    with pytest.raises(
        CimsimError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
    ):
        load_experiment(path)
