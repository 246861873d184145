"""Continual branches: life cycle, gates, GPM, metrics, save/load, and the command end to end."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cimsim.adapters.branches import load_branches, save_branches
from cimsim.adapters.gates import GateBank, GateConfig
from cimsim.adapters.gpm import extend_basis, project_off
from cimsim.adapters.lora import LoraConfig, adapter_names, delete_adapter, set_adapters
from cimsim.adapters.train import TrainConfig, task_batches, train_steps
from cimsim.cli import main
from cimsim.continual.learners import Learner
from cimsim.continual.metrics import average_performance, forgetting
from cimsim.eval.models import load_model
from cimsim.eval.scoring import make_scorer
from cimsim.eval.tasks import load_task


def _write_task(path: Path, vocabularies: dict[str, list[str]], n: int = 30) -> str:
    lines = []
    for label, words in vocabularies.items():
        for i in range(n):
            text = " ".join(words[(i + k) % len(words)] for k in range(6))
            lines.append(json.dumps({"text": f"{text} {i}", "label": label}))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def two_tasks(tmp_path: Path) -> tuple[str, str]:
    sport = ["match", "goal", "team", "league", "coach"]
    money = ["bank", "market", "shares", "profit", "price"]
    happy = ["love", "great", "wonderful", "joy", "smile"]
    sad = ["hate", "awful", "terrible", "cry", "pain"]
    return (
        _write_task(tmp_path / "topics.jsonl", {"sport": sport, "money": money}),
        _write_task(tmp_path / "moods.jsonl", {"happy": happy, "sad": sad}),
    )


def _learner(model_dir: Path, method: str, energy: float = 0.99):
    loaded = load_model(str(model_dir))
    scorer = make_scorer(loaded, 16)
    lora = LoraConfig(r=4).resolve(loaded.lora_targets)
    gate = GateConfig(hidden=16, energy=energy)
    return loaded, scorer, Learner(method, scorer, loaded.model, lora, seed=0, gate=gate)


def _embed(scorer, texts) -> torch.Tensor:
    with torch.no_grad():
        return scorer.embed(texts)


TEXTS = ["match goal team", "bank market shares", "love great joy", "hate awful pain cry"]


@pytest.mark.parametrize("method", ["gated", "sum", "olora"])
def test_a_new_branch_and_gate_change_no_output(tiny_bert_dir: Path, method: str) -> None:
    _, scorer, learner = _learner(tiny_bert_dir, method)
    learner.begin(0, "first")
    with torch.no_grad():  # pretend the first task was trained
        for name, param in scorer.named_parameters():
            if ".lora_B.first." in name:
                param.normal_(0, 0.1)
    before = _embed(scorer, TEXTS)
    learner.begin(1, "second")
    assert adapter_names(learner.model) == ["first", "second"]
    assert torch.equal(_embed(scorer, TEXTS), before)


def test_branch_life_cycle_list_activate_delete(tiny_bert_dir: Path) -> None:
    _, scorer, learner = _learner(tiny_bert_dir, "sum")
    learner.begin(0, "a")
    base = _embed(scorer, TEXTS)
    learner.begin(1, "b")
    with torch.no_grad():
        for name, param in scorer.named_parameters():
            if ".lora_B.b." in name:
                param.normal_(0, 0.1)
    trainable = {n for n, p in scorer.named_parameters() if p.requires_grad}
    assert trainable and all(".b." in n or n == "log_scale" for n in trainable)
    both = _embed(scorer, TEXTS)
    assert not torch.allclose(both, base)
    set_adapters(learner.model, ["a"])
    assert torch.equal(_embed(scorer, TEXTS), base)
    set_adapters(learner.model, ["a", "b"])
    delete_adapter(learner.model, "b")
    assert adapter_names(learner.model) == ["a"]
    assert torch.equal(_embed(scorer, TEXTS), base)
    with pytest.raises(ValueError, match="no adapter named"):
        set_adapters(learner.model, ["b"])


def test_gpm_basis_explains_the_energy_and_projection_removes_it() -> None:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(200, 5, generator=generator) @ torch.randn(5, 32, generator=generator)
    features += 0.01 * torch.randn(200, 32, generator=generator)
    basis = extend_basis(None, features, 0.99)
    assert torch.allclose(basis.T @ basis, torch.eye(basis.shape[1]), atol=1e-5)
    explained = (features @ basis).square().sum() / features.square().sum()
    assert explained >= 0.99 and basis.shape[1] <= 5
    more = torch.randn(100, 32, generator=generator)
    grown = extend_basis(basis, more, 0.9)
    assert torch.equal(grown[:, : basis.shape[1]], basis)
    assert (more @ grown).square().sum() / more.square().sum() >= 0.9 - 1e-6
    update = torch.randn(7, 32, generator=generator)
    assert torch.allclose(
        project_off(update, grown) @ grown, torch.zeros(7, grown.shape[1]), atol=1e-5
    )


@pytest.mark.parametrize("rows", [2, 10])
def test_energy_one_keeps_only_the_directions_the_features_have(rows: int) -> None:
    generator = torch.Generator().manual_seed(0)
    basis = None
    sizes = []
    for _ in range(3):  # each task: rows of rank <= 3 in the same 3-dim subspace of 32
        mix = torch.randn(rows, 3, generator=generator)
        basis = extend_basis(basis, mix @ torch.eye(3, 32), 1.0)
        sizes.append(basis.shape[1])
        assert torch.allclose(basis.T @ basis, torch.eye(basis.shape[1]), atol=1e-5)
    assert sizes == ([2, 3, 3] if rows == 2 else [3, 3, 3])
    assert torch.allclose(basis @ basis.T @ torch.eye(32, 3), torch.eye(32, 3), atol=1e-5)


def test_average_performance_and_forgetting_match_a_hand_computed_matrix() -> None:
    matrix = np.array([[0.9, np.nan, np.nan], [0.7, 0.8, np.nan], [0.6, 0.85, 0.5]])
    assert average_performance(matrix) == pytest.approx((0.6 + 0.85 + 0.5) / 3)
    # task 0: best earlier 0.9, final 0.6; task 1: best earlier 0.8, final 0.85
    assert forgetting(matrix) == pytest.approx(((0.9 - 0.6) + (0.8 - 0.85)) / 2)
    assert np.isnan(forgetting(np.array([[0.5]])))
    with pytest.raises(ValueError):
        average_performance(np.zeros((2, 3)))


def test_a_new_gate_stays_near_zero_on_the_old_task_after_training(
    tiny_bert_dir: Path, two_tasks: tuple[str, str], tmp_path: Path
) -> None:
    old, new = (load_task(t) for t in two_tasks)
    _, scorer, learner = _learner(tiny_bert_dir, "gated", energy=0.999)
    config = TrainConfig(train_size=40, epochs=3, batch_size=8, lr=1e-2)
    for stage, task in enumerate((old, new)):
        texts = task.train.subset(40, seed=0).texts
        learner.begin(stage, f"task{stage}", task, texts, 16)
        if stage == 1:
            gate = learner.bank.gates["task1"]  # type: ignore[union-attr]
            start = {n: p.detach().clone() for n, p in gate.named_parameters()}
        train_steps(  # as `cimsim continual` trains: the gate at its own learning rate
            scorer,
            learner.model,
            task_batches(task, config),
            config,
            after_step=learner.after_step,
            param_groups=learner.param_groups(),
        )
        learner.end(task, texts, 16)
    moved = sum((p - start[n]).norm().item() for n, p in gate.named_parameters())
    assert moved > 1e-2  # the gate did train
    on_old = torch.cat([r["task1"] for r in learner.gate_records(old, old.test.texts, 16)])
    on_new = torch.cat([r["task1"] for r in learner.gate_records(new, new.test.texts, 16)])
    assert on_old.median() <= 0.05
    assert on_new.median() > 0.15  # and the gate does open on its own task
    assert on_new.median() > 2 * on_old.median()


def test_a_new_tasks_gate_inputs_are_read_once_for_its_key_and_its_memory(
    tiny_bert_dir: Path, two_tasks: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = (load_task(t) for t in two_tasks)
    _, _, learner = _learner(tiny_bert_dir, "gated")
    learner.begin(0, "task0", old, old.train.texts[:8], 4)
    learner.end(old, old.train.texts[:8], 4)
    reads = []
    record = learner.gate_records
    monkeypatch.setattr(learner, "gate_records", lambda *a: reads.append(a[1]) or record(*a))
    learner.begin(1, "task1", new, new.train.texts[:8], 4)
    learner.end(new, new.train.texts[:8], 4)
    assert reads == [new.train.texts[:8]]
    assert learner.bank is not None and learner.bank.memory_sizes()["input"] > 0


def test_a_new_gate_key_starts_along_the_new_tasks_strongest_direction_off_old_outputs() -> None:
    torch.manual_seed(0)
    dim, hidden = 24, 16
    bank = GateBank(dim, GateConfig(hidden=hidden, energy=0.999))
    basis_in = torch.linalg.qr(torch.randn(dim, 6))[0]  # old inputs span 6 directions
    old = torch.randn(200, 6) @ basis_in.T  # (rows, d)
    bank.remember(old)
    extra = project_off(torch.randn(dim), basis_in)
    new = torch.randn(200, 6) @ basis_in.T + 3 * torch.randn(200, 1) * extra / extra.norm()
    gate = bank.add_gate("b", new)

    _, out = gate.features(new)  # (rows, d)
    residual = project_off(out, bank.basis("output"))
    assert gate.key.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert (bank.basis("output").T @ gate.key).abs().max() < 1e-5  # off old outputs
    # no unit direction off old outputs carries more of the new outputs' residual energy
    best = (residual @ gate.key).norm()
    others = project_off(torch.randn(dim, 500).T, bank.basis("output"))  # (500, d)
    others = others / others.norm(dim=1, keepdim=True)
    assert (residual @ others.T).norm(dim=0).max() <= best + 1e-4
    # so the gate opens on the new inputs from the start and stays shut on the old ones
    assert gate(new).median() > 10 * gate(old).median()
    assert gate(old).median() < 0.05

    random_key = GateBank(dim, GateConfig(hidden=hidden)).add_gate("b")  # a gate to be loaded
    assert random_key.key.norm().item() == pytest.approx(1.0, abs=1e-5)


def test_all_branches_and_gates_round_trip(
    tiny_bert_dir: Path, two_tasks: tuple[str, str], tmp_path: Path
) -> None:
    tasks = [load_task(t) for t in two_tasks]
    loaded, scorer, learner = _learner(tiny_bert_dir, "gated")
    config = TrainConfig(train_size=16, epochs=1, batch_size=8, lr=1e-2)
    for stage, task in enumerate(tasks):
        learner.begin(stage, f"task{stage}")
        train_steps(
            scorer, learner.model, task_batches(task, config), config, after_step=learner.after_step
        )
        learner.end(task, task.train.texts[:16], 8)
    lora = learner.lora
    save_branches(
        learner.model,
        tmp_path / "branches",
        {"task0": lora, "task1": lora},
        base_model_name_or_path=loaded.path,
    )
    expected = _embed(scorer, TEXTS)

    fresh = load_model(str(tiny_bert_dir))
    assert load_branches(fresh.model, tmp_path / "branches") == ["task0", "task1"]
    again = make_scorer(fresh, 16)
    assert torch.allclose(_embed(again, TEXTS), expected, atol=1e-6)
    bank, copy = learner.bank, fresh.model.gates  # type: ignore[union-attr]
    assert bank is not None and copy.newest == "task1"
    for name in ("input", "hidden", "output"):
        assert torch.equal(copy.basis(name), bank.basis(name))
    # each branch is also a plain peft adapter
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(
        load_model(str(tiny_bert_dir)).model, str(tmp_path / "branches" / "task0")
    )
    assert peft_model is not None


def _run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_every_stage_can_train_with_auto_halora(
    tiny_bert_dir: Path, two_tasks: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "auto"
    args = [
        "continual", "--model", str(tiny_bert_dir), "--tasks", ",".join(two_tasks),
        "--methods", "gated", "--orders", "1", "--objective", "auto-halora", "--noise", "0.05",
        "--seeds", "1", "--train-size", "16", "--epochs", "1", "--test-size", "8",
        "--max-length", "16", "--train-noise", "0.2", "--out", str(out),
        "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    code, _, err = _run(args, capsys)
    assert code == 0, err
    training = pd.read_json(out / "training.jsonl", lines=True)
    assert len(training) == 2 and (training["steps"] == 1).all()  # 16 examples, batches of 16
    assert json.loads((out / "config.json").read_text())["config"]["objective"] == "auto-halora"


def test_continual_command_writes_matrices_metrics_and_figures_and_resumes(
    tiny_bert_dir: Path,
    two_tasks: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    out = tmp_path / "run"
    args = [
        "continual", "--model", str(tiny_bert_dir), "--tasks", ",".join(two_tasks),
        "--methods", "gated,seq-lora,joint", "--noise", "0.05", "--seeds", "2",
        "--train-size", "16", "--epochs", "1", "--test-size", "8", "--max-length", "16",
        "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    code, stdout, err = _run(args, capsys)
    assert code == 0, err
    for name in (
        "results.csv",
        "metrics.csv",
        "summary.csv",
        "gates.csv",
        "matrices.png",
        "ap_ft.png",
        "config.json",
        "training.jsonl",
    ):
        assert (out / name).is_file(), name
    points = pd.read_csv(out / "results.csv")
    # 2 orders x (gated, seq-lora: 3 (stage, task) pairs) + joint once: 2 pairs; x (digital + 2)
    assert len(points) == (2 * 2 * 3 + 2) * 3
    chips = points[points["card"] != "digital"]
    assert chips.groupby(["sigma", "instance"])["chip_seed"].nunique().eq(1).all()
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["method"]) == {"gated", "seq-lora", "joint"}
    assert summary.loc[summary["method"] == "joint", "FT_mean"].isna().all()
    assert "AP" in stdout and "FT" in stdout
    assert (out / "branches" / "gated" / "order1" / "branches.json").is_file()

    before = (out / "points.jsonl").read_text()
    code, _, err = _run(args, capsys)
    assert code == 0, err
    assert (out / "points.jsonl").read_text() == before  # nothing recomputed

    # `cimsim plot` redraws a continual folder from its files (not as a sweep)
    summary_before = (out / "summary.csv").read_text()
    for name in ("matrices.png", "ap_ft.png", "summary.csv"):
        (out / name).unlink()
    code, stdout, err = _run(["plot", str(out)], capsys)
    assert code == 0, err
    assert (out / "matrices.png").is_file() and (out / "ap_ft.png").is_file()
    assert (out / "summary.csv").read_text() == summary_before
    assert not (out / "sweep.png").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--methods", "gated,foo"], "--methods takes distinct names"),
        (["--tasks", "bbc-news"], "at least two distinct tasks"),
        (["--orders", "3"], "--orders must be in 1..2"),
        (["--noise", "0.1..x"], "noise range"),
        (["--objective", "sgd"], "unknown objective"),
        (["--device", "no-such-card"], "no-such-card"),
        (["--gate-hidden", "0"], "gate hidden width must be >= 1"),
        (["--gate-lr", "inf"], "gate learning rate must be a positive finite number"),
        (["--gate-energy", "1.5"], "gate energy threshold must be in (0, 1]"),
    ],
)
def test_continual_bad_input_is_one_line(
    extra: list[str],
    message: str,
    two_tasks: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    args = ["continual", "--tasks", ",".join(two_tasks), "--out", str(tmp_path / "r"), *extra]
    code, _, err = _run(args, capsys)
    assert code == 2
    assert message in err and err.count("\n") == 1


def test_a_continual_experiment_file_runs_and_publishes(
    tiny_bert_dir: Path,
    two_tasks: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    experiment = tmp_path / "tiny-continual.toml"
    experiment.write_text(
        f"""name = "tiny-continual"
