"""The README and docs/ point at things that exist: every relative link, image and anchor
resolves, and every name the README's Python examples import is importable from there."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # no headings in code blocks
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z]+://", t)]


def test_slug_follows_github() -> None:
    assert slug("Results folder (schema `cimsim.continual/1`)") == (
        "results-folder-schema-cimsimcontinual1"
    )
    assert slug("The noise axis: what σ means") == "the-noise-axis-what-σ-means"


def test_there_are_docs_pages() -> None:
    assert len(PAGES) > 5


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        exists = file.exists()
        if not exists or (anchor and file.suffix == ".md" and anchor not in anchors(file)):
            broken.append(target)
    assert broken == []


def test_the_readme_stays_a_guide() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


def test_the_readme_python_imports_resolve() -> None:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    imports = re.findall(r"^from (cimsim[\w.]*) import (.+)$", "\n".join(blocks), flags=re.M)
    named = re.findall(r"`(cimsim(?:\.\w+)+)\.(\w+)`", text)  # `cimsim.pkg.module.name`
    assert imports
    missing = []
    for module, names in [*imports, *named]:
        for name in (n.strip() for n in names.split(",")):
            if not hasattr(importlib.import_module(module), name):
                missing.append(f"{module}.{name}")
    assert missing == []
