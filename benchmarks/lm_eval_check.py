"""cimsim's own scorer beside lm-eval on the same prompts: SmolLM2-135M on a local
multiple-choice file built from the shipped movie-review task, digital and on chips.

    .venv/bin/python benchmarks/lm_eval_check.py [--examples 200] [--sigmas 0.03,0.06] [--chips 3]

The texts are the task's test subset (seed 0), each cut to 64 tokens and decoded, so both
scorers read the same string. lm-eval's task is a YAML over that JSONL: doc_to_text is the
task's prompt ("Review: {text}\\nSentiment:"), the choices its label words after a space. Every
chip is the sweep's chip (channel card, same seeds) programmed once and read by both scorers.
cimsim's scorer runs with both prompt tokenizations (``joined``, the default, and ``parts``);
lm-eval runs with its defaults. Writes ``results/lm-eval-check-smollm2-135m.json`` and prints a
Markdown table: each scorer's accuracy and the fraction of examples on which cimsim's joined
scorer and lm-eval give the same verdict (both right or both wrong).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--sigmas", default="0.03,0.06")
    parser.add_argument("--chips", type=int, default=3)
    args = parser.parse_args()

    import lm_eval

    from cimsim.chip.cards import load_card
    from cimsim.chip.deploy import deploy, undeploy
    from cimsim.eval.evaluate import evaluate
    from cimsim.eval.models import load_model
    from cimsim.eval.scoring import make_scorer
    from cimsim.eval.tasks import load_task
    from cimsim.eval.tasks.base import Split
    from cimsim.runs.harness import task_manager
    from cimsim.runs.harness_model import CimsimLM
    from cimsim.runs.results import environment
    from cimsim.runs.sweep import chip_seed

    task = load_task("movie")
    loaded = load_model("smollm2-135m")
    tok = loaded.tokenizer
    test = task.test.subset(args.examples, seed=0)
    texts = tuple(
        tok.decode(tok(t, add_special_tokens=False)["input_ids"][:64]) for t in test.texts
    )
    test = Split(texts, test.labels)
    # the texts are 64 tokens: never cut again
    scorers = {p: make_scorer(loaded, 256, prompt_tokens=p) for p in ("joined", "parts")}
    head, _, tail = task.prompt_template.partition("{text}")
    lm = CimsimLM(loaded, batch_size=16)
    card = load_card("channel")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        docs = [{"text": t, "label": y} for t, y in zip(test.texts, test.labels, strict=True)]
        (root / "movie.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
        choices = [v.strip() for v in task.verbalizers]
        (root / "movie.yaml").write_text(
            "task: cimsim_movie\ndataset_path: json\n"
            f"dataset_kwargs:\n  data_files:\n    test: {root / 'movie.jsonl'}\n"
            "test_split: test\noutput_type: multiple_choice\n"
            f"doc_to_text: {json.dumps(head + '{{text}}' + tail)}\n"
            f"doc_to_choice: {json.dumps(choices)}\ndoc_to_target: label\n"
            "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        )
        manager = task_manager(str(root))
        points = [(None, -1)] + [
            (float(s), i) for s in args.sigmas.split(",") for i in range(args.chips)
        ]
        for sigma, instance in points:
            if sigma is None:
                undeploy(loaded.model)
            else:
                point = card.with_value("sigma", sigma)
                seed = chip_seed(0, card.name, "sigma", sigma, instance)
                deploy(loaded.model, point.noise, seed, point.tile)
            ours = {p: evaluate(s, task, test, 32) for p, s in scorers.items()}
            theirs = lm_eval.simple_evaluate(
                model=lm, tasks=["cimsim_movie"], task_manager=manager, log_samples=True
            )
            samples = sorted(theirs["samples"]["cimsim_movie"], key=lambda s: s["doc_id"])
            their_right = [bool(s["acc"]) for s in samples]
            assert ours["joined"].correct is not None
            our_right = [bool(x) for x in ours["joined"].correct.tolist()]
            agree = sum(a == b for a, b in zip(our_right, their_right, strict=True))
            rows.append(
                {"sigma": sigma, "instance": instance, "cimsim_accuracy": ours["joined"].accuracy,
                 "cimsim_parts_accuracy": ours["parts"].accuracy,
                 "lm_eval_accuracy": theirs["results"]["cimsim_movie"]["acc,none"],
                 "agreement": agree / len(our_right), "examples": len(our_right)}
            )  # fmt: skip
            print(rows[-1], flush=True)
    undeploy(loaded.model)
    print("| sigma [x max abs W row] | chip | cimsim (joined) | lm-eval | same verdict |"
          " cimsim (parts) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for r in rows:
        where = "digital" if r["sigma"] is None else f"{r['sigma']:g}"
        print(
            f"| {where} | {r['instance']} | {r['cimsim_accuracy']:.3f} | "
            f"{r['lm_eval_accuracy']:.3f} | {r['agreement']:.1%} | "
            f"{r['cimsim_parts_accuracy']:.3f} |"
        )
    out = HERE / "results" / "lm-eval-check-smollm2-135m.json"
    out.write_text(json.dumps({"rows": rows, "environment": environment()}, indent=2) + "\n")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