[continual]
model = "{tiny_bert_dir}"
tasks = ["{two_tasks[0]}", "{two_tasks[1]}"]
methods = ["gated", "sum"]
orders = 1
noise = "0.05"
seeds = 1
[continual.train]
train_size = 16
epochs = 1
[continual.eval]
test_size = 8
max_length = 16
"""
    )
    figures = tmp_path / "figures"
    code, _, err = _run(
        [
            "run",
            str(experiment),
            "--figures-dir",
            str(figures),
            "--out",
            str(tmp_path / "run"),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        capsys,
    )
    assert code == 0, err
    published = {p.name for p in (figures / "tiny-continual").iterdir()}
    assert {"summary.csv", "matrices.png", "ap_ft.png", "experiment.toml", "gates.csv"} <= published


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[continual]\nwhat = 1\n", "unknown key continual.what"),
        ('[continual]\ntasks = "bbc-news"\n', "continual.tasks must be a list"),
        ('[continual]\nmethods = ["gated", "nope"]\n', "--methods takes distinct names"),
        ("[continual.gate]\nenergy = 2.0\n", "energy threshold must be in (0, 1]"),
        ("[continual.train]\nsteps = 3\n", "unknown key continual.train.steps"),
        ("[continual]\norders = 1.5\n", "continual.orders must be int, got 1.5"),
        ('[continual]\nseeds = "3"\n', "continual.seeds must be int, got '3'"),
    ],
)
def test_a_bad_continual_experiment_file_is_one_line(
    body: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    experiment = tmp_path / "bad.toml"
    experiment.write_text('name = "bad"\n' + body)
    code, _, err = _run(["run", str(experiment), "--out", str(tmp_path / "r")], capsys)
    assert code == 2
    assert message in err and err.count("\n") == 1


def test_noise_robust_continual_learning_trains_every_stage_with_halora(
    tiny_bert_dir: Path,
    two_tasks: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    out = tmp_path / "run"
    code, _, err = _run(
        [
            "continual",
            "--model",
            str(tiny_bert_dir),
            "--tasks",
            ",".join(two_tasks),
            "--methods",
            "gated,olora",
            "--objective",
            "halora",
            "--orders",
            "1",
            "--seeds",
            "1",
            "--train-size",
            "16",
            "--epochs",
            "1",
            "--test-size",
            "8",
            "--max-length",
            "16",
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        capsys,
    )
    assert code == 0, err
    stages = [json.loads(line) for line in (out / "training.jsonl").read_text().splitlines()]
    assert [(s["method"], s["stage"]) for s in stages] == [
        ("gated", 0),
        ("gated", 1),
        ("olora", 0),
        ("olora", 1),
    ]
    assert json.loads((out / "config.json").read_text())["config"]["objective"] == "halora"


def test_causal_gates_read_the_prompt_and_follow_it_to_the_continuations(
    tiny_llama_dir: Path,
) -> None:
    from cimsim.eval.tasks import make_task

    loaded = load_model(str(tiny_llama_dir))
    scorer = make_scorer(loaded, 16)
    learner = Learner(
        "gated",
        scorer,
        loaded.model,
        LoraConfig(r=4).resolve(loaded.lora_targets),
        seed=0,
        gate=GateConfig(hidden=16),
    )
    words = {0: "a b c", 1: "d e f g", 2: "h i"}
    task = make_task(
        "t", [f"{words[k]} {i}" for k in words for i in range(12)], [k for k in words for _ in
        range(12)], ("x", "y", "z"), ("x.", "y.", "z."), "Q: {text}\nA:",
        (" alpha beta", " gamma", " delta epsilon zeta"), "test",
    )  # fmt: skip
    learner.begin(0, "one")
    learner.end(task, list(task.train.texts), 4)
    learner.begin(1, "two")
    with torch.no_grad():
        for name, param in scorer.named_parameters():
            if ".lora_B." in name:
                param.normal_(0, 0.3)
        assert learner.bank is not None
        with learner.bank.recording() as records:
            together = scorer(["a b c", "h i"], task)
        alone = torch.cat([scorer(["a b c"], task), scorer(["h i"], task)])
    assert [tuple(r["pooled"].shape) for r in records] == [(2, 32)]  # prompts only, once
    assert torch.allclose(together, alone, atol=1e-5)  # each continuation has its prompt's gate


def test_a_run_resumes_across_added_config_fields_but_not_across_changed_ones(
    tmp_path: Path,
) -> None:
    from cimsim.continual.config import CONFIG_FILE, SCHEMA, ContinualConfig
    from cimsim.continual.runner import _prepare
    from cimsim.core.config import to_dict
    from cimsim.core.errors import CimsimError

    config = ContinualConfig(tasks=("a.jsonl", "b.jsonl"))
    stored = to_dict(config)
    del stored["train"]["reprogram_every"]  # a field added to TrainConfig after the run
    del stored["memory_size"]  # and one added to ContinualConfig
    record = {"schema": SCHEMA, "config": stored}
    (tmp_path / CONFIG_FILE).write_text(json.dumps(record))
    _prepare(dataclasses.replace(config, methods=("gated", "seq-lora", "sum")), tmp_path)
    with pytest.raises(CimsimError, match="seed differ"):
        _prepare(dataclasses.replace(config, seed=1), tmp_path)


def test_gate_inputs_room_finds_the_direction_that_separates_a_new_task():
    """experiments/continual/gate_inputs.py: a new task that differs from an old one by a shared
    offset keeps a large residual along that offset, the old task almost none."""
    import importlib.util

    path = Path(__file__).parent.parent / "experiments/continual/gate_inputs.py"
    spec = importlib.util.spec_from_file_location("gate_inputs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    generator = torch.Generator().manual_seed(0)

    def rows(n: int, offset: float) -> torch.Tensor:
        x = torch.zeros(n, 16)
        x[:, :8] = torch.randn(n, 8, generator=generator)  # shared, diffuse part
        x[:, 12] = offset  # the new task's own direction
        return x

    data = {
        ("old", "train"): rows(200, 0.0),
        ("old", "test"): rows(50, 0.0),
        ("new", "train"): rows(200, 2.0),
        ("new", "test"): rows(50, 2.0),
    }
    (cell,) = module.room(data, ["old", "new"], energy=0.99)
    assert cell["dim"] <= 8  # the old task's subspace: its 8 diffuse dimensions at most
    new_resid, old_resid = cell["resid"]
    assert old_resid < 0.2 < new_resid  # the old task is (nearly) all inside the basis
    new_along, old_along = cell["along_u"]
    assert new_along > 0.5 and old_along < 1e-3


def _small_run(model_dir: Path, tasks: tuple[str, str], **fields: object):  # -> ContinualConfig
    """One order, one sigma, one chip, 16 training and 8 test texts per task."""
    from cimsim.continual.config import ContinualConfig
    from cimsim.eval.config import EvalConfig

    return ContinualConfig(
        **{
            "model": str(model_dir),
            "tasks": tasks,
            "orders": 1,
            "values": (0.05,),
            "instances": 1,
            "train": TrainConfig(train_size=16, epochs=1),
            "eval": EvalConfig(test_size=8, max_length=16),
            **fields,
        }
    )


def test_a_full_gate_memory_is_recorded_and_warned_about(
    tiny_bert_dir: Path, two_tasks: tuple[str, str], tmp_path: Path
) -> None:
    from cimsim.continual.runner import run_continual

    class Messages:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def stage(self, description: str, total: int) -> None:
            pass

        def advance(self, steps: int = 1) -> None:
            pass

        def log(self, message: str) -> None:
            self.lines.append(message)

    def run(hidden: int) -> tuple[list[dict], list[str]]:
        gate = GateConfig(hidden=hidden, energy=0.999)
        config = _small_run(tiny_bert_dir, two_tasks, methods=("gated",), gate=gate)
        out, messages = tmp_path / f"hidden{hidden}", Messages()
        run_continual(config, out, cache_dir=tmp_path / "cache", progress=messages)
        rows = [json.loads(line) for line in (out / "training.jsonl").read_text().splitlines()]
        return rows, [m for m in messages.lines if "memory is full" in m]

    rows, warnings = run(hidden=2)  # two hidden units: the first task fills them
    assert rows[0]["gate_memory"]["hidden"] == 2
    assert len(warnings) == 1 and "(2 of 2 dimensions at energy 0.999)" in warnings[0]
    rows, warnings = run(hidden=64)  # 16 inputs cannot fill 64 dimensions
    assert 0 < rows[0]["gate_memory"]["hidden"] < 64 and not warnings


def test_the_continual_commands_gate_defaults_are_the_gate_configs() -> None:
    import inspect

    from cimsim.cli.continual import continual

    options = inspect.signature(continual).parameters
    shown = {f: options[f"gate_{f}"].default for f in ("hidden", "energy", "lr")}
    assert GateConfig(**shown) == GateConfig()


def test_a_resumed_order_replaces_its_training_rows(
    tiny_bert_dir: Path, two_tasks: tuple[str, str], tmp_path: Path
) -> None:
    """An order cut short is trained again on resume: one training row per stage, not two."""
    from cimsim.continual.runner import run_continual

    config = _small_run(tiny_bert_dir, two_tasks, methods=("seq-lora",))
    out = tmp_path / "run"
    run_continual(config, out, cache_dir=tmp_path / "cache")
    points = out / "points.jsonl"
    lines = points.read_text().splitlines(keepends=True)
    points.write_text("".join(lines[:-1]))  # the run stopped before its last evaluation
    run_continual(config, out, cache_dir=tmp_path / "cache")
    stages = [json.loads(line) for line in (out / "training.jsonl").read_text().splitlines()]
    assert [(r["method"], r["order"], r["stage"]) for r in stages] == [
        ("seq-lora", 0, 0),
        ("seq-lora", 0, 1),
    ]
    assert sorted(points.read_text().splitlines(keepends=True)) == sorted(lines)
