"""lm-evaluation-harness as a client: cimsim's model type gives lm-eval's own HF numbers on a
chip at sigma 0 and other numbers under noise; `sweep --lm-eval-tasks` runs a local task over the
grid, resumes and redraws; missing data and unknown tasks are one line. No network: the task is
a YAML over a JSONL file written here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cimsim.cli import main

lm_eval = pytest.importorskip("lm_eval")

TASK = "cimsim_yesno"
WORDS = ["apple", "stone", "pear", "car", "plum", "chair", "fig", "wall", "lemon", "door"]


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a yes/no multiple-choice task over a local JSONL file."""
    root = tmp_path_factory.mktemp("lm-eval-tasks")
    rows = [{"question": f"is {w} a fruit?", "answer": i % 2} for i, w in enumerate(WORDS)]
    (root / "yesno.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "yesno.yaml").write_text(
        f"task: {TASK}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {root / 'yesno.jsonl'}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\n'
        'doc_to_choice: ["yes", "no"]\n'
        "doc_to_target: answer\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
    )
    return root


def evaluate(model: str, model_args: str, tasks: Path) -> dict[str, Any]:
    from cimsim.runs.harness import task_manager

    return lm_eval.simple_evaluate(
        model=model, model_args=model_args, tasks=[TASK], task_manager=task_manager(str(tasks)),
        log_samples=True, device="cpu",
    )  # fmt: skip


def loglikelihoods(result: dict[str, Any]) -> list[list[float]]:
    return [[r[0][0] for r in s["resps"]] for s in result["samples"][TASK]]


# add_bos_token=False: the tiny WordPiece tokenizer would wrap every string in [CLS] ... [SEP]
COMMON = "add_bos_token=False,prefix_token_id=101"


def test_a_chip_at_sigma_zero_gives_lm_evals_hf_numbers_and_noise_changes_them(
    tiny_llama_dir: Path, tasks: Path
) -> None:
    hf = evaluate("hf", f"pretrained={tiny_llama_dir},dtype=float32,{COMMON}", tasks)
    zero = evaluate("cimsim", f"pretrained={tiny_llama_dir},card=channel,sigma=0.0,{COMMON}", tasks)
    assert loglikelihoods(zero) == loglikelihoods(hf)
    assert zero["results"][TASK]["acc,none"] == hf["results"][TASK]["acc,none"]
    noisy = evaluate(
        "cimsim", f"pretrained={tiny_llama_dir},card=channel,sigma=0.5,chip=1,{COMMON}", tasks
    )
    changed = [
        abs(a - b) > 1e-4
        for x, y in zip(loglikelihoods(noisy), loglikelihoods(hf), strict=True)
        for a, b in zip(x, y, strict=True)
    ]
    assert all(changed)
    # the two choices are told apart (the task measures something)
    assert any(abs(x[0] - x[1]) > 1e-3 for x in loglikelihoods(hf))


def test_cimsims_scorer_and_lm_eval_score_the_same_tokens(tiny_gpt_dir: Path, tasks: Path) -> None:
    """The same prompts and choices through lm-eval's own HF model and through cimsim's causal
    scorer (joined prompts, the tokenizer's defaults on both sides): every log-likelihood equal."""
    import torch

    from cimsim.eval.models import load_model
    from cimsim.eval.scoring import make_scorer
    from cimsim.eval.tasks import make_task

    hf = evaluate("hf", f"pretrained={tiny_gpt_dir},dtype=float32", tasks)
    questions = [f"is {w} a fruit?" for w in WORDS]
    task = make_task(
        "yesno", questions, [i % 2 for i in range(len(WORDS))], ("yes", "no"),
        ("Yes.", "No."), "Question: {text}\nAnswer:", (" yes", " no"), "test",
    )  # fmt: skip
    scorer = make_scorer(load_model(str(tiny_gpt_dir)), max_length=64)
    with torch.no_grad():
        ours = scorer(questions, task)  # (n, 2)
    samples = sorted(hf["samples"][TASK], key=lambda s: s["doc_id"])
    theirs = torch.tensor([[r[0][0] for r in s["resps"]] for s in samples])  # (n, 2)
    assert torch.allclose(ours, theirs, atol=1e-4)
    parts = make_scorer(load_model(str(tiny_gpt_dir)), max_length=64, prompt_tokens="parts")
    with torch.no_grad():
        assert not torch.allclose(parts(questions, task), theirs, atol=1e-4)


