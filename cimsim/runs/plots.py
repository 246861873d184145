"""Figures drawn from result tables alone: ``plot_*(frame, ax=None) -> Figure``.

No global pyplot state: figures are built on ``matplotlib.figure.Figure`` so library calls never
open windows or leak figures. Every figure names the swept field, its unit and the device card on
its x axis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cimsim.runs.statistics import digital_accuracy, summarize


def plot_sweep(
    points: pd.DataFrame,
    *,
    ax: Axes | None = None,
    x_label: str | None = None,
    chance: float | None = None,
    budget: float | None = 0.01,
    title: str | None = None,
) -> Figure:
    """Accuracy against the swept value: every chip instance a dot, the mean over chips a line,
    and a band from the lowest to the highest chip (it stays inside [0, 1], unlike mean ± std
    on a bimodal spread), one curve per method and card.

    The digital (noise-free) accuracy of each method is a dashed line; ``chance`` a dotted one;
    with a ``budget``, digital − budget is a dash-dotted line. Times spanning more than two
    decades are drawn on a log axis.
    """
    if ax is None:
        figure = Figure(figsize=(6.4, 4.8), layout="constrained")
        ax = figure.add_subplot()
    else:
        figure = ax.get_figure()  # type: ignore[assignment]
    summary = summarize(points)
    if summary.empty:
        raise ValueError("no noisy points to plot")
    noisy = points[points["card"] != "digital"]
    steps = summary["value"].drop_duplicates().sort_values().diff().dropna()
    jitter = 0.12 * float(steps.min()) if len(steps) else 0.0  # dots of one value side by side
    for (method, card), curve in summary.groupby(["method", "card"], sort=False):
        curve = curve.sort_values("value")
        n = int(curve["n"].min())
        name = method if summary["card"].nunique() == 1 else f"{method}, {card}"
        (line,) = ax.plot(
            curve["value"],
            curve["mean"],
            marker="o",
            markersize=4,
            label=f"{name}: mean over {n} chip instance{'s' if n != 1 else ''}",
        )
        colour = line.get_color()
        ax.fill_between(
            curve["value"],
            curve["min"],
            curve["max"],
            color=colour,
            alpha=0.15,
            label=f"{name}: lowest to highest chip",
        )
        chips = noisy[(noisy["method"] == method) & (noisy["card"] == card)]
        offsets = chips["instance"].astype(float)
        offsets = (offsets - offsets.mean()) / max(float(offsets.max() - offsets.min()), 1.0)
        ax.scatter(
            chips["value"].astype(float) + jitter * offsets.to_numpy(),
            chips["accuracy"].astype(float),
            s=9,
            color=colour,
            alpha=0.6,
            linewidths=0,
            label=f"{name}: one chip instance",
        )
        digital = digital_accuracy(points, str(method))
        if digital is None:
            continue
        ax.axhline(
            digital,
            color=colour,
            linestyle="--",
            linewidth=1,
            label=f"{method}: digital (noise-free) {digital:.3f}",
        )
        if budget is not None:
            ax.axhline(
                digital - budget,
                color=colour,
                linestyle="-.",
                linewidth=0.8,
                label=f"{method}: digital − {budget * 100:g} pt (budget)",
            )
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label=f"chance {chance:.2f}")
    varied, unit = summary["varied"].iloc[0], summary["value_unit"].iloc[0]
    values = summary["value"]
    if str(varied).endswith("_s") and values.min() > 0 and values.max() / values.min() > 100:
        ax.set_xscale("log")
    elif (values == values.round()).all() and values.max() >= 2:  # bits, levels, rows: no 4.5
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(x_label or f"{varied} [{unit}] ({summary['card'].iloc[0]} card)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    # Below the axes, so it never hides a curve whatever its shape.
    figure.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    return figure


def save_figure(figure: Figure, stem: Path) -> list[Path]:
    """Write ``stem.png`` (150 dpi) and ``stem.pdf``; returns the paths."""
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    figure.savefig(png, dpi=150)
    # No creation date: the same data redraws to the same bytes, so figures/ diffs stay quiet.
    figure.savefig(pdf, metadata={"CreationDate": None})
    return [png, pdf]


def plot_training(log: pd.DataFrame, *, ax: Axes | None = None, title: str | None = None) -> Figure:
    """Loss per training step: the total, and the ideal / noisy / KL parts where the method has
    them, with the validation loss where it was measured (the one before training at step -1).
    A log with an automatic rule's choices (auto-halora: ``lam``, ``kl_weight``, ``lr``) gets a
    second panel below, unless ``ax`` is given: the weights and what they follow (the ideal-pass
    accuracy, the noise's share of the noisy loss, the two gradients' cosine where the noisy one
    is projected), and the learning rate."""
    rule = "lam" in log and ax is None
    if ax is None:
        figure = Figure(figsize=(6.4, 6.4 if rule else 4.0), layout="constrained")
        axes = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2)) if rule else None
        ax = axes[0] if axes is not None else figure.add_subplot()
    else:
        figure = ax.get_figure()  # type: ignore[assignment]
    labels = {
        "loss": "total",
        "ideal": "ideal base",
        "noisy": "noisy base (fresh chip per step)",
        "kl": "KL(ideal || noisy)",
    }
    for column, label in labels.items():
        if column in log and log[column].notna().any():
            ax.plot(log["step"], log[column], label=label, linewidth=1)
    if "validation" in log and log["validation"].notna().any():
        seen = log[log["validation"].notna()]
        steps, values = seen["step"].tolist(), seen["validation"].tolist()
        if "start_validation" in log:  # the one before training, drawn before step 0
            steps, values = [-1, *steps], [log["start_validation"].iloc[0], *values]
        ax.plot(steps, values, "k.", label="validation (ideal + noisy) / 2")
    ax.set_ylabel("loss (cross-entropy; the total adds the regulariser)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    if not rule:
        ax.set_xlabel("training step")
        return figure
    assert axes is not None
    low = axes[1]
    low.plot(log["step"], log["window_accuracy"], label="ideal-pass accuracy a (window)")
    if "window_noisy" in log:
        share = _share(log["window_ideal"], log["window_noisy"])
        low.plot(log["step"], share, label="noise's share of the noisy loss (window)")
    if "validation_noisy" in log and log["validation_noisy"].notna().any():
        seen = log[log["validation_noisy"].notna()]
        held_out = _share(seen["validation_ideal"], seen["validation_noisy"])
        low.plot(seen["step"], held_out, "o", markersize=3, color="C1", fillstyle="none",
                 label="noise's share, validation examples and chip")  # fmt: skip
    low.plot(log["step"], log["lam"], "--", label="lam: noisy loss weight")
    if log["kl_weight"].max() > 0:
        low.plot(log["step"], log["kl_weight"] / log["kl_weight"].max(), ":",
                 label=f"KL weight / {log['kl_weight'].max():.2g}")  # fmt: skip
    bottom = 0.0
    if "cosine" in log and log["cosine"].notna().any():  # protect_digital's input
        low.plot(log["step"], log["cosine"], color="0.5", linewidth=0.8, marker=".",
                 label="cosine(ideal, noisy gradient); < 0: noisy one projected")  # fmt: skip
        low.axhline(0, color="0.5", linewidth=0.5)
        bottom = min(0.0, float(log["cosine"].min()) - 0.05)
    low.set_ylim(bottom, 1.05)
    low.set_ylabel("weight, accuracy" + (", cosine" if bottom < 0 else ""))
    low.set_xlabel("training step")
    low.grid(alpha=0.3)
    rate = low.twinx()
    rate.step(log["step"], log["lr"], "r-", where="post", linewidth=1, label="learning rate")
    rate.set_yscale("log")
    rate.set_ylabel("learning rate", color="r")
    halved = log["step"][log["halved"] == 1.0] if "halved" in log else log["step"][:0]
    for step in halved:
        low.axvline(step, color="r", alpha=0.3, linewidth=0.8)
    handles = low.get_legend_handles_labels()
    extra = rate.get_legend_handles_labels()
    # below the panel: inside, it hid the lines it names
    low.legend(handles[0] + extra[0], handles[1] + extra[1], fontsize=7, ncols=2,
               loc="upper center", bbox_to_anchor=(0.5, -0.22))  # fmt: skip
    return figure


def _share(ideal: pd.Series, noisy: pd.Series) -> pd.Series:
    """The noise's share of the noisy loss, ``1 - ideal / noisy``, at least 0 (lam's rule
    weighs half of it: :func:`cimsim.adapters.auto.share_weights`)."""
    return (1 - ideal / noisy).clip(lower=0)


def plot_yield(
    yields: list[Any],
    *,
    field: str,
    unit: str,
    target: float,
    certified: float | None,
    confidence: float,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Yield against the field: the fraction of chips within budget with its Clopper-Pearson
    band, the one-sided lower bound that certification compares, the target yield, and the
    certified tolerance (``yields``: :class:`cimsim.runs.signoff.YieldPoint` in any order)."""
    if ax is None:
        figure = Figure(figsize=(6.4, 4.8), layout="constrained")
        ax = figure.add_subplot()
    else:
        figure = ax.get_figure()  # type: ignore[assignment]
    points = sorted(yields, key=lambda y: y.value)
    x = [y.value for y in points]
    chips = max((y.chips for y in points), default=0)
    (line,) = ax.plot(
        x, [y.estimate for y in points], marker="o", markersize=4,
        label=f"yield: chips within budget / {chips} chips",
    )  # fmt: skip
    ax.fill_between(
        x, [y.low for y in points], [y.high for y in points], color=line.get_color(), alpha=0.2,
        label=f"{confidence:.0%} Clopper-Pearson interval",
    )  # fmt: skip
    ax.plot(
        x, [y.lower_bound for y in points], linestyle="none", marker="^", markersize=5,
        color=line.get_color(), label=f"one-sided {confidence:.0%} lower bound",
    )  # fmt: skip
    ax.axhline(target, color="black", linestyle="--", linewidth=1, label=f"target {target:.0%}")
    symbol = "σ" if field == "sigma" else field
    if certified is not None:
        ax.axvline(
            certified, color="tab:red", linestyle=":", linewidth=1.5,
            label=f"certified tolerance {symbol} = {certified:.4g}",
        )  # fmt: skip
    if all(v == round(v) for v in x) and x and max(x) >= 2:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"{symbol} [{unit}]")
    ax.set_ylabel("yield (fraction of chips)")
    ax.set_ylim(-0.02, 1.05)
    ax.grid(alpha=0.3)
    figure.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    return figure


