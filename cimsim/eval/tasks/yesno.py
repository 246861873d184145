"""Yes/no question tasks built from the shipped data: one answer space, different questions.

Each task asks one question of one source ("Is this movie review positive?", "Is this tweet
emotionally intense?", "Is this BBC article about politics?") and is answered "yes" or "no". All
of them share the same two label descriptions ("Yes." / "No.") and verbalisers, as
instruction-tuned models share an answer vocabulary: the input's source is what tells the
questions apart (for a causal LM, the prompt also asks the question).

Why they exist: they make the default continual sequence (:mod:`cimsim.continual`) discriminative.
A single LoRA branch trained on one question after another maps the same answers by new rules and
forgets the old ones; a gated branch per question can route by input. The answer labels are
balanced where the source is not (BBC: as many non-politics articles, drawn with seed 0, as
politics articles).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from cimsim.eval.tasks import bbc, vader
from cimsim.eval.tasks.base import Task, TaskSpec, make_task

LABEL_NAMES = ("no", "yes")
DESCRIPTIONS = ("No.", "Yes.")
VERBALIZERS = (" no", " yes")


@dataclass(frozen=True)
class _Question:
    name: str
    load_source: Callable[[Path], Task]
    available: Callable[[Path], bool]
    yes: str  # the source label that answers "yes"
    prompt: str  # causal-LM prompt; contains {text} and asks the question
    balance: bool  # subsample the "no" side to the size of the "yes" side
    summary: str


def load(question: _Question, cache_dir: Path) -> Task:
    """The question over all of the source's texts, split anew (stratified 80/20, seed 0)."""
    source = question.load_source(cache_dir)
    rows = [
        (text, source.label_names[label] == question.yes)
        for split in (source.train, source.test)
        for text, label in zip(split.texts, split.labels, strict=True)
    ]
    yes = [text for text, answer in rows if answer]
    no = [text for text, answer in rows if not answer]
    if question.balance and len(no) > len(yes):
        no = random.Random(0).sample(no, len(yes))
    return make_task(
        question.name,
        yes + no,
        [1] * len(yes) + [0] * len(no),
        label_names=LABEL_NAMES,
        label_descriptions=DESCRIPTIONS,
        prompt_template=question.prompt,
        verbalizers=VERBALIZERS,
        source=f"{source.source}; yes/no question built by cimsim ({question.yes} = yes)",
    )


QUESTIONS = (
    _Question(
        "movie-yesno",
        partial(vader.load, vader.SETS[0]),  # movie
        vader.is_available,
        "positive",
        "Review: {text}\nIs this movie review positive? Answer:",
        False,
        "yes/no: is this movie review positive? (VADER movie snippets)",
    ),
    _Question(
        "tweets-yesno",
        vader.load_intensity,
        vader.is_available,
        "intense",
        "Tweet: {text}\nIs this tweet emotionally intense? Answer:",
        False,
        "yes/no: is this tweet emotionally intense, either polarity? (VADER tweets)",
    ),
    _Question(
        "bbc-yesno",
        bbc.SPEC.load,
        bbc.SPEC.is_available,
        "politics",
        "Article: {text}\nIs this article about politics? Answer:",
        True,
        "yes/no: is this BBC article about politics? (balanced)",
    ),
)

SPECS = tuple(
    TaskSpec(
        name=q.name,
        summary=q.summary,
        source=vader.SOURCE if q.load_source is not bbc.SPEC.load else bbc.SPEC.source,
        label_names=LABEL_NAMES,
        load=partial(load, q),
        is_available=q.available,
    )
    for q in QUESTIONS
)
