"""Accuracy of a scorer on a split: the multiple-choice protocol of :mod:`cimsim.eval.scoring`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import torch

from cimsim.eval.scoring import Scorer
from cimsim.eval.tasks import Split, Task


@dataclasses.dataclass(frozen=True)
class Accuracy:
    n_correct: int
    n_examples: int
    correct: torch.Tensor | None = dataclasses.field(default=None, compare=False, repr=False)
    """``(n_examples,)`` bool on the CPU: which examples were right (pairs a chip with digital)."""

    @property
    def accuracy(self) -> float:
        return self.n_correct / self.n_examples


def evaluate(scorer: Scorer, task: Task, split: Split, batch_size: int = 32) -> Accuracy:
    """Count argmax-correct predictions on ``split`` with the model as it is (digital or chip)."""
    correct = correct_examples(scorer, task, split, batch_size)
    return Accuracy(n_correct=int(correct.sum()), n_examples=len(split), correct=correct)


def correct_examples(
    scorer: Scorer, task: Task, split: Split, batch_size: int = 32
) -> torch.Tensor:
    """``(len(split),)`` bool on the CPU: which examples the model gets right."""
    batches = list(correct_batches(scorer, task, split, batch_size))
    return torch.cat(batches) if batches else torch.zeros(0, dtype=torch.bool)


def correct_batches(
    scorer: Scorer, task: Task, split: Split, batch_size: int = 32, *, ramp: bool = False
) -> Iterator[torch.Tensor]:
    """Per batch of ``split`` in order, a ``(batch,)`` bool CPU tensor of correct predictions;
    a caller that stops early (a decided chip) evaluates no further batch. With ``ramp`` the
    batches grow 8, 16, 32, ... up to ``batch_size``, so such a caller can stop after a few."""
    labels = torch.tensor(split.labels)
    start = 0
    for logits in logit_batches(scorer, task, split, batch_size, ramp=ramp):
        yield logits.argmax(dim=-1) == labels[start : start + len(logits)]
        start += len(logits)


@torch.inference_mode()
def logit_batches(
    scorer: Scorer, task: Task, split: Split, batch_size: int = 32, *, ramp: bool = False
) -> Iterator[torch.Tensor]:
    """Per batch of ``split`` in order, the ``(batch, n_labels)`` float CPU scores of each
    label (:func:`correct_batches` for the batch sizes)."""
    # Each submodule's own mode is restored, not the scorer's: the loaded model is kept in eval
    # mode (no dropout) while its LoRA trains, and ``scorer.train(True)`` would switch it on.
    modes = {module: module.training for module in scorer.modules()}
    scorer.eval()
    try:
        prepared = scorer.prepare(task)
        start, size = 0, min(8, batch_size) if ramp else batch_size
        while start < len(split):
            texts = split.texts[start : start + size]
            yield scorer(texts, task, prepared).float().cpu()  # (batch, n_labels)
            start += len(texts)
            size = min(2 * size, batch_size)
    finally:
        for module, training in modes.items():
            module.training = training
