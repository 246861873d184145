"""The task concept: labelled texts split once into train/test, plus how to score each label.

A task is evaluated by multiple-choice scoring over its label set (the scorer lives elsewhere): a
causal LM scores label k by the log-likelihood of ``verbalizers[k]`` after ``prompt_template``
filled with the text; an encoder scores it by the similarity between the text's embedding and the
embedding of ``label_descriptions[k]``. Either way no task id is needed at inference.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cimsim.core.errors import CimsimError


@dataclass(frozen=True, repr=False)
class Split:
    """Texts and their label indices (into the task's ``label_names``), in a fixed order."""

    texts: tuple[str, ...]
    labels: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise CimsimError(f"a split has {len(self.texts)} texts but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.texts)

    def __repr__(self) -> str:
        # The default repr would print every text; a split can hold megabytes of them.
        return f"Split(n={len(self)}, labels={sorted(set(self.labels))})"

    def subset(self, n: int | None, seed: int) -> Split:
        """A stratified, seeded subsample of ``min(n, len(self))`` examples; ``n=None`` gives self.

        Class k gets ``n * count_k / len(self)`` examples, rounded by largest remainder (the floors,
        then one more each for the classes with the largest remainders, ties to the lower label
        index), so class proportions are kept as closely as integers allow. The examples drawn
        depend only on ``seed`` (``np.random.default_rng(seed)``). They keep their order in this
        split, which :func:`make_task` has shuffled, so ``subset(len(self), seed)`` is ``self``.
        """
        if n is None or n >= len(self):
            return self
        if n < 1:
            raise CimsimError(f"a subset needs at least 1 example, got n={n}")
        labels = np.asarray(self.labels)  # (len,)
        classes, counts = np.unique(labels, return_counts=True)  # (k,), (k,)
        quotas = _largest_remainder(counts, n)
        rng = np.random.default_rng(seed)
        drawn = [
            rng.permutation(np.flatnonzero(labels == c))[:q]
            for c, q in zip(classes, quotas, strict=True)
        ]
        keep = np.sort(np.concatenate(drawn))  # (n,) positions in this split
        return Split(tuple(self.texts[i] for i in keep), tuple(self.labels[i] for i in keep))


def _largest_remainder(counts: np.ndarray, n: int) -> np.ndarray:
    """Integer quotas proportional to ``counts`` that sum to ``n`` (Hamilton's method)."""
    total = int(counts.sum())
    # Integer arithmetic, so equal remainders compare equal and ties break by index, not by ulp.
    quotas, remainders = np.divmod(counts * n, total)
    order = np.argsort(-remainders, kind="stable")
    quotas[order[: n - int(quotas.sum())]] += 1
    return quotas


@dataclass(frozen=True)
class Task:
    """Labelled texts, their label names, and the label verbalisations used to score them.

    ``fingerprint`` is computed, never passed: the first 16 hex digits of the SHA-256 of the label
    names and both splits' texts and labels, in order (see :func:`data_fingerprint`). It changes
    iff the data or the split changes, so a result file can prove which data it was computed on.
    Variants (other prompts, descriptions) are made with ``dataclasses.replace``.
    """

    name: str  # registry name, or a local file's path as given
    label_names: tuple[str, ...]  # e.g. ("business", ..., "tech")
    label_descriptions: tuple[str, ...]  # encoder scoring, e.g. "This article is about business."
    prompt_template: str  # causal-LM scoring, contains "{text}", e.g. "Article: {text}\nTopic:"
    verbalizers: tuple[str, ...]  # continuation per label after the prompt, e.g. " business"
    train: Split
    test: Split
    source: str  # one-line citation / provenance
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        self._validate()
        fingerprint = data_fingerprint(self.label_names, self.train, self.test)
        object.__setattr__(self, "fingerprint", fingerprint)

    @property
    def n_labels(self) -> int:
        return len(self.label_names)

    def _validate(self) -> None:
        def fail(problem: str) -> CimsimError:
            return CimsimError(f"task '{self.name}': {problem}")

        n = self.n_labels
        if n < 2:
            raise fail(f"needs at least 2 labels, got {n} ({', '.join(self.label_names)})")
        if len(set(self.label_names)) != n:
            raise fail(f"label names must be distinct, got {', '.join(self.label_names)}")
        if len(self.label_descriptions) != n or len(self.verbalizers) != n:
            raise fail(
                f"{n} label names but {len(self.label_descriptions)} descriptions "
                f"and {len(self.verbalizers)} verbalizers"
            )
        try:
            self.prompt_template.format(text="")
        except (KeyError, IndexError, ValueError):
            raise fail("the prompt template may use no field but {text}") from None
        if "{text}" not in self.prompt_template:
            raise fail("the prompt template must contain {text}")
        for split_name, split in (("train", self.train), ("test", self.test)):
            if len(split) == 0:
                raise fail(f"the {split_name} split is empty")
            outside = sorted({y for y in split.labels if not 0 <= y < n})
            if outside:
                raise fail(f"the {split_name} split has labels {outside}, outside 0..{n - 1}")


def data_fingerprint(label_names: Sequence[str], train: Split, test: Split) -> str:
    """First 16 hex digits of the SHA-256 of canonical JSON ``[names, train, test]``.

    ASCII-escaped JSON with fixed separators, so the digest is the same on every platform.
    """
    payload = json.dumps(
        [list(label_names), train.texts, train.labels, test.texts, test.labels],
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("ascii")).hexdigest()[:16]


def make_task(
    name: str,
    texts: Sequence[str],
    labels: Sequence[int],
    label_names: Sequence[str],
    label_descriptions: Sequence[str],
    prompt_template: str,
    verbalizers: Sequence[str],
    source: str,
    *,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> Task:
    """Build a :class:`Task` from all its examples by a stratified, seeded train/test split.

    Exact duplicate texts are dropped first, keeping the first occurrence (and its label), so that
    no test example has a copy in the training split (BBC News has 100 duplicated articles).

    The split rule, part of every result's reproducibility: one generator
    ``np.random.default_rng(split_seed)``; for each label index in ascending order, permute that
    class's examples (taken in input order) and send the first ``floor(test_fraction * count +
    0.5)`` to test, clamped to ``1..count-1`` when the class has at least 2 examples (a class of 1
    goes to train); finally permute the train, then the test examples with the same generator, so
    neither split is grouped by class.
    """
    if len(texts) != len(labels):
        raise CimsimError(f"task '{name}': {len(texts)} texts but {len(labels)} labels")
    if not 0.0 < test_fraction < 1.0:
        raise CimsimError(f"task '{name}': test_fraction must be in (0, 1), got {test_fraction}")
    first: dict[str, int] = {}
    for index, text in enumerate(texts):
        first.setdefault(text, index)
    keep = sorted(first.values())
    texts = [texts[i] for i in keep]
    y = np.asarray([labels[i] for i in keep], dtype=np.int64)  # (n_unique,)
    rng = np.random.default_rng(split_seed)
    train_parts: list[np.ndarray] = []
    test_parts: list[np.ndarray] = []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        count = len(members)
        n_test = 0 if count < 2 else min(max(int(test_fraction * count + 0.5), 1), count - 1)
        test_parts.append(members[:n_test])
        train_parts.append(members[n_test:])

    def split(parts: list[np.ndarray]) -> Split:
        order = rng.permutation(np.concatenate(parts)) if parts else np.array([], np.int64)
        return Split(tuple(texts[i] for i in order), tuple(int(y[i]) for i in order))

    train = split(train_parts)
    test = split(test_parts)  # drawn after train: the order of these two calls is part of the rule
    return Task(
        name=name,
        label_names=tuple(label_names),
        label_descriptions=tuple(label_descriptions),
        prompt_template=prompt_template,
        verbalizers=tuple(verbalizers),
        train=train,
        test=test,
        source=source,
    )


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: what ``cimsim tasks`` lists, and how to load it.

    ``load`` and ``is_available`` take the cache directory; ``is_available`` says whether ``load``
    would succeed without downloading anything, so listing tasks never triggers a fetch.
    """

    name: str
    summary: str
    source: str
    label_names: tuple[str, ...]
    load: Callable[[Path], Task]
    is_available: Callable[[Path], bool]
