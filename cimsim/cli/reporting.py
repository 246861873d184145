"""Running a sweep, comparison, sign-off or continual run behind progress bars and printing what
it found: the one place the commands that run (sweep, compare, tolerance, continual, run) share
their output."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from cimsim.cli.common import EXIT_INTERRUPTED, progress_bars, rich_console


@contextlib.contextmanager
def interruptible(out_dir: Path, what: str) -> Iterator[Any]:
    """Progress bars for a run into ``out_dir``; Ctrl-C (or SIGINT) ends it with one line that
    says how many finished ``what`` are kept, and exit code 130."""
    from cimsim.runs.results import read_points

    try:
        with progress_bars() as progress:
            yield progress
    except KeyboardInterrupt:
        files = out_dir.glob("**/points.jsonl")
        saved = sum(len(read_points(path, required=("card",))) for path in files)
        print(
            f"cimsim: interrupted; {saved} finished {what} are saved in {out_dir}; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None


def run_sweep_and_report(
    config: Any,
    card: Any,
    out_dir: Path,
    cache_dir: Path,
    budget: float,
    methods: tuple[str, ...] | None = None,
    executor: Any = None,
) -> None:
    """Run the sweep (or, with ``methods``, the comparison) on ``card`` (``config``'s card,
    resolved once by the caller) behind progress bars, then report."""
    from cimsim.runs.compare import run_compare, write_comparison
    from cimsim.runs.report import write_report
    from cimsim.runs.sweep import run_sweep

    with interruptible(out_dir, "points") as progress:
        if methods is None:
            run_sweep(
                config, out_dir, cache_dir=cache_dir, card=card, progress=progress,
                executor=executor,
            )  # fmt: skip
        else:
            run_compare(
                config, methods, out_dir, cache_dir=cache_dir, card=card, progress=progress,
                executor=executor,
            )  # fmt: skip
    if methods is None:
        print_report(write_report(out_dir, budget=budget), out_dir)
        return
    for method in methods:  # each method's own folder gets its summary and figure too
        write_report(out_dir / method, budget=budget)
    paths = write_comparison(out_dir, methods, budget)
    rich_console().print((out_dir / "comparison.md").read_text())
    for path in paths:
        rich_console().print(f"written: {path}")


def print_report(report: Any, out_dir: Path) -> None:
    import pandas as pd
    from rich.table import Table

    symbol = "σ" if report.varied == "sigma" else report.varied
    table = Table(title=f"accuracy over chip instances ({symbol} in {report.unit})")
    for column in ("method", "card", symbol, "mean", "± std", "min", "max", "n"):
        table.add_column(column, justify="right")
    for row in report.summary.itertuples():
        std = "–" if pd.isna(row.std) else f"{row.std:.3f}"  # NaN or NA with one instance
        table.add_row(
            row.method,
            row.card,
            f"{row.value:.4g}",
            f"{row.mean:.3f}",
            std,
            f"{row.min:.3f}",
            f"{row.max:.3f}",
            str(row.n),
        )
    console = rich_console()
    console.print(table)
    if report.digital is not None:
        console.print(f"digital (noise-free) accuracy: {report.digital:.3f}")
    if report.yields and report.rule is not None:
        console.print(f"pass rule: {report.rule.text()}")
        parts = [
            f"{y.value:.4g}: {y.passes}/{y.chips} ({y.low:.2f}–{y.high:.2f})" for y in report.yields
        ]
        console.print(
            f"chips within budget per {symbol} [{report.unit}] (yield, "
            f"{report.rule.confidence:.0%} Clopper-Pearson interval): " + ", ".join(parts)
        )
        console.print("sign-off with enough chips: cimsim tolerance (docs/signoff.md)")
    elif report.tolerance is not None:
        console.print(f"tolerance: {report.tolerance.text(report.unit)}")
    console.print(f"results: {out_dir}/results.csv, summary.csv, config.json")
    for path in report.figures:
        console.print(f"figure:  {path}")


def run_continual_and_report(
    config: Any, out_dir: Path, cache_dir: Path, executor: Any = None
) -> None:
    """Run (or resume) behind progress bars, then print the AP/FT summary."""
    import pandas as pd

    from cimsim.continual.runner import run_continual

    with interruptible(out_dir, "evaluations") as progress:
        run_continual(config, out_dir, cache_dir=cache_dir, progress=progress, executor=executor)
    summary = pd.read_csv(out_dir / "summary.csv")
    console = rich_console()
    console.print(
        "AP (mean final accuracy) and FT (forgetting), mean ± std over chips and task orders; "
        "sigma in the card's unit:"
    )
    console.print(summary.round(3).to_string(index=False))
    for name in ("results.csv", "metrics.csv", "summary.csv", "matrices.png", "ap_ft.png"):
        console.print(f"written: {out_dir / name}")


def run_harness_and_report(config: Any, card: Any, out_dir: Path, cache_dir: Path) -> None:
    """Run (or resume) lm-eval's tasks over the grid behind progress bars; print the summary."""
    import pandas as pd

    from cimsim.runs.harness import run_harness, write_harness_report

    with interruptible(out_dir, "rows") as progress:
        run_harness(config, out_dir, cache_dir=cache_dir, card=card, progress=progress)
    paths = write_harness_report(out_dir)
    points = pd.read_csv(out_dir / "results.csv")
    digital = points[points["card"] == "digital"].set_index(["task", "metric"])["accuracy"]
    summary = pd.read_csv(out_dir / "summary.csv")
    console = rich_console()
    console.print(f"lm-eval over {summary['varied'].iloc[0]} [{summary['value_unit'].iloc[0]}]:")
    for _, row in summary.iterrows():
        task, _, metric = str(row["method"]).partition(" ")
        console.print(
            f"  {task} {metric} at {row['value']:g}: {row['mean']:.3f} ± {row['std']:.3f} "
            f"over {row['n']} chips (digital {digital.get((task, metric), float('nan')):.3f})"
        )
    for path in paths:
        console.print(f"written: {path}")


