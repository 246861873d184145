"""Accuracy of a scorer on a split: the multiple-choice protocol of :mod:`cimsim.eval.scoring`."""

from __future__ import annotations

import dataclasses

import torch

from cimsim.eval.scoring import Scorer
from cimsim.eval.tasks import Split, Task


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
    # Each submodule's own mode is restored, not the scorer's: the loaded model is kept in eval
    # mode (no dropout) while its LoRA trains, and ``scorer.train(True)`` would switch it on.
    modes = {module: module.training for module in scorer.modules()}
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
        for module, training in modes.items():
            module.training = training
    return Accuracy(n_correct=correct, n_examples=len(split))
