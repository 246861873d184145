"""Binary tasks from the VADER human-rated snippets: polarity of movie, tweets, amazon and nyt
snippets, and the emotional intensity of tweets (``tweets-intensity``).

Hutto & Gilbert (ICWSM 2014) had every snippet rated on a -4..+4 scale by at least 20 screened
human raters; the "ground truth" files give the mean rating (see the archive's _README_.txt). The
files ship only inside the vaderSentiment 3.3.2 *source* archive (MIT licence), nested as
``additional_resources/hutto_ICWSM_2014.tar.gz``, so they are fetched once with pip's download
command and cached, under their own names, in ``<cache_dir>/vader/``.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from cimsim.core.errors import CimsimError
from cimsim.eval.tasks.base import Task, TaskSpec, make_task

SOURCE = "VADER human-rated snippets (Hutto & Gilbert, ICWSM 2014), vaderSentiment 3.3.2 sdist, MIT"
LABEL_NAMES = ("negative", "positive")
MIN_ABS_SCORE = 1.0  # mean rating on -4..+4; see parse_snippets for why near-neutral ones go
INTENSITY_LABELS = ("neutral", "intense")
NEUTRAL_MAX_ABS = 0.5  # tweets-intensity: |mean rating| at most this is "neutral" ...
INTENSE_MIN_ABS = 2.0  # ... and at least this is "intense", positive or negative alike
PIP_COMMAND = (
    "-m",
    "pip",
    "download",
    "--no-deps",
    "--no-binary",
    ":all:",
    "vadersentiment==3.3.2",
    "-d",
)
INNER_ARCHIVE = "additional_resources/hutto_ICWSM_2014.tar.gz"  # inside the sdist's top folder
INNER_FOLDER = "hutto_ICWSM_2014"


@dataclass(frozen=True)
class _SnippetSet:
    name: str
    file: str  # ground-truth file in hutto_ICWSM_2014/
    noun: str  # what one snippet is: "This {noun} is negative."
    prompt_label: str  # "{prompt_label}: {text}\nSentiment:"
    summary: str


SETS = (
    _SnippetSet(
        "movie",
        "movieReviewSnippets_GroundTruth.txt",
        "movie review",
        "Review",
        "movie-review sentences, negative/positive (VADER human ratings)",
    ),
    _SnippetSet(
        "tweets",
        "tweets_GroundTruth.txt",
        "tweet",
        "Tweet",
        "tweets, negative/positive (VADER human ratings)",
    ),
    _SnippetSet(
        "amazon",
        "amazonReviewSnippets_GroundTruth.txt",
        "product review",
        "Review",
        "Amazon product-review sentences, negative/positive (VADER human ratings)",
    ),
    _SnippetSet(
        "nyt",
        "nytEditorialSnippets_GroundTruth.txt",
        "newspaper editorial",
        "Editorial",
        "New York Times editorial sentences, negative/positive (VADER human ratings)",
    ),
)


def read_ratings(path: Path) -> list[tuple[float, str]]:
    """(mean rating, text) of every snippet in a VADER ground-truth file.

    Format: UTF-8, one ``id<TAB>mean_score<TAB>text`` per line, CRLF line ends.
    """
    try:
        content = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CimsimError(f"cannot read VADER snippets from {path}: {error}") from None
    rows: list[tuple[float, str]] = []
    # split("\n"), not splitlines(): a snippet may hold U+2028 or other characters it splits on.
    for number, line in enumerate(content.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t", 2)
        try:
            rows.append((float(fields[1]), fields[2].strip()))
        except (IndexError, ValueError):
            raise CimsimError(f"{path}, line {number}: expected id<TAB>score<TAB>text") from None
    return rows


def parse_snippets(path: Path, min_abs_score: float = MIN_ABS_SCORE) -> tuple[list[str], list[int]]:
    """Texts and binary labels (0 negative, 1 positive) from a VADER ground-truth file.

    Snippets with ``|mean_score| < min_abs_score`` are left out: a mean rating near 0 is either a
    neutral snippet or raters who disagree, and neither has a reliable polarity. Label 0 if the
    score is ``<= -min_abs_score``, 1 if ``>= min_abs_score``.
    """
    if min_abs_score <= 0:
        raise CimsimError(f"min_abs_score must be positive, got {min_abs_score}")
    kept = [(score, text) for score, text in read_ratings(path) if abs(score) >= min_abs_score]
    return [text for _, text in kept], [int(score > 0) for score, _ in kept]


def parse_intensity(path: Path) -> tuple[list[str], list[int]]:
    """Texts and intensity labels (0 neutral, 1 intense), whatever the polarity.

    Neutral: ``|mean_score| <= NEUTRAL_MAX_ABS``; intense: ``|mean_score| >= INTENSE_MIN_ABS``;
    the snippets in between are left out, so the two classes are clearly apart.
    """
    texts, labels = [], []
    for score, text in read_ratings(path):
        if abs(score) <= NEUTRAL_MAX_ABS or abs(score) >= INTENSE_MIN_ABS:
            texts.append(text)
            labels.append(int(abs(score) >= INTENSE_MIN_ABS))
    return texts, labels


def _complete(vader_dir: Path) -> bool:
    return all((vader_dir / s.file).is_file() for s in SETS)


def is_available(cache_dir: Path) -> bool:
    """True if the snippets are already cached under ``cache_dir``."""
    return _complete(cache_dir / "vader")


def fetch_snippets(cache_dir: Path) -> Path:
    """The directory ``<cache_dir>/vader`` holding the four ground-truth files, fetched if absent.

    The files are staged in a temporary directory next to it and renamed into place in one step,
    so an interrupted fetch leaves no half-filled cache.
    """
    target = cache_dir / "vader"
    if _complete(target):
        return target
    print(
        "cimsim: fetching the VADER sentiment snippets (vaderSentiment 3.3.2 sdist, 2.5 MB) "
        f"into {target}; once only",
        file=sys.stderr,
    )
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CimsimError(
            f"cannot create the cache directory {cache_dir} ({error.strerror}); "
            "set CIMSIM_CACHE to a writable directory"
        ) from None
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".vader-") as tmp:
        download_dir = Path(tmp) / "download"
        staged = Path(tmp) / "vader"
        _pip_download(download_dir)
        _extract(_the_sdist(download_dir), staged)
        # Only a hand edit leaves a partial target (fetches are atomic); replace it whole.
        shutil.rmtree(target, ignore_errors=True)
        try:
            staged.rename(target)
        except OSError:
            # A concurrent fetch renamed its own copy into place first; that copy is as good.
            if not _complete(target):
                raise
    return target


def _pip_download(download_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, *PIP_COMMAND, str(download_dir)], capture_output=True, text=True
    )
    if result.returncode != 0:
        lines = [x.strip() for x in (result.stdout + result.stderr).splitlines() if x.strip()]
        # pip's "ERROR:" line names the cause; retry warnings and tracebacks come before it.
        errors = [x for x in lines if x.startswith("ERROR:")] or lines
        why = errors[-1] if errors else f"pip exited with code {result.returncode}"
        raise CimsimError(
            f"could not download vaderSentiment 3.3.2 from PyPI with pip ({why}); "
            "check network access to pypi.org and run the command again"
        )


def _the_sdist(download_dir: Path) -> Path:
    found = sorted(download_dir.glob("*.tar.gz"))
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "nothing"
        raise CimsimError(f"pip download of vaderSentiment 3.3.2 gave {names}, expected one sdist")
    return found[0]


def _extract(sdist: Path, dest: Path) -> None:
    """Write the four ground-truth files from ``sdist``'s nested archive into new dir ``dest``."""
    contents: dict[str, bytes] = {}
    try:
        with tarfile.open(sdist, "r:gz") as outer:
            member = next((m for m in outer if m.name.endswith("/" + INNER_ARCHIVE)), None)
            inner_file = outer.extractfile(member) if member is not None else None
            if inner_file is None:
                raise CimsimError(f"{sdist.name} has no {INNER_ARCHIVE}; is it vaderSentiment?")
            inner_bytes = inner_file.read()
        with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
            for s in SETS:
                snippet_file = inner.extractfile(f"{INNER_FOLDER}/{s.file}")
                if snippet_file is None:
                    raise KeyError(s.file)
                contents[s.file] = snippet_file.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error, KeyError) as error:
        raise CimsimError(
            f"{sdist.name} is not a usable vaderSentiment 3.3.2 sdist ({error})"
        ) from None
    dest.mkdir()
    for file, data in contents.items():
        (dest / file).write_bytes(data)