def run_tolerance_and_report(
    config: Any, card: Any, out_dir: Path, cache_dir: Path, executor: Any = None
) -> Any:
    """Run (or resume) the sign-off behind progress bars, print its rule, yield table and
    certified tolerance; returns the report."""
    from cimsim.runs.tolerance import run_tolerance, write_tolerance_report

    with interruptible(out_dir, "decisions") as progress:
        run_tolerance(
            config, out_dir, cache_dir=cache_dir, card=card, progress=progress, executor=executor
        )
    report = write_tolerance_report(out_dir)
    print_tolerance(report, out_dir)
    return report


def run_sensitivity_and_report(config: Any, card: Any, out_dir: Path, cache_dir: Path) -> Any:
    """Run (or resume) the sensitivity analysis behind progress bars; print the ranking per
    value and the diagnosis of the chips that miss the budget; returns the report."""
    from rich.table import Table

    from cimsim.runs.sensitivity import run_sensitivity, write_sensitivity_report

    with interruptible(out_dir, "points") as progress:
        run_sensitivity(config, out_dir, cache_dir=cache_dir, card=card, progress=progress)
    report = write_sensitivity_report(out_dir)
    summary, console = report.summary, rich_console()
    unit = summary["unit"]
    console.print(f"digital accuracy {summary['digital_accuracy']:.3f}; {summary['rule']}")
    for value, part in report.table.groupby("value", sort=True):
        chips = next(v for v in summary["values"] if v["value"] == value)
        accuracies = ", ".join(f"{a:.3f}" for a in chips["all_analog_accuracy"])
        table = Table(title=f"{summary['varied']} = {value:g} [{unit}]: all analog {accuracies}")
        for column in ("group", "drop (pt)", "± sd", "recovery (pt)", "± sd", "analog weights"):
            table.add_column(column, justify="right")
        for row in part.itertuples():
            table.add_row(
                f"{row.grouping}:{row.group}", f"{100 * row.drop:.1f}",
                f"{100 * row.drop_std:.1f}", f"{100 * row.recovery:.1f}",
                f"{100 * row.recovery_std:.1f}", f"{row.weight_fraction:.1%}",
            )  # fmt: skip
        console.print(table)
    for chip in summary["diagnosis"]:
        restored = ", ".join(chip["restored_by"]) or "no single group"
        console.print(
            f"chip {chip['instance']} at {chip['value']:g}: {chip['all_analog_accuracy']:.3f} "
            f"all analog; a redraw of {restored} brings it within the budget "
            f"(best: {chip['best']}, {chip['best_accuracy']:.3f})"
        )
    console.print(f"results: {out_dir / 'table.csv'}, diagnosis.csv, summary.json, results.csv")
    for path in report.figures:
        console.print(f"figure:  {path}")
    return report