def plot_sensitivity(table: pd.DataFrame, frame: pd.DataFrame, summary: dict[str, Any]) -> Figure:
    """Per value of the field, one panel: each group's accuracy drop when only it is analog
    (bars: mean over chips; dots: chips) and the recovery when only it is digital, ranked by
    drop; with a module grouping a second panel maps the drop over blocks x module kinds."""
    values = sorted(table["value"].unique()) if len(table) else []
    modules = table[table["grouping"] == "module"] if len(table) else table
    columns = 2 if len(modules) else 1
    rows = max(len(values), 1)
    groups = table[table["grouping"] != "module"] if len(modules) else table
    height = max(3.0, 0.28 * (len(groups) / max(len(values), 1)) + 1.6)
    figure = Figure(figsize=(6.2 * columns, height * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    unit = summary.get("unit") or ""
    for row, value in enumerate(values):
        ax = axes[row][0]
        part = groups[groups["value"] == value].sort_values("drop")
        if not len(part):
            part = modules[modules["value"] == value].nlargest(12, "drop").sort_values("drop")
        labels = [
            f"{g}" if k == "re" else f"{g}"
            for k, g in zip(part["grouping"], part["group"], strict=True)
        ]
        y = range(len(part))
        ax.barh([i + 0.2 for i in y], 100 * part["drop"], height=0.4, color="tab:red",
                label="drop: only this group analog")  # fmt: skip
        ax.barh([i - 0.2 for i in y], 100 * part["recovery"], height=0.4, color="tab:green",
                label="recovery: only this group digital")  # fmt: skip
        chips = frame[(frame["value"] == value) & frame["mode"].isin(["only", "except"])]
        for i, (grouping, group) in enumerate(zip(part["grouping"], part["group"], strict=True)):
            key = f"{grouping}:{group}"
            only = chips[(chips["group"] == key) & (chips["mode"] == "only")]
            rest = chips[(chips["group"] == key) & (chips["mode"] == "except")]
            digital = summary["digital_accuracy"]
            ax.plot(100 * (digital - only["accuracy"]), [i + 0.2] * len(only), "k.", ms=3)
            ax.plot(100 * (rest["accuracy"] - rest["all_accuracy"]), [i - 0.2] * len(rest),
                    "k.", ms=3)  # fmt: skip
        ax.set_yticks(list(y), labels, fontsize=8)
        ax.axvline(0, color="0.3", lw=0.8)
        ax.set_xlabel("accuracy points (dots: chips)")
        ax.set_title(f"{summary.get('varied')} = {value:g} {unit} ({summary.get('card')} card)",
                     fontsize=10)  # fmt: skip
        ax.grid(axis="x", alpha=0.3)
        if row == 0:
            ax.legend(fontsize=7, loc="lower right")
        if columns == 2:
            heat = modules[modules["value"] == value]
            grid = heat.pivot_table(index="kind", columns="block", values="drop", aggfunc="mean")
            ax2 = axes[row][1]
            image = ax2.imshow(100 * grid.to_numpy(), cmap="Reds", aspect="auto", vmin=0)
            ax2.set_xticks(range(grid.shape[1]), [str(b) for b in grid.columns])
            ax2.set_yticks(range(grid.shape[0]), list(grid.index))
            ax2.set_xlabel("block")
            ax2.set_title("drop (points) with only that module analog", fontsize=10)
            figure.colorbar(image, ax=ax2, label="points")
    figure.suptitle(
        f"which layers cost accuracy: {summary.get('noise_model')} noise, digital "
        f"{summary['digital_accuracy']:.3f}",
        fontsize=11,
    )
    return figure


def plot_map(table: pd.DataFrame, summary: dict[str, Any]) -> Figure:
    """The yield over two fields: a heatmap (outer field up, inner across), each cell's passes
    / chips written in it, certified cells (lower bound at or above the target) outlined, and
    the contour where the yield crosses the target."""
    import numpy as np

    outer, inner = summary["outer"], summary["inner"]
    grid = table.pivot_table(index="outer", columns="inner", values="yield", aggfunc="first")
    grid = grid.sort_index().sort_index(axis=1)
    figure = Figure(figsize=(7.0, 1.2 + 0.55 * max(len(grid), 3)), layout="constrained")
    ax = figure.subplots()
    image = ax.imshow(grid.to_numpy(), cmap="RdYlGn", vmin=0, vmax=1, aspect="auto", origin="lower")
    cells = table.set_index(["outer", "inner"])
    for i, o in enumerate(grid.index):
        for j, v in enumerate(grid.columns):
            if (o, v) not in cells.index:
                continue
            cell = cells.loc[(o, v)]
            ax.text(j, i, f"{int(cell['passes'])}/{int(cell['chips'])}", ha="center",
                    va="center", fontsize=7)  # fmt: skip
            if bool(cell["certified"]):
                ax.add_patch(_cell_outline(j, i))
    if grid.shape[0] > 1 and grid.shape[1] > 1:
        values = np.nan_to_num(grid.to_numpy(dtype=float), nan=0.0)
        ax.contour(values, levels=[summary["target_yield"]], colors="k", linewidths=1.5)
    ax.set_xticks(range(grid.shape[1]), [f"{v:g}" for v in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [f"{o:g}" for o in grid.index])
    ax.set_xlabel(f"{inner['field']} [{inner['unit']}]")
    ax.set_ylabel(f"{outer['field']} [{outer['unit']}]")
    figure.colorbar(image, ax=ax, label="yield (chips within budget)")
    ax.set_title(
        f"{summary['card']} card: chips within {summary['budget_points']:g} pt of digital; "
        f"contour: yield {summary['target_yield']:.0%}; outlined: certified at "
        f"{summary['confidence']:.0%}",
        fontsize=9,
    )
    return figure


def _cell_outline(x: int, y: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="k", linewidth=1.2)