def sweep_argv(model: Path, tasks: Path, out: Path, *options: str) -> list[str]:
    return [
        "sweep", "--model", str(model), "--method", "none", "--lm-eval-tasks", TASK,
        "--lm-eval-include", str(tasks), "--noise", "0.2,0.5", "--seeds", "2", "--out", str(out),
        *options,
    ]  # fmt: skip


def test_a_sweep_runs_the_task_on_every_chip_resumes_and_redraws(
    tiny_llama_dir: Path, tasks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cimsim.runs.sweep import chip_seed

    out = tmp_path / "run"
    assert main(sweep_argv(tiny_llama_dir, tasks, out)) == 0
    rows = [json.loads(line) for line in (out / "points.jsonl").read_text().splitlines()]
    assert len(rows) == 1 + 2 * 2  # digital + 2 sigmas x 2 chips, one metric
    assert {(r["task"], r["metric"]) for r in rows} == {(TASK, "acc")}
    assert all(r["n_examples"] == len(WORDS) for r in rows)
    for name in ("results.csv", "summary.csv", "sweep.png", "sweep.pdf", "lm_eval/digital.json"):
        assert (out / name).is_file(), name
    raw = json.loads((out / "lm_eval" / "channel-0.5-1.json").read_text())
    chip = next(r for r in rows if (r["value"], r["instance"]) == (0.5, 1))
    assert raw["results"][TASK]["acc,none"] == chip["accuracy"]
    assert chip["chip_seed"] == chip_seed(0, "channel", "sigma", 0.5, 1)
    # the same chip through lm-eval's model arguments (the default's BOS conventions)
    direct = evaluate("cimsim", f"pretrained={tiny_llama_dir},card=channel,sigma=0.5,chip=1", tasks)
    assert direct["results"][TASK]["acc,none"] == chip["accuracy"]
    digital = next(r for r in rows if r["card"] == "digital")
    hf = evaluate("hf", f"pretrained={tiny_llama_dir},dtype=float32,prefix_token_id=101", tasks)
    assert digital["accuracy"] == hf["results"][TASK]["acc,none"]

    calls: list[int] = []
    import cimsim.runs.harness as harness

    real = harness._evaluate
    monkeypatch.setattr(harness, "_evaluate", lambda *a: calls.append(1) or real(*a))
    before = (out / "points.jsonl").read_text()
    assert main(sweep_argv(tiny_llama_dir, tasks, out)) == 0
    assert calls == [] and (out / "points.jsonl").read_text() == before
    assert main(sweep_argv(tiny_llama_dir, tasks, out, "--seeds", "3")) == 0
    assert len(calls) == 2  # only the new chip at each sigma
    (out / "sweep.png").unlink()
    assert main(["plot", str(out)]) == 0 and (out / "sweep.png").is_file()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--lm-eval-tasks", "no_such_task"), "unknown lm-eval task 'no_such_task'"),
        (("--lm-eval-tasks", "hub_only"), "its data are not on this machine"),
        (("--lm-eval-include", "/nonexistent"), "no such folder"),
        (("--lm-eval-limit", "0"), "--lm-eval-limit must be at least 1"),
    ],
)
def test_bad_lm_eval_input_is_one_line_and_leaves_no_folder(
    tiny_llama_dir: Path,
    tasks: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    options: tuple[str, ...],
    message: str,
) -> None:
    include = tmp_path / "tasks"
    include.mkdir()
    (include / "hub.yaml").write_text(  # a hub dataset that is not in the local cache
        "task: hub_only\ndataset_path: cimsim-nobody/no-such-dataset\ntest_split: test\n"
        "output_type: multiple_choice\ndoc_to_text: '{{q}}'\ndoc_to_choice: ['a', 'b']\n"
        "doc_to_target: 0\n"
    )
    for yaml in tasks.glob("*.yaml"):
        (include / yaml.name).write_text(yaml.read_text())
    out = tmp_path / "run"
    argv = sweep_argv(tiny_llama_dir, include, out)
    assert main([*argv, *options]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_an_encoder_is_refused_in_one_line(
    tiny_bert_dir: Path, tasks: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(sweep_argv(tiny_bert_dir, tasks, out)) == 2
    assert "need a causal LM" in capsys.readouterr().err
    assert not out.exists()