def run_placement_and_report(
    config: Any,
    card: Any,
    out_dir: Path,
    cache_dir: Path,
    sensitivity_dir: Path,
    target: float,
    grouping: str,
    max_groups: int,
) -> bool:
    """Run the greedy placement (one sign-off per step) behind progress bars and print its
    steps; True when a step reached the target."""
    from rich.table import Table

    from cimsim.runs.placement import run_placement

    with interruptible(out_dir, "decisions") as progress:
        record = run_placement(
            config, sensitivity_dir, target, out_dir, cache_dir=cache_dir, grouping=grouping,
            max_groups=max_groups, card=card, progress=progress,
        )  # fmt: skip
    console = rich_console()
    table = Table(
        title=f"greedy placement towards {target:g} ({grouping} groups, {record['rule']})"
    )
    for column in ("digital groups", "analog fraction", "certified", "folder"):
        table.add_column(column, justify="right")
    for step in record["steps"]:
        certified = step["certified_value"]
        table.add_row(
            ", ".join(step["groups"]), f"{step['analog_fraction']:.1%}",
            "none" if certified is None else f"{certified:.4g}", step["folder"],
        )  # fmt: skip
    console.print(table)
    reached = record["reached"]
    if reached is None:
        console.print(f"no placement of up to {len(record['steps'])} groups reaches {target:g}")
    else:
        console.print(
            f"recommended: keep {', '.join(reached['groups'])} digital "
            f"({reached['analog_fraction']:.1%} of the weights stay analog): certified "
            f"{reached['certified_value']:.4g}"
        )
    console.print(f"record: {out_dir / 'placement.json'}")
    return reached is not None


def run_map_and_report(
    config: Any, card: Any, outer: str, values: Any, out_dir: Path, cache_dir: Path
) -> Any:
    """Run (or resume) a design-space map (one sign-off per outer value) and print its yield
    grid and each row's certified value; returns the report."""
    from rich.table import Table

    from cimsim.runs.maps import run_map, write_map_report

    with interruptible(out_dir, "decisions") as progress:
        run_map(config, outer, tuple(values), out_dir, cache_dir=cache_dir, card=card,
                progress=progress)  # fmt: skip
    report = write_map_report(out_dir)
    summary, console = report.summary, rich_console()
    inner = summary["inner"]
    console.print(f"rule: {summary['rule']}")
    grid = report.table.pivot_table(index="outer", columns="inner", values="passes")
    table = Table(
        title=f"chips passing (of {summary['chips']}): {outer} [{summary['outer']['unit']}] "
        f"down, {inner['field']} [{inner['unit']}] across; * certified"
    )
    table.add_column(outer, justify="right")
    for column in grid.columns:
        table.add_column(f"{column:g}", justify="right")
    cells = report.table.set_index(["outer", "inner"])
    for value, row in grid.iterrows():
        marks = [
            f"{int(n)}{'*' if cells.loc[(value, c), 'certified'] else ''}" for c, n in row.items()
        ]
        table.add_row(f"{value:g}", *marks)
    console.print(table)
    for row in summary["certified_per_row"]:
        best = "none" if row["certified"] is None else f"{row['certified']:.4g}"
        console.print(f"{outer} = {row['outer']:g}: certified {inner['field']} {best}")
    console.print(f"results: {out_dir / 'map.csv'}, summary.json, one sign-off per row")
    for path in report.figures:
        console.print(f"figure:  {path}")
    return report


