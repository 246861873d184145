"""Label scoring: encoder cosine logits and causal log-likelihoods against direct computation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cimsim.core.errors import CimsimError
from cimsim.eval.models import load_model
from cimsim.eval.scoring import CausalScorer, EncoderScorer, make_scorer
from cimsim.eval.tasks import make_task


def _task():
    return make_task(
        "toy",
        ["the goal came late", "rates rose again", "the team won", "markets fell"] * 2,
        [0, 1, 0, 1] * 2,
        ("sport", "money"),
        ("This is about sport.", "This is about money."),
        "Text: {text}\nTopic:",
        (" sport", " money"),
        "test",
    )


def _by_hand(loaded, text: str, verbaliser: str, prompt_tokens: str) -> float:
    """The verbaliser's summed log-likelihood from one forward over the whole sequence."""
    tok = loaded.tokenizer

    def ids(s: str) -> list[int]:
        return tok(s, add_special_tokens=False)["input_ids"]

    if prompt_tokens == "parts":
        bos = [] if tok.bos_token_id is None else [tok.bos_token_id]
        context = bos + ids("Text: ") + ids(text) + ids("\nTopic:")
    else:  # the tokenizer's own leading special tokens, then the prompt as one string
        full, plain = tok("x")["input_ids"], ids("x")
        context = full[: full.index(plain[0])] + ids(f"Text: {text}\nTopic:")
    label = ids(verbaliser)
    with torch.no_grad():
        log_probs = loaded.model(input_ids=torch.tensor([context + label])).logits
    log_probs = log_probs.log_softmax(-1)[0]
    return sum(log_probs[len(context) + i - 1, t].item() for i, t in enumerate(label))


@pytest.mark.parametrize("model", ["tiny_llama_dir", "tiny_gpt_dir"])
@pytest.mark.parametrize("prompt_tokens", ["joined", "parts"])
def test_causal_scores_are_verbaliser_log_likelihoods(
    model: str, prompt_tokens: str, request: pytest.FixtureRequest
) -> None:
    loaded = load_model(str(request.getfixturevalue(model)))
    assert loaded.kind == "causal"
    scorer = make_scorer(loaded, max_length=32, prompt_tokens=prompt_tokens)
    assert isinstance(scorer, CausalScorer)
    task, text = _task(), "the goal came late"
    with torch.no_grad():
        scores = scorer([text], task)  # (1, 2)
    for k, verbaliser in enumerate(task.verbalizers):
        expected = _by_hand(loaded, text, verbaliser, prompt_tokens)
        assert scores[0, k].item() == pytest.approx(expected, abs=1e-4)


def test_joined_prompts_keep_a_words_leading_space_and_parts_leave_it_alone(
    tiny_gpt_dir: Path,
) -> None:
    loaded = load_model(str(tiny_gpt_dir))
    tok = loaded.tokenizer
    task = dataclasses.replace(_task(), prompt_template="Review: {text}\nSentiment:")
    joined = make_scorer(loaded, 32).contexts(["a fine film"], task)[0]
    parts = make_scorer(loaded, 32, prompt_tokens="parts").contexts(["a fine film"], task)[0]
    assert joined == tok("Review: a fine film\nSentiment:")["input_ids"]  # no special token
    assert tok.convert_ids_to_tokens(parts[:1]) == ["<s>"]
    assert "Ġ" in tok.convert_ids_to_tokens(parts)  # the space after "Review:" on its own
    assert "Ġ" not in tok.convert_ids_to_tokens(joined)
    with pytest.raises(CimsimError, match="joined or parts"):
        make_scorer(loaded, 32, prompt_tokens="words")


def test_a_long_text_is_cut_before_the_question_in_both_protocols(tiny_gpt_dir: Path) -> None:
    loaded = load_model(str(tiny_gpt_dir))
    task = _task()
    long = "the team won the match " * 20

    def ids(s: str) -> list[int]:
        return loaded.tokenizer(s, add_special_tokens=False)["input_ids"]

    bound = 1 + len(ids("Text: ")) + 8 + len(ids("\nTopic:"))  # BOS, head, cut text, tail
    for prompt_tokens in ("joined", "parts"):
        scorer = make_scorer(loaded, 8, prompt_tokens=prompt_tokens)
        context = scorer.contexts([long], task)[0]
        assert context[-len(ids("\nTopic:")) :] == ids("\nTopic:")  # the question survives
        assert 8 < len(context) <= bound


def test_trailing_prompt_whitespace_moves_to_the_verbalisers(tiny_gpt_dir: Path) -> None:
    loaded = load_model(str(tiny_gpt_dir))
    task = dataclasses.replace(
        _task(), prompt_template="Text: {text}\nTopic: ", verbalizers=("sport", "money")
    )
    scorer = make_scorer(loaded, 32)
    assert scorer.prepare(task) == [
        loaded.tokenizer(" sport", add_special_tokens=False)["input_ids"],
        loaded.tokenizer(" money", add_special_tokens=False)["input_ids"],
    ]
    assert scorer.contexts(["x"], task)[0] == loaded.tokenizer("Text: x\nTopic:")["input_ids"]


def test_causal_scores_do_not_depend_on_batch_padding(tiny_llama_dir: Path) -> None:
    scorer = make_scorer(load_model(str(tiny_llama_dir)), max_length=32)
    task = _task()
    with torch.no_grad():
        alone = scorer(["rates rose"], task)
        batched = scorer(["rates rose", "a much longer text about the team that won the cup"], task)
    assert torch.allclose(alone[0], batched[0], atol=1e-4)


