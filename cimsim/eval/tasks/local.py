"""Tasks from a user's own file of labelled texts: ``.jsonl``, ``.csv`` or ``.tsv``.

- ``.jsonl``: one JSON object per line with a ``text`` string and a ``label`` (string or integer).
- ``.csv`` / ``.tsv``: a header row naming ``text`` and ``label`` columns (others are ignored),
  read with the csv module's default (Excel) quoting.

Files are UTF-8 (a leading byte-order mark is allowed); blank lines are skipped. Label names are
the distinct labels as strings, sorted numerically if all are integers, else alphabetically; a
label's index is its position in that order. Scoring defaults: descriptions "This text is about
{label}.", prompt "Text: {text}\\nLabel:", verbalizers " {label}"; change them on the returned task
with ``dataclasses.replace``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from cimsim.core.errors import CimsimError
from cimsim.eval.tasks.base import Task, make_task

DELIMITERS = {".csv": ",", ".tsv": "\t"}
SUFFIXES = (".jsonl", *DELIMITERS)


def is_local_file_name(name: str) -> bool:
    """True if ``name`` ends in a suffix this module reads (case-insensitive)."""
    return Path(name).suffix.lower() in SUFFIXES


def load_local(path_as_given: str) -> Task:
    """The task in file ``path_as_given``; the task is named by that string, as given."""
    path = Path(path_as_given).expanduser()
    content = _read(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        examples = _jsonl_examples(path, content)
    else:
        examples = _table_examples(path, content, DELIMITERS[suffix])
    if not examples:
        raise CimsimError(f"task file {path} is empty: it holds no labelled texts")
    label_names = _label_names({label for _, label in examples})
    if len(label_names) < 2:
        raise CimsimError(
            f"task file {path} needs at least 2 distinct labels, has only '{label_names[0]}'"
        )
    index = {name: i for i, name in enumerate(label_names)}
    return make_task(
        path_as_given,
        [text for text, _ in examples],
        [index[label] for _, label in examples],
        label_names=label_names,
        label_descriptions=tuple(f"This text is about {name}." for name in label_names),
        prompt_template="Text: {text}\nLabel:",
        verbalizers=tuple(f" {name}" for name in label_names),
        source=f"local file {path_as_given}",
    )


def _read(path: Path) -> str:
    if not path.exists():
        raise CimsimError(f"task file {path} does not exist")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise CimsimError(f"cannot read task file {path} ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise CimsimError(
            f"task file {path} is not UTF-8 text (bad byte at offset {error.start})"
        ) from None


def _jsonl_examples(path: Path, content: str) -> list[tuple[str, str]]:
    examples = []
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and other characters it splits on.
    for number, line in enumerate(content.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise CimsimError(f"{path}, line {number}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict) or "text" not in record or "label" not in record:
            raise CimsimError(f"{path}, line {number}: expected an object with 'text' and 'label'")
        examples.append(_example(path, number, record["text"], record["label"]))
    return examples


def _table_examples(path: Path, content: str, delimiter: str) -> list[tuple[str, str]]:
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
    examples = []
    try:
        header = [column.strip() for column in next(reader, [])]
        if not header:
            return []
        missing = [column for column in ("text", "label") if column not in header]
        if missing:
            raise CimsimError(
                f"{path}: the header row has no {' or '.join(missing)} column "
                f"(it has: {', '.join(header)})"
            )
        text_at, label_at = header.index("text"), header.index("label")
        for record in reader:
            if not any(field.strip() for field in record):
                continue
            if len(record) <= max(text_at, label_at):
                raise CimsimError(
                    f"{path}, line {reader.line_num}: {len(record)} fields, "
                    f"fewer than the header's {len(header)}"
                )
            examples.append(_example(path, reader.line_num, record[text_at], record[label_at]))
    except csv.Error as error:
        raise CimsimError(f"{path}, line {reader.line_num}: malformed ({error})") from None
    return examples


def _example(path: Path, line: int, text: object, label: object) -> tuple[str, str]:
    """``(text, label as a string)``, or a CimsimError naming the file and line."""
    if not isinstance(text, str):
        raise CimsimError(f"{path}, line {line}: 'text' must be a string")
    # bool is an int subclass, but true/false labels are almost surely a mistake in the file.
    if isinstance(label, bool) or not isinstance(label, (str, int)):
        raise CimsimError(f"{path}, line {line}: 'label' must be a string or an integer")
    name = str(label).strip()
    if not name:
        raise CimsimError(f"{path}, line {line}: empty label")
    return text, name


def _label_names(labels: set[str]) -> tuple[str, ...]:
    if all(_is_integer(label) for label in labels):
        return tuple(sorted(labels, key=int))
    return tuple(sorted(labels))


def _is_integer(label: str) -> bool:
    try:
        return str(int(label)) == label
    except ValueError:
        return False