def load(snippets: _SnippetSet, cache_dir: Path) -> Task:
    """One snippet set as a binary sentiment task, fetching the archive on first use."""
    texts, labels = parse_snippets(fetch_snippets(cache_dir) / snippets.file)
    return make_task(
        snippets.name,
        texts,
        labels,
        label_names=LABEL_NAMES,
        label_descriptions=tuple(f"This {snippets.noun} is {p}." for p in LABEL_NAMES),
        prompt_template=snippets.prompt_label + ": {text}\nSentiment:",
        verbalizers=tuple(f" {p}" for p in LABEL_NAMES),
        source=SOURCE,
    )


def load_intensity(cache_dir: Path) -> Task:
    """``tweets-intensity``: is a tweet emotionally intense or neutral (either polarity)?

    It asks a different question of sentiment-laden text than the polarity tasks do: a strongly
    negative and a strongly positive tweet share a label here. That is what makes the default
    continual sequence (``cimsim.continual``) discriminative: a single LoRA branch that learns it
    after (or before) a polarity task must reshape what the other task relies on.
    """
    texts, labels = parse_intensity(fetch_snippets(cache_dir) / "tweets_GroundTruth.txt")
    return make_task(
        "tweets-intensity",
        texts,
        labels,
        label_names=INTENSITY_LABELS,
        label_descriptions=("This tweet is neutral in tone.", "This tweet is emotionally intense."),
        prompt_template="Tweet: {text}\nTone:",
        verbalizers=(" neutral", " intense"),
        source=SOURCE,
    )


SPECS = (
    *(
        TaskSpec(
            name=s.name,
            summary=s.summary,
            source=SOURCE,
            label_names=LABEL_NAMES,
            load=partial(load, s),
            is_available=is_available,
        )
        for s in SETS
    ),
    TaskSpec(
        name="tweets-intensity",
        summary=f"tweets, neutral (|rating| <= {NEUTRAL_MAX_ABS}) / intense (>= {INTENSE_MIN_ABS})"
        " whatever the polarity (VADER human ratings)",
        source=SOURCE,
        label_names=INTENSITY_LABELS,
        load=load_intensity,
        is_available=is_available,
    ),
)