def test_encoder_logits_are_scaled_cosines(tiny_bert_dir: Path) -> None:
    loaded = load_model(str(tiny_bert_dir))
    scorer = make_scorer(loaded, max_length=16)
    assert isinstance(scorer, EncoderScorer)
    task = _task()
    with torch.no_grad():
        logits = scorer(["the team won"], task)
        text = scorer.embed(["the team won"])
        labels = scorer.embed(task.label_descriptions)
    assert torch.allclose(text.norm(dim=-1), torch.ones(1))
    expected = scorer.log_scale.exp() * F.cosine_similarity(text, labels)
    assert torch.allclose(logits[0], expected, atol=1e-5)


def test_encoder_embedding_ignores_padding(tiny_bert_dir: Path) -> None:
    scorer = make_scorer(load_model(str(tiny_bert_dir)), max_length=16)
    with torch.no_grad():
        alone = scorer.embed(["rates rose"])
        padded = scorer.embed(["rates rose", "a much longer text about the team that won"])
    assert torch.allclose(alone[0], padded[0], atol=1e-5)


def test_a_prompted_encoder_reads_the_instruction_after_the_truncated_text(
    tiny_bert_dir: Path,
) -> None:
    loaded = load_model(str(tiny_bert_dir))
    plain, prompted = EncoderScorer(loaded, 8), EncoderScorer(loaded, 8, prompted=True)
    task = _task()
    other = dataclasses.replace(task, prompt_template="Text: {text}\nIs it about money?")
    long_text = " ".join(["the team won the match"] * 20)
    with torch.no_grad():
        assert torch.equal(plain(["markets fell"], task), plain(["markets fell"], other))
        a, b = prompted([long_text], task), prompted([long_text], other)
    assert not torch.allclose(a, b)  # the instruction survives truncation and matters
    tokens = loaded.tokenizer(long_text, "Text: Topic:", truncation="only_first", max_length=8 + 5)
    assert tokens["input_ids"][-5:-1] == loaded.tokenizer("Text: Topic:")["input_ids"][1:-1]


def _naive_scores(lm, scorer: CausalScorer, texts, task) -> torch.Tensor:
    """One unpadded full sequence per (text, label) through the whole model, LM head everywhere."""
    rows = []
    for context in scorer.contexts(texts, task):
        row = []
        for label in scorer.prepare(task):
            log_probs = lm(input_ids=torch.tensor([context + label])).logits.log_softmax(-1)[0]
            positions = torch.arange(len(context) - 1, len(context) + len(label) - 1)
            row.append(log_probs[positions, torch.tensor(label)].sum())
        rows.append(torch.stack(row))
    return torch.stack(rows)  # (texts, labels)


def test_shared_prompt_scoring_equals_full_sequences(tiny_llama_dir: Path) -> None:
    from cimsim.adapters.lora import LoraConfig, add_lora, lora_layers

    loaded = load_model(str(tiny_llama_dir))
    add_lora(loaded.model, LoraConfig(target_modules=("q_proj", "v_proj")))
    torch.manual_seed(1)
    for layer in lora_layers(loaded.model).values():  # a non-trivial branch, so gradients flow
        torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.5)
    scorer = make_scorer(loaded, max_length=12)
    assert isinstance(scorer, CausalScorer)
    task = make_task(
        "multi",
        [f"text {i}" for i in range(8)],
        [0, 1, 2, 3] * 2,
        ("sport", "money", "music", "weather"),
        ("sport.", "money.", "music.", "weather."),
        "Text: {text}\nTopic:",
        (" sport", " stock market prices", " music", " the weather forecast for today"),
        "test",
    )
    lengths = sorted({len(v) for v in scorer.prepare(task)})
    assert lengths[0] == 1 and len(lengths) >= 3  # one-token and multi-token labels of 2+ lengths
    texts = [
        "rates rose",
        "a much longer text about the team that won the cup after extra time in the rain",
        "ok",
    ]
    fast = scorer(texts, task)  # (3, 4)
    naive = _naive_scores(loaded.model, scorer, texts, task)
    assert torch.allclose(fast, naive, atol=1e-4)
    params = [p for p in loaded.model.parameters() if p.requires_grad]
    fast_grads = torch.autograd.grad(fast.sum(), params)
    naive_grads = torch.autograd.grad(naive.sum(), params)
    for got, expected in zip(fast_grads, naive_grads, strict=True):
        assert got.abs().sum() > 0
        assert torch.allclose(got, expected, atol=1e-4, rtol=1e-3)


def test_evaluation_leaves_every_module_in_its_mode(tiny_bert_dir: Path) -> None:
    """The loaded model stays in eval mode (no dropout) after an evaluation, even though the
    scorer around it is in train mode: training after an evaluation must not switch dropout on
    (continual learning evaluates between its stages)."""
    from cimsim.eval.evaluate import evaluate

    loaded = load_model(str(tiny_bert_dir), device="cpu")
    scorer = make_scorer(loaded, max_length=16)
    task = _task()
    before = {name: m.training for name, m in scorer.named_modules()}
    assert before[""] and not loaded.model.training  # the state training runs in
    evaluate(scorer, task, task.test)
    assert {name: m.training for name, m in scorer.named_modules()} == before
