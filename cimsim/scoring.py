"""Multiple-choice label scoring: one protocol for encoders and causal LMs.

A scorer turns a batch of texts into ``logits`` of shape ``(batch, n_labels)``; the prediction is
the argmax, so no per-task head and no task id are needed at inference.

* Encoder (:class:`EncoderScorer`): the logit of label ``k`` is ``exp(s) * cos(e(x), e(d_k))``,
  where ``e`` is the mean-pooled, L2-normalised last hidden state and ``d_k`` the label's verbalised
  description ("This article is about sport."). ``s`` is a learned log-temperature; it changes the
  loss, never the argmax. All tasks' labels therefore live in one output space. Optionally
  (``prompted``) the text is embedded as a pair with the task's instruction, its prompt without
  the text, so that tasks asking different questions of similar texts can be told apart.
* Causal LM (:class:`CausalScorer`): the logit of label ``k`` is the log-likelihood of its
  verbaliser (" sport") after the task's prompt, summed over the verbaliser's tokens.

Label-side work that does not depend on the input (the description embeddings) is computed once
per model state by ``prepare`` and passed back in, so evaluation on a chip instance embeds the
descriptions on that same chip once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cimsim.models import LoadedModel
from cimsim.tasks import Task

INITIAL_TEMPERATURE = 0.05


class EncoderScorer(nn.Module):
    """Cosine similarity between text and label-description embeddings, over a temperature."""

    def __init__(self, loaded: LoadedModel, max_length: int, prompted: bool = False) -> None:
        super().__init__()
        self.encoder = loaded.model
        self.tokenizer: Any = loaded.tokenizer
        self.max_length = max_length
        self.prompted = prompted
        device = next(loaded.model.parameters()).device
        self.log_scale = nn.Parameter(
            torch.tensor(math.log(1 / INITIAL_TEMPERATURE), device=device)
        )

    @property
    def device(self) -> torch.device:
        return self.log_scale.device

    def embed(self, texts: Sequence[str], instruction: str | None = None) -> torch.Tensor:
        """(n, d) unit-norm mean-pooled embeddings; with an ``instruction``, of the pair (text,
        instruction), the text alone truncated to ``max_length`` tokens."""
        if instruction is None:
            batch = self.tokenizer(
                list(texts),
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="pt",
            )
        else:
            extra = len(self.tokenizer(instruction)["input_ids"])  # with its special tokens
            batch = self.tokenizer(
                list(texts),
                [instruction] * len(texts),
                truncation="only_first",
                max_length=self.max_length + extra,
                padding=True,
                return_tensors="pt",
            )
        batch = batch.to(self.device)
        hidden = self.encoder(**batch).last_hidden_state  # (n, seq, d)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (n, seq, 1)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (n, d)
        return F.normalize(pooled, dim=-1)

    def prepare(self, task: Task) -> torch.Tensor:
        """(n_labels, d) description embeddings for the model as it is now."""
        return self.embed(task.label_descriptions)

    def forward(self, texts: Sequence[str], task: Task, prepared: Any = None) -> torch.Tensor:
        labels = self.prepare(task) if prepared is None else prepared  # (n_labels, d)
        texts_embedded = self.embed(texts, instruction(task) if self.prompted else None)
        return self.log_scale.exp() * texts_embedded @ labels.T  # (batch, n_labels)


def instruction(task: Task) -> str:
    """The task's prompt without its text: "Review: Is this movie review positive? Answer:"."""
    return " ".join(task.prompt_template.replace("{text}", " ").split())


class CausalScorer(nn.Module):
    """Summed log-likelihood of each label's verbaliser after the task prompt.

    The prompt is assembled at token level: the template's text before and after ``{text}`` and
    the input truncated to ``max_length`` tokens, so long inputs never cut off the question.
    """

    def __init__(self, loaded: LoadedModel, max_length: int) -> None:
        super().__init__()
        self.lm = loaded.model
        self.tokenizer: Any = loaded.tokenizer
        self.max_length = max_length

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prepare(self, task: Task) -> list[list[int]]:
        """Token ids of each verbaliser."""
        return [self._ids(v) for v in task.verbalizers]

    def forward(self, texts: Sequence[str], task: Task, prepared: Any = None) -> torch.Tensor:
        continuations = self.prepare(task) if prepared is None else prepared
        head, _, tail = task.prompt_template.partition("{text}")
        bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        head_ids, tail_ids = bos + self._ids(head), self._ids(tail)
        sequences, spans = [], []
        for text in texts:
            context = head_ids + self._ids(text)[: self.max_length] + tail_ids
            for cont in continuations:
                sequences.append(context + cont)
                spans.append((len(context), len(cont)))
        width = max(len(s) for s in sequences)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(sequences), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        # Which predicted positions belong to a continuation: position p predicts token p + 1.
        wanted = torch.zeros(len(sequences), width - 1, dtype=torch.bool)
        for row, (start, n) in enumerate(spans):
            wanted[row, start - 1 : start - 1 + n] = True
        ids, mask, wanted = ids.to(self.device), mask.to(self.device), wanted.to(self.device)
        logits = self.lm(input_ids=ids, attention_mask=mask).logits[:, :-1]  # (rows, seq-1, vocab)
        # Normalise only the positions that score a continuation token, not the whole prompt.
        picked = logits[wanted].float().log_softmax(dim=-1)  # (n_tokens, vocab)
        targets = ids[:, 1:][wanted]  # (n_tokens,)
        token_log_probs = picked.gather(-1, targets[:, None]).squeeze(-1)  # (n_tokens,)
        rows = torch.arange(len(sequences), device=self.device)[:, None].expand_as(wanted)
        scores = torch.zeros(len(sequences), device=self.device, dtype=token_log_probs.dtype)
        scores = scores.index_add(0, rows[wanted], token_log_probs)  # (rows,)
        return scores.view(len(texts), len(continuations))  # (batch, n_labels)


Scorer = EncoderScorer | CausalScorer


def make_scorer(loaded: LoadedModel, max_length: int, prompted: bool = False) -> Scorer:
    """The scorer that fits the model's kind; ``prompted``: an encoder reads each text together
    with the task's instruction (a causal LM always reads its prompt)."""
    if loaded.kind == "causal":
        return CausalScorer(loaded, max_length)
    return EncoderScorer(loaded, max_length, prompted)
