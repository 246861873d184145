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

from cimsim.core.errors import CimsimError
from cimsim.eval.models import LoadedModel
from cimsim.eval.tasks import Task

INITIAL_TEMPERATURE = 0.05
PROMPT_TOKENS = ("joined", "parts")


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

    def key_fields(self) -> dict[str, object]:
        """What of the scorer shapes a trained adapter (``adapter_key``)."""
        return {"max_length": self.max_length}

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

    The input is first cut to ``max_length`` tokens, so a long text never cuts off the question
    after it. ``prompt_tokens`` says how the prompt then becomes tokens:

    * ``joined`` (default): the filled-in prompt is tokenized as one string after the special
      tokens the tokenizer puts before a text (BOS for Llama 3, none for SmolLM2 or GPT-2; never
      those it puts after one), and whitespace that ends the prompt moves to the front of each
      verbaliser. This is how lm-evaluation-harness encodes a multiple-choice context with a
      causal tokenizer's defaults (its ``_encode_pair``), so both score the same tokens.
    * ``parts``: BOS, then the template's head, the text and the tail tokenized apart. A head
      such as ``"Review: "`` then ends in a lone space token that the model never saw before a
      word in pretraining; results files written without ``prompt_tokens`` were scored this way,
      and the option reproduces them.

    Each prompt runs through the decoder once; every label's continuation is then scored from
    that prompt's key/value cache, and the LM head is applied only to the hidden states that
    predict a continuation token (the vocabulary projection dominates a small LM's cost). The
    first token of every label is predicted by the prompt's last position, so single-token
    verbalisers cost one forward pass per text whatever the number of labels. Logits are
    ``lm_head(h)`` (with tanh soft-capping when the config asks for it), which is what the
    causal-LM classes of the Llama, Mistral, Qwen2 and GPT-2 families compute.
    """

    def __init__(self, loaded: LoadedModel, max_length: int, prompt_tokens: str = "joined") -> None:
        super().__init__()
        if prompt_tokens not in PROMPT_TOKENS:
            raise CimsimError(
                f"prompt_tokens is {' or '.join(PROMPT_TOKENS)}, got '{prompt_tokens}'"
            )
        self.lm: Any = loaded.model  # a transformers causal LM (its methods are used below)
        self.tokenizer: Any = loaded.tokenizer
        self.max_length = max_length
        self.prompt_tokens = prompt_tokens
        self.prefix = self._leading_special_tokens()

    def _leading_special_tokens(self) -> list[int]:
        """The ids the tokenizer puts before a text when asked for its special tokens."""
        plain = self._ids("a")
        full = list(self.tokenizer("a")["input_ids"])
        for start in range(len(full) - len(plain) + 1):
            if full[start : start + len(plain)] == plain:
                return full[:start]
        return []

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def key_fields(self) -> dict[str, object]:
        """What of the scorer shapes a trained adapter (``adapter_key``); ``parts`` is left out,
        as keys written before the choice existed have it."""
        fields: dict[str, object] = {"max_length": self.max_length}
        if self.prompt_tokens != "parts":
            fields["prompt_tokens"] = self.prompt_tokens
        return fields

    def _template(self, task: Task) -> tuple[str, str, str]:
        """The template's head and tail around ``{text}``, and (joined) the whitespace that ends
        the prompt, which belongs to the verbalisers."""
        head, _, tail = task.prompt_template.partition("{text}")
        if self.prompt_tokens == "parts":
            return head, tail, ""
        stripped = tail.rstrip()
        return head, stripped, tail[len(stripped) :]

    def prepare(self, task: Task) -> list[list[int]]:
        """Token ids of each verbaliser."""
        moved = self._template(task)[2]
        verbalisers = [self._ids(moved + v) for v in task.verbalizers]
        if not all(verbalisers):
            raise ValueError(f"task '{task.name}': a verbaliser tokenizes to nothing")
        return verbalisers

    def _cut(self, text: str) -> str:
        """``text`` cut to ``max_length`` tokens (as it is when it fits)."""
        ids = self._ids(text)
        if len(ids) <= self.max_length:
            return text
        return self.tokenizer.decode(ids[: self.max_length])

    def contexts(self, texts: Sequence[str], task: Task) -> list[list[int]]:
        """Token ids of each text's prompt (see the class docstring for the two ways)."""
        head, tail, _ = self._template(task)
        if self.prompt_tokens == "joined":
            contexts = [self.prefix + self._ids(head + self._cut(text) + tail) for text in texts]
        else:
            bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
            head_ids, tail_ids = bos + self._ids(head), self._ids(tail)
            contexts = [head_ids + self._ids(text)[: self.max_length] + tail_ids for text in texts]
        if not all(contexts):
            raise ValueError(f"task '{task.name}': an empty prompt has nothing to condition on")
        return contexts

    def _pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ids and their attention mask, both (rows, width)."""
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return ids.to(self.device), mask.to(self.device)

    def _log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        """(n, d) hidden states -> (n, vocab) next-token log-probabilities."""
        logits = self.lm.get_output_embeddings()(hidden).float()  # (n, vocab)
        cap = getattr(self.lm.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits.log_softmax(dim=-1)

    def forward(self, texts: Sequence[str], task: Task, prepared: Any = None) -> torch.Tensor:
        continuations = self.prepare(task) if prepared is None else prepared
        n, k = len(texts), len(continuations)
        decoder = self.lm.get_decoder()
        ids, mask = self._pad(self.contexts(texts, task))  # (n, width)
        lengths = mask.sum(dim=1)  # (n,)
        multi = [j for j, c in enumerate(continuations) if len(c) > 1]
        # Right padding: a padded position still sees its row's real tokens, so no attention row
        # is fully masked (which gives NaN in SDPA) and real positions need no position_ids.
        out = decoder(input_ids=ids, attention_mask=mask, use_cache=bool(multi))
        rows = torch.arange(n, device=self.device)
        last = out.last_hidden_state[rows, lengths - 1]  # (n, d): predicts every first token
        first = torch.tensor([c[0] for c in continuations], device=self.device)  # (k,)
        scores = self._log_probs(last)[:, first]  # (n, k)
        if not multi:
            return scores
        # The rest of each multi-token verbaliser, one row per (text, label), on the prompt's
        # cache: row r is text text_of[r], label label_of[r].
        text_of = rows.repeat_interleave(len(multi))  # (n * m,)
        label_of = torch.tensor(multi, device=self.device).repeat(n)  # (n * m,)
        cache = out.cache
        cache.batch_select_indices(text_of)  # every layer's (n, heads, width, hd) -> (n * m, ...)
        inputs, valid = self._pad([continuations[j][:-1] for j in multi] * n)  # (n * m, steps)
        targets, _ = self._pad([continuations[j][1:] for j in multi] * n)  # (n * m, steps)
        steps = torch.arange(inputs.shape[1], device=self.device)
        positions = lengths[text_of, None] + steps  # (n * m, steps): right after each prompt
        hidden = decoder(
            input_ids=inputs,
            attention_mask=torch.cat([mask[text_of], valid], dim=1),  # (n * m, width + steps)
            position_ids=positions,
            cache=cache,
            use_cache=True,
        ).last_hidden_state  # (n * m, steps, d)
        keep = valid.bool()
        token_log_probs = self._log_probs(hidden[keep]).gather(-1, targets[keep][:, None])
        row_of = torch.arange(len(text_of), device=self.device)[:, None].expand_as(keep)[keep]
        rest = torch.zeros(len(text_of), device=self.device, dtype=token_log_probs.dtype)
        rest = rest.index_add(0, row_of, token_log_probs.squeeze(-1))  # (n * m,)
        flat = torch.zeros(n * k, device=self.device, dtype=rest.dtype)
        flat = flat.index_add(0, text_of * k + label_of, rest)  # (n * k,)
        return scores + flat.view(n, k)  # (batch, n_labels)


Scorer = EncoderScorer | CausalScorer


def make_scorer(
    loaded: LoadedModel, max_length: int, prompted: bool = False, prompt_tokens: str = "joined"
) -> Scorer:
    """The scorer that fits the model's kind; ``prompted``: an encoder reads each text together
    with the task's instruction (a causal LM always reads its prompt); ``prompt_tokens``: how a
    causal LM's prompt is tokenized (:class:`CausalScorer`; encoders ignore it)."""
    positions = getattr(loaded.model.config, "max_position_embeddings", None)
    if isinstance(positions, int) and max_length > positions:
        raise CimsimError(f"--max-length {max_length} exceeds the model's {positions} positions")
    if loaded.kind == "causal":
        return CausalScorer(loaded, max_length, prompt_tokens)
    return EncoderScorer(loaded, max_length, prompted)
