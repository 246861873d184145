"""Causal label scoring: the shared-prompt scorer against one full sequence per label.

    .venv/bin/python benchmarks/scoring.py [--model smollm2-135m] [--repeats 5] [--batch 16]
                                           [--threads N]

``cimsim.eval.scoring.CausalScorer`` runs each prompt once, scores every label's continuation
from its key/value cache and applies the LM head only where a continuation token is predicted. The
reference here is what it replaced: one right-padded sequence per (text, label), the whole model
with its LM head over every position. Both score the same batch of test texts of a 2-label task
(``movie``) and a 5-label task (``bbc-news``) under ``torch.inference_mode``, alternating in every
repeat; the numbers are medians, the speed-up is the median of per-repeat ratios, on the wall
clock and in process CPU time (the stable one on a machine shared with other jobs). The scores
of the two must agree (checked). Writes ``benchmarks/results/scoring-<model>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from cimsim.eval.models import load_model
from cimsim.eval.scoring import CausalScorer
from cimsim.eval.tasks import Task, load_task

RESULTS = Path(__file__).parent / "results"


def full_sequence_scores(scorer: CausalScorer, texts: list[str], task: Task) -> torch.Tensor:
    """The reference: every (text, label) as its own sequence, logits at every position."""
    labels = scorer.prepare(task)
    sequences, spans = [], []
    for context in scorer.contexts(texts, task):
        for label in labels:
            sequences.append(context + label)
            spans.append((len(context), label))
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), scorer.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)], mask[row, : len(seq)] = torch.tensor(seq), 1
    logits = scorer.lm(input_ids=ids, attention_mask=mask).logits  # (rows, width, vocab)
    log_probs = logits.float().log_softmax(-1)
    scores = [
        log_probs[row, start - 1 : start - 1 + len(label)]
        .gather(-1, torch.tensor(label)[:, None])
        .sum()
        for row, (start, label) in enumerate(spans)
    ]
    return torch.stack(scores).view(len(texts), len(labels))  # (batch, n_labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    loaded = load_model(args.model)
    scorer = CausalScorer(loaded, args.max_length)
    rows = []
    for task_name in ("movie", "bbc-news"):
        task = load_task(task_name)
        texts = list(task.test.texts[: args.batch])
        timings: dict[str, list[float]] = {"shared": [], "full": []}
        cpu: dict[str, list[float]] = {"shared": [], "full": []}
        with torch.inference_mode():
            shared = scorer(texts, task)
            full = full_sequence_scores(scorer, texts, task)
            max_diff = (shared - full).abs().max().item()
            assert max_diff < 1e-3, f"scores disagree by {max_diff}"
            for repeat in range(args.repeats):
                order = ("shared", "full") if repeat % 2 == 0 else ("full", "shared")
                for name in order:
                    started, cpu_started = time.perf_counter(), time.process_time()
                    if name == "shared":
                        scorer(texts, task)
                    else:
                        full_sequence_scores(scorer, texts, task)
                    timings[name].append(time.perf_counter() - started)
                    cpu[name].append(time.process_time() - cpu_started)

        def speedup(times: dict[str, list[float]]) -> float:
            pairs = zip(times["full"], times["shared"], strict=True)
            return statistics.median(full_s / shared_s for full_s, shared_s in pairs)

        rows.append(
            {
                "task": task_name,
                "labels": len(task.label_names),
                "verbaliser_tokens": [len(v) for v in scorer.prepare(task)],
                "seconds": timings,
                "cpu_seconds": cpu,
                "median_shared_s": statistics.median(timings["shared"]),
                "median_full_s": statistics.median(timings["full"]),
                "speedup": speedup(timings),
                "median_shared_cpu_s": statistics.median(cpu["shared"]),
                "median_full_cpu_s": statistics.median(cpu["full"]),
                "cpu_speedup": speedup(cpu),
                "max_abs_score_difference": max_diff,
            }
        )
    print(
        f"### causal scoring, {args.model}, {args.batch} texts x <= {args.max_length} tokens, "
        f"median of {args.repeats}, {torch.get_num_threads()} threads"
    )
    print("| task | labels | full, s | shared, s | speed-up | full, CPU s | shared, CPU s | × |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['task']} | {r['labels']} | {r['median_full_s']:.3f} | "
            f"{r['median_shared_s']:.3f} | {r['speedup']:.2f}× | {r['median_full_cpu_s']:.3f} | "
            f"{r['median_shared_cpu_s']:.3f} | {r['cpu_speedup']:.2f}× |"
        )
    RESULTS.mkdir(exist_ok=True)
    record = {
        "schema": "cimsim.benchmark.scoring/1",
        "model": args.model,
        "batch": args.batch,
        "max_length": args.max_length,
        "repeats": args.repeats,
        "tasks": rows,
        "environment": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "load_average_1min": os.getloadavg()[0],
            "platform": platform.platform(),
        },
    }
    path = RESULTS / f"scoring-{args.model}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
