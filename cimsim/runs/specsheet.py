"""The spec sheet: one page a hardware team attaches to a review, from result folders alone.

``write_spec_sheet(run_dirs, out_dir)`` reads sign-off, sensitivity, placement and map folders
(each recognised by its files) and writes ``spec-sheet.md`` and ``spec-sheet.pdf``: the
deployment (model, task, adapter, card with units, placement), each certified tolerance with
its interval and reasons, the sensitivity ranking and the diagnosis of failing chips, the
recommended placement, the map's certified values, how every number was computed (rules,
confidence), and the environment each run recorded. The first page holds the text and the
first figure; each further figure gets its own page. No model, data or network is needed.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from cimsim.chip.cards import card_from_dict
from cimsim.core.errors import CimsimError
from cimsim.core.io import read_json, write_atomic

MARKDOWN, PDF = "spec-sheet.md", "spec-sheet.pdf"


@dataclasses.dataclass
class Sheet:
    lines: list[str] = dataclasses.field(default_factory=list)
    figures: list[tuple[str, Path]] = dataclasses.field(default_factory=list)
    """(caption, PNG) in the order they are cited."""
    environments: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    deployment: dict[str, Any] | None = None


def kind_of_folder(folder: Path) -> str:
    """``signoff``, ``sensitivity``, ``placement``, ``map`` or ``sweep``; a user error otherwise."""
    if (folder / "placement.json").exists():
        return "placement"
    if (folder / "map.json").exists():
        return "map"
    if not (folder / "config.json").exists():
        raise CimsimError(f"{folder} is not a cimsim results folder (no config.json)")
    schema = read_json(folder / "config.json").get("schema", "")
    for prefix, kind in (("cimsim.tolerance", "signoff"), ("cimsim.sensitivity", "sensitivity"),
                         ("cimsim.sweep", "sweep")):  # fmt: skip
        if str(schema).startswith(prefix):
            return kind
    raise CimsimError(f"{folder} holds a '{schema}' run, which the spec sheet does not cover")


def collect(run_dirs: list[Path]) -> Sheet:
    sheet = Sheet()
    for folder in run_dirs:
        kind = kind_of_folder(folder)
        if kind == "placement":
            _placement(sheet, folder)
        elif kind == "map":
            _map(sheet, folder)
        elif kind == "signoff":
            _signoff(sheet, folder)
        elif kind == "sensitivity":
            _sensitivity(sheet, folder)
        else:
            raise CimsimError(f"{folder} is a sweep: the spec sheet takes sign-off folders")
    return sheet


def _deployment(sheet: Sheet, record: dict[str, Any], folder: Path) -> None:
    sheet.environments[str(folder)] = record.get("sessions", [{}])[-1]
    if sheet.deployment is not None:
        return
    sheet.deployment = record
    model, task, card = record["model"], record["task"], record["card"]
    adapter = record.get("adapter") or {}
    loaded = card_from_dict(card, origin=str(folder / "config.json"))
    lines = sheet.lines
    lines += ["## Deployment", ""]
    lines.append(f"- Model: {model['name']} ({model['params']:,} parameters; {model['source']}; "
                 f"fingerprint {model['fingerprint']})")  # fmt: skip
    lines.append(f"- Task: {task['name']} ({task['source']}); {task['n_eval']} test examples of "
                 f"{task['n_test']}")  # fmt: skip
    if adapter:
        lora = adapter.get("lora", {})
        lines.append(f"- Adapter: {adapter.get('method')} LoRA r {lora.get('r')}, alpha "
                     f"{lora.get('lora_alpha')} on {', '.join(lora.get('target_modules', []))} "
                     f"(key {adapter.get('key')}), in digital SRAM")  # fmt: skip
    lines.append(
        f"- Card: {card['name']}: {card.get('summary', '')} (source: {card.get('source')})"
    )
    for section in ("device", "tile"):
        shown = []
        for field, value in card.get(section, {}).items():
            unit = loaded.unit(field) if field in loaded.numeric_fields() else ""
            shown.append(f"{field} = {value}" + (f" [{unit}]" if unit else ""))
        lines.append(f"  - {section}: " + "; ".join(shown))
    placement = record.get("placement") or {}
    if placement.get("digital_layers"):
        lines.append(f"- Placement: {len(placement['digital_layers'])} base layers digital "
                     f"({placement['digital_pattern']}); analog fraction "
                     f"{placement['analog_fraction']:.1%}")  # fmt: skip
    else:
        lines.append("- Placement: every base linear of the transformer blocks analog")
    lines.append("")


def _signoff(sheet: Sheet, folder: Path, heading: str | None = None) -> dict[str, Any]:
    record = read_json(folder / "config.json")
    summary = _summary(folder)
    _deployment(sheet, record, folder)
    unit = summary["unit"]
    field = summary["field"]
    lines = sheet.lines
    lines += [heading or f"## Sign-off: {field} ({folder.name})", ""]
    if summary["certified_value"] is not None:
        lines.append(f"**Certified tolerance: {field} = {summary['certified_value']:g} [{unit}]**: "
                     f"yield >= {summary['target_yield']:.0%} at {summary['confidence']:.0%} "
                     f"confidence (lower bound {summary['certified_yield_lower_bound']:.3f}), "
                     f"{summary['chips']} chips")  # fmt: skip
    else:
        lines.append(f"**No certified tolerance on the grid** ({summary['chips']} chips)")
    for reason in summary["not_certified_because"]:
        lines.append(f"- {reason}")
    grid = sorted(float(v) for v in record["config"]["sweep"]["values"])
    lines.append(f"- Searched: {field} from {grid[0]:g} to {grid[-1]:g} [{unit}] ({len(grid)} "
                 f"values; the card's own {field} above is not used)")  # fmt: skip
    lines.append(f"- Rule: {summary['rule']}")
    lines.append(f"- Test-set resolution: {summary['resolution_points']:.2f} points; "
                 f"{summary['chips_needed_at_all_pass']} chips are the fewest that can certify "
                 f"the target when all pass")  # fmt: skip
    lines.append(
        f"- Search: {summary['search']}, {summary['chips_mode']} chips, early stop "
        f"{summary['early_stop']}; {summary['example_evaluations']:,} example "
        f"evaluations ({summary['full_grid_example_evaluations']:,} for the full grid)"
    )
    lines.append("")
    sheet.figures.append((f"yield, {folder.name}", folder / "yield.png"))
    return summary


def _summary(folder: Path) -> dict[str, Any]:
    if not (folder / "summary.json").exists():
        raise CimsimError(f"{folder} has no summary yet: finish the run first")
    return read_json(folder / "summary.json")


def _sensitivity(sheet: Sheet, folder: Path) -> None:
    import pandas as pd

    record = read_json(folder / "config.json")
    summary = _summary(folder)
    _deployment(sheet, record, folder)
    table = pd.read_csv(folder / "table.csv")
    lines = sheet.lines
    lines += [f"## Sensitivity ({folder.name})", ""]
    lines.append(f"Digital accuracy {summary['digital_accuracy']:.3f}. {summary['rule']}.")
    lines.append("")
    for value, part in table.groupby("value", sort=True):
        chips = next(v for v in summary["values"] if v["value"] == value)
        shown = ", ".join(f"{a:.3f}" for a in chips["all_analog_accuracy"])
        lines.append(
            f"At {summary['varied']} = {value:g} [{summary['unit']}] (all analog: {shown}):"
        )
        lines.append("")
        lines.append("| group | drop (pt) | recovery (pt) | weights |")
        lines.append("|---|---|---|---|")
        top = part.sort_values("drop", ascending=False).head(8)
        for row in top.to_dict("records"):
            lines.append(
                f"| {row['grouping']}:{row['group']} | {100 * row['drop']:.1f} ± "
                f"{100 * row['drop_std']:.1f} | {100 * row['recovery']:.1f} ± "
                f"{100 * row['recovery_std']:.1f} | {row['weight_fraction']:.1%} |"
            )
        lines.append("")
    for chip in summary["diagnosis"]:
        fixed = ", ".join(chip["restored_by"]) or "no single group"
        lines.append(f"- Chip {chip['instance']} at {chip['value']:g}: "
                     f"{chip['all_analog_accuracy']:.3f} all analog; redrawing {fixed} brings it "
                     f"within {100 * summary['budget']:g} pt (best {chip['best']}: "
                     f"{chip['best_accuracy']:.3f})")  # fmt: skip
    lines.append("")
    sheet.figures.append((f"sensitivity, {folder.name}", folder / "sensitivity.png"))


def _placement(sheet: Sheet, folder: Path) -> None:
    record = read_json(folder / "placement.json")
    lines = sheet.lines
    steps = record["steps"]
    if steps:
        _deployment(sheet, read_json(folder / steps[0]["folder"] / "config.json"), folder)
    lines += [f"## Mixed placement ({folder.name})", ""]
    lines.append(f"Target {record['target']:g}; {record['rule']}.")
    lines.append("")
    lines.append("| digital groups | analog fraction | certified |")
    lines.append("|---|---|---|")
    for step in steps:
        certified = step["certified_value"]
        lines.append(f"| {', '.join(step['groups'])} | {step['analog_fraction']:.1%} | "
                     f"{'none' if certified is None else f'{certified:g}'} |")  # fmt: skip
    reached = record.get("reached")
    lines.append("")
    lines.append(
        f"**Recommended:** keep {', '.join(reached['groups'])} digital "
        f"({reached['analog_fraction']:.1%} of the weights stay analog)"
        if reached else "**No placement tried reaches the target.**"
    )  # fmt: skip
    lines.append("")
    if reached:
        sheet.figures.append(
            (f"yield with {', '.join(reached['groups'])} digital",
             folder / reached["folder"] / "yield.png")
        )  # fmt: skip


def _map(sheet: Sheet, folder: Path) -> None:
    record = read_json(folder / "map.json")
    summary = read_json(folder / "summary.json")
    rows = record["rows"]
    if rows:
        _deployment(sheet, read_json(folder / rows[0] / "config.json"), folder)
    outer, inner = summary["outer"], summary["inner"]
    lines = sheet.lines
    lines += [f"## Design-space map: {outer['field']} x {inner['field']} ({folder.name})", ""]
    lines.append(f"Card {summary['card']}; {summary['chips']} common chips per cell; budget "
                 f"{summary['budget_points']:g} pt, yield {summary['target_yield']:.0%} at "
                 f"{summary['confidence']:.0%}. "
                 f"Rule: {summary['rule']}")  # fmt: skip
    lines.append("")
    for row in summary["certified_per_row"]:
        best = "none" if row["certified"] is None else f"{row['certified']:g} [{inner['unit']}]"
        lines.append(f"- {outer['field']} = {row['outer']:g} [{outer['unit']}]: certified "
                     f"{inner['field']} {best}")  # fmt: skip
    lines.append("")
    sheet.figures.append((f"map, {folder.name}", folder / "map.png"))


def write_spec_sheet(run_dirs: list[Path], out_dir: Path, title: str | None = None) -> list[Path]:
    """Write ``spec-sheet.md`` (figures copied beside it) and ``spec-sheet.pdf``."""
    if not run_dirs:
        raise CimsimError("the spec sheet needs at least one results folder")
    sheet = collect(run_dirs)  # every folder is read before anything is written
    missing = [str(p) for _, p in sheet.figures if not p.exists()]
    if missing:
        raise CimsimError(f"figure missing: {missing[0]} (redraw it with `cimsim plot`)")
    out_dir.mkdir(parents=True, exist_ok=True)
    heading = title or "cimsim spec sheet"
    text = [f"# {heading}", ""] + sheet.lines + _how(sheet)
    names = []
    for index, (caption, path) in enumerate(sheet.figures, start=1):
        name = f"figure-{index}.png"
        shutil.copyfile(path, out_dir / name)
        names.append(name)
        text.append(f"![{caption}]({name})")
        text.append("")
    write_atomic(out_dir / MARKDOWN, "\n".join(text) + "\n")
    _pdf(heading, sheet.lines + _how(sheet), [out_dir / n for n in names], out_dir / PDF)
    return [out_dir / MARKDOWN, out_dir / PDF]


def _how(sheet: Sheet) -> list[str]:
    lines = ["## How the numbers were computed", ""]
    lines.append("- A chip is one programming event of every analog tile (its seed is in each "
                 "result row); LoRA branches stay digital. Drops are paired: the same test "
                 "examples on chip and digital.")  # fmt: skip
    lines.append("- Yield intervals are exact binomial (Clopper-Pearson); certification tests "
                 "values in order and stops at the first whose lower bound misses the target "
                 "(fixed-sequence testing, no multiplicity correction needed).")  # fmt: skip
    lines.append("")
    lines += ["## Environment", ""]
    for folder, env in sheet.environments.items():
        packages = ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items())
        git = env.get("git") or {}
        lines.append(
            f"- {Path(folder).name}: Python {env.get('python')}, {packages}; git "
            f"{str(git.get('commit', ''))[:12]}{' (dirty)' if git.get('dirty') else ''}"
        )
    lines.append("")
    return lines


def _pdf(title: str, lines: list[str], figures: list[Path], path: Path) -> None:
    """The text from the top of page 1 (A4), the first figure below it when a third of a page
    is left, then one page per further figure."""
    import textwrap

    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure
    from matplotlib.image import imread

    def page() -> Figure:
        return Figure(figsize=(8.27, 11.69))

    with PdfPages(path, metadata={"Title": title, "CreationDate": None}) as pdf:
        figure = page()
        y = 0.965
        for piece in textwrap.wrap(title, 58):
            figure.text(0.06, y, piece, fontsize=14, weight="bold")
            y -= 0.025
        y -= 0.01
        for line, table in _aligned(lines):
            heading = line.startswith("## ")
            clean = line.removeprefix("## ").replace("**", "")
            size = 9.5 if heading else 6.8
            y -= 0.01 if heading else 0.0
            for piece in (
                textwrap.wrap(clean, 150, subsequent_indent="   ") if not table else [clean]
            ):
                if y < 0.05:
                    pdf.savefig(figure)
                    figure, y = page(), 0.965
                figure.text(
                    0.06, y, piece or " ", fontsize=size,
                    weight="bold" if heading or line.startswith("**") else "normal",
                    family="monospace" if table else "sans-serif",
                )  # fmt: skip
                y -= 0.0125 if not heading else 0.022
            if not line:
                y -= 0.004
        rest = list(figures)
        if rest and y > 0.36:
            height = min(y - 0.04, 0.45)
            ax = figure.add_axes((0.06, y - 0.02 - height, 0.88, height))
            ax.imshow(imread(rest.pop(0)))
            ax.axis("off")
        pdf.savefig(figure)
        for image in rest:
            figure = page()
            ax = figure.add_axes((0.05, 0.05, 0.9, 0.9))
            ax.imshow(imread(image))
            ax.axis("off")
            pdf.savefig(figure)


def _aligned(lines: list[str]) -> list[tuple[str, bool]]:
    """The lines with each Markdown table laid out in aligned columns (its rule dropped);
    True marks a table line."""
    out: list[tuple[str, bool]] = []
    index = 0
    while index < len(lines):
        if not lines[index].startswith("|"):
            out.append((lines[index], False))
            index += 1
            continue
        rows = []
        while index < len(lines) and lines[index].startswith("|"):
            cells = [c.strip() for c in lines[index].strip("|").split("|")]
            if not all(set(c) <= {"-"} for c in cells):
                rows.append(cells)
            index += 1
        widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(len(rows[0]))]
        for row in rows:
            out.append(("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)), True))
    return out
