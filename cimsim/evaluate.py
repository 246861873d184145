"""Accuracy of a scorer on a split: the multiple-choice protocol of :mod:`cimsim.scoring`."""

from __future__ import annotations

import dataclasses

import torch

from cimsim.scoring import Scorer
from cimsim.tasks import Split, Task


@dataclasses.dataclass(frozen=True)
class Accuracy:
    n_correct: int
    n_examples: int

    @property
    def accuracy(self) -> float:
        return self.n_correct / self.n_examples


@torch.inference_mode()
def evaluate(scorer: Scorer, task: Task, split: Split, batch_size: int = 32) -> Accuracy:
    """Count argmax-correct predictions on ``split`` with the model as it is (digital or chip)."""
    was_training = scorer.training
    scorer.eval()
    try:
        prepared = scorer.prepare(task)
        labels = torch.tensor(split.labels)
        correct = 0
        for start in range(0, len(split), batch_size):
            texts = split.texts[start : start + batch_size]
            logits = scorer(texts, task, prepared)  # (batch, n_labels)
            predicted = logits.argmax(dim=-1).cpu()
            correct += int((predicted == labels[start : start + batch_size]).sum())
    finally:
        scorer.train(was_training)
    return Accuracy(n_correct=correct, n_examples=len(split))
