"""Tasks from Hugging Face ``datasets`` sources: a ``datasets.load_from_disk`` folder, or a data
file ``datasets.load_dataset`` reads (``.json``/``.jsonl``, ``.csv``, ``.parquet``).

``text_column`` and ``label_column`` name the columns (default ``text`` and ``label``). Label
names come from the label column's ``ClassLabel`` feature when it has one (its order is the label
index), else from the distinct values as for local files (numeric order if all are integers,
else alphabetical). Splits: a source with both a ``train`` and a ``test`` split (``validation``
when there is no ``test``) keeps them; a single split is divided by cimsim's stratified, seeded
rule (:func:`cimsim.eval.tasks.base.make_task`). Scoring defaults as for local files. Nothing is
downloaded: the source is a local folder or file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cimsim.core.errors import CimsimError
from cimsim.eval.tasks.base import Split, Task, make_task

BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


def is_datasets_source(name: str) -> bool:
    """A ``load_from_disk`` folder or a file suffix ``load_dataset`` reads."""
    path = Path(name).expanduser()
    if path.is_dir():
        return (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()
    return path.suffix.lower() in BUILDERS


def load_datasets_task(name: str, text_column: str = "text", label_column: str = "label") -> Task:
    """The task in the ``datasets`` source ``name`` (see the module docstring)."""
    try:
        import datasets
    except ImportError:
        raise CimsimError(f"--task {name} needs datasets: pip install 'cimsim[datasets]'") from None
    datasets.disable_progress_bars()
    path = Path(name).expanduser()
    try:
        if path.is_dir():
            loaded: Any = datasets.load_from_disk(str(path))
        elif path.is_file():
            loaded = datasets.load_dataset(BUILDERS[path.suffix.lower()], data_files=str(path))
        else:
            raise CimsimError(f"task source {name} does not exist")
    except CimsimError:
        raise
    except Exception as err:  # datasets' readers raise many kinds on a bad file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CimsimError(f"cannot read task source {name}: {first[:200]}") from None
    splits = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    if not splits:
        raise CimsimError(f"task source {name} holds no split")
    first_split = next(iter(splits.values()))
    columns = list(first_split.column_names)
    for column, option in ((text_column, "--text-column"), (label_column, "--label-column")):
        if column not in columns:
            raise CimsimError(
                f"task source {name} has no column '{column}' ({option}); it has: "
                f"{', '.join(columns)}"
            )
    feature = first_split.features[label_column]
    class_names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None

    def examples(split: Any, split_name: str) -> tuple[list[str], list[str]]:
        if len(split) == 0:
            raise CimsimError(f"task source {name}: split '{split_name}' is empty")
        texts, labels = split[text_column], split[label_column]
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise CimsimError(f"task source {name}, {split_name} row {i}: text is not a string")
        if class_names is not None:
            return texts, [class_names[int(label)] for label in labels]
        return texts, [str(label).strip() for label in labels]

    test_name = "test" if "test" in splits else "validation" if "validation" in splits else None
    parts = {
        s: examples(splits[s], s)
        for s in (["train", test_name] if test_name else list(splits)[:1])
        if s in splits
    }
    every_label = {label for _, labels in parts.values() for label in labels}
    names = tuple(class_names) if class_names is not None else _label_names(every_label)
    if len(every_label) < 2:
        raise CimsimError(
            f"task source {name} needs at least 2 distinct labels, has only '{min(every_label)}'"
        )
    index = {label: i for i, label in enumerate(names)}
    scoring: dict[str, Any] = {
        "label_names": names,
        "label_descriptions": tuple(f"This text is about {n}." for n in names),
        "prompt_template": "Text: {text}\nLabel:",
        "verbalizers": tuple(f" {n}" for n in names),
        "source": f"datasets source {name} (text: {text_column}, label: {label_column})",
    }
    if test_name is not None and "train" in parts:
        train, test = parts["train"], parts[test_name]
        return Task(
            name=name,
            train=Split(tuple(train[0]), tuple(index[x] for x in train[1])),
            test=Split(tuple(test[0]), tuple(index[x] for x in test[1])),
            **scoring,
        )
    texts, labels = next(iter(parts.values()))
    return make_task(name, texts, [index[x] for x in labels], **scoring)


def _label_names(labels: set[str]) -> tuple[str, ...]:
    if all(label.lstrip("-").isdigit() for label in labels):
        return tuple(sorted(labels, key=int))
    return tuple(sorted(labels))
