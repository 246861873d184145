"""The spec sheet from result folders alone: a sign-off, a sensitivity run and a map of the
tiny encoder, read back from the PDF's own text."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import write_topic_task

from cimsim.cli import main


def test_the_spec_sheet_renders_every_folder_from_its_files(
    tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from pdfminer.high_level import extract_pages, extract_text

    task = write_topic_task(tmp_path / "topics.jsonl", n_per_label=100)
    common = ["--epochs", "3", "--train-size", "240", "--lr", "1e-2", "--max-length", "16"]
    common += ["--batch-size", "16", "--model", str(tiny_bert_dir), "--task", str(task)]
    common += ["--cache-dir", str(tmp_path / "cache")]
    signoff, sensitivity, mapped = (tmp_path / name for name in ("signoff", "sens", "map"))
    judged = ["--chips", "3", "--budget", "20", "--yield", "0.5"]
    assert main(["tolerance", *common, *judged, "--noise", "0.2..2:4", "--out", str(signoff)]) == 0
    assert main(["sensitivity", *common, "--noise", "1", "--seeds", "1", "--groups", "kind",
                 "--out", str(sensitivity)]) == 0  # fmt: skip
    axes = ["--vary", "adc_bits=3,8", "--vary", "sigma=0.2..2:4"]
    assert main(["tolerance", *common, *judged, *axes, "--out", str(mapped)]) == 0
    model = tmp_path / "model-gone"  # built from the files alone: the model may be gone
    shutil.move(tiny_bert_dir, model)
    try:
        out = tmp_path / "sheet"
        folders = [str(signoff), str(sensitivity), str(mapped)]
        assert main(["spec-sheet", *folders, "--out", str(out), "--title", "tiny review"]) == 0
    finally:
        shutil.move(model, tiny_bert_dir)
    pdf = out / "spec-sheet.pdf"
    pages = list(extract_pages(pdf))
    assert len(pages) >= 3  # the sheet and the yield figure, then sensitivity and map
    text = extract_text(pdf)
    summary = json.loads((signoff / "summary.json").read_text())
    assert "tiny review" in text and "Clopper-Pearson" in text
    assert f"{summary['example_evaluations']:,} example evaluations" in text
    assert "Sensitivity" in text and "Design-space map: adc_bits x sigma" in text
    markdown = (out / "spec-sheet.md").read_text()
    assert markdown.count("![") == 3 and (out / "figure-3.png").exists()
    capsys.readouterr()


def test_a_folder_that_is_not_a_run_is_one_line_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "sheet"
    assert main(["spec-sheet", str(tmp_path), "--out", str(out)]) == 2
    assert "not a cimsim results folder" in capsys.readouterr().err
    assert not out.exists()