def print_tolerance(report: Any, out_dir: Path) -> None:
    """The rule, the yield per value, the certified tolerance or why there is none."""
    from rich.table import Table

    summary = report.summary
    symbol = "σ" if report.field == "sigma" else report.field
    console = rich_console()
    console.print(f"rule: {report.rule.text()}")
    table = Table(title=f"yield per {symbol} [{report.unit}] ({summary['chips_mode']} chips)")
    confidence = f"{summary['confidence']:.0%}"
    for column in (symbol, "pass", "chips", "yield", f"{confidence} interval", "lower bound"):
        table.add_column(column, justify="right")
    for y in report.yields:
        table.add_row(
            f"{y.value:.4g}", str(y.passes), str(y.chips), f"{y.estimate:.3f}",
            f"{y.low:.3f}–{y.high:.3f}", f"{y.lower_bound:.3f}",
        )  # fmt: skip
    console.print(table)
    if report.certified is not None:
        last = report.certified is report.yields[-1]
        relation = ("≤" if report.larger_is_better else "≥") if last else "="
        console.print(
            f"certified tolerance: {symbol} {relation} {report.certified.value:.4g} "
            f"[{report.unit}]: yield ≥ {summary['target_yield']:.0%} at {confidence} confidence "
            f"(lower bound {report.certified.lower_bound:.3f})"
            + (" (every grid value is certified)" if last else "")
        )
    else:
        console.print("certified tolerance: none on this grid")
    for reason in report.reasons:
        console.print(f"  {reason}")
    for row in report.percentiles:
        console.print(
            f"{100 * summary['percentile']:g}th-percentile chip at "
            f"{symbol} {row['value']:.4g}: {row['accuracy']:.3f} ({confidence} interval "
            f"{row['low']:.3f}–{row['high']:.3f}, {row['chips']} chips)"
        )
    console.print(
        f"evaluated {summary['example_evaluations']} examples in {summary['decisions']} chip "
        f"decisions (the full grid: {summary['full_grid_example_evaluations']})"
        + (
            f"; the last session ran {summary['last_session_seconds']} s"
            if summary.get("last_session_seconds") is not None
            else ""
        )
    )
    console.print(f"results: {out_dir}/yield.csv, summary.json, results.csv")
    for path in report.figures:
        console.print(f"figure:  {path}")


def report_kit(kit: Path) -> None:
    """The kit's digital checks, as a table on stdout."""
    from cimsim.core.io import read_json
    from cimsim.watermark.kit import INDEX

    checks = read_json(kit / INDEX)["checks"]
    console = rich_console()
    unmarked = checks["unmarked"]
    console.print(
        f"unmarked model: accuracy {unmarked['accuracy']:.3f}, reads {unmarked['read']}, "
        f"verifies {unmarked['verifies']} of {len(checks['signatures'])} signatures"
    )
    for row in checks["signatures"]:
        for variant in ("plain", "obfuscated"):
            if variant in row:
                cell = row[variant]
                console.print(
                    f"{row['signature']} {variant:>10}: accuracy {cell['accuracy']:.3f}, "
                    f"reads {cell['read']}, verified {cell['verified']}, "
                    f"verifies {cell['verifies_others']} other signatures"
                )
    console.print(
        f"a model without the key reads a given signature with probability <= "
        f"{checks['false_positive_bound']:.2g} (over the key)"
    )
    console.print(f"written: {kit}")


def report_sweep(out_dir: Path) -> None:
    from cimsim.core.io import read_json

    facts = read_json(out_dir / "summary.json")
    console = rich_console()
    unit = facts["unit"]
    for variant, entry in facts["by_variant"].items():
        for what, numbers in entry.items():
            most = numbers["all_chips_up_to"]
            line = f"{variant:>10} {what:>13}: every chip passes up to σ {most} [{unit}]"
            if "certified" in numbers:
                line += f"; certified σ at yield {facts['target_yield']:g}: {numbers['certified']}"
            console.print(line)
    console.print(f"written: {out_dir}")
