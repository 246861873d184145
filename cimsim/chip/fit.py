"""Fit an ``rram`` device card to measured conductances (``cimsim devices fit``).

Input: a CSV file with a header row and one reading per row, units µS and seconds:

* ``target_us`` (or target, g_target, target_conductance): the conductance the device was
  programmed to;
* ``measured_us`` (or measured, g_measured, measured_conductance): what was read back;
* ``time_s`` (or time, t, t_s), optional: seconds after programming at the read;
* ``device``, optional: a device id, to follow each device over time.

Readings without a time, or at the earliest time t_1, are *programming* data; later ones are
*drift* data. The fit targets :class:`~cimsim.noise_models.conductance.RramNoise`:

1. Programming noise, ``std(g_t) = sum_k c_k x^k`` µS with ``x = g_t / g_max``: the readings are
   grouped by target level (at most 32 quantile bins when the targets are continuous); each
   level's std of ``measured - target`` is fitted by least squares weighted by its number of
   readings. The model clips conductances at 0 µS, so a reading of exactly 0 µS is a censored
   one: levels holding such readings use the censored-normal maximum-likelihood std (mean =
   target) instead of the sample std, which clipping would bias low.
2. Drift, ``g(t) = g(t_1) (t / t_1)^(-nu)``: with a ``device`` column, each device's nu is the
   least-squares slope of ``-log(g(t) / g(t_1))`` against ``log(t / t_1)``, and the card takes
   the mean and std of nu over devices. Without one, each target level and later time gives
   ``nu = -log(mean g(t) / mean g(t_1)) / log(t / t_1)``; nu_mean is their average weighted by
   readings, and nu_std is 0 (a device-to-device spread needs device ids). The card's
   ``drift_t0_s`` is t_1.

:func:`synthetic_measurements` simulates such a file from a card: a demo of the format, and the
fixture that checks the fit recovers the card's parameters.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cimsim.chip.cards import DeviceCard
from cimsim.chip.tile import TileConfig
from cimsim.core.errors import CimsimError
from cimsim.core.io import write_atomic
from cimsim.noise_models.conductance import RramNoise

MAX_BINS = 32

# Canonical column -> the header names (lower case) that mean it.
COLUMNS = {
    "target_us": ("target_us", "target", "g_target", "target_conductance"),
    "measured_us": ("measured_us", "measured", "g_measured", "measured_conductance"),
    "time_s": ("time_s", "time", "t", "t_s"),
    "device": ("device",),
}
REQUIRED = ("target_us", "measured_us")


@dataclasses.dataclass(frozen=True)
class LevelStd:
    """One row of the programming-noise table: a target level and its measured spread."""

    target_us: float
    """Mean target conductance of the level, µS."""
    std_us: float
    """Std of measured - target, µS."""
    n: int
    """Readings in the level."""


@dataclasses.dataclass(frozen=True)
class FitReport:
    """What the fit saw and how well the card describes it."""

    measurements: str
    """File name of the measurements."""
    n_programming: int
    """Readings at the first time (or without a time): the programming data."""
    n_drift: int
    """Readings at later times."""
    n_devices: int
    """Distinct device ids (0: no device column)."""
    times_s: tuple[float, ...]
    """Distinct read times, s (empty: no time column)."""
    levels: tuple[LevelStd, ...]
    """Programming-noise std per target level (or quantile bin)."""
    g_max_us: float
    """The conductance that x = g / g_max refers to, µS."""
    prog_coeffs_us: tuple[float, ...]
    """Fitted std polynomial in x, µS per power."""
    r_squared: float
    """Weighted R² of the std fit over the levels."""
    drift_nu_mean: float
    drift_nu_std: float
    drift_method: str
    """'per device', 'per target level', or 'no drift data'."""
    notes: tuple[str, ...] = ()

    def text(self) -> str:
        """A short human summary, with units."""
        g_max = self.g_max_us
        lines = [
            f"{self.measurements}: {self.n_programming} programming readings at "
            f"{len(self.levels)} target levels "
            f"({self.levels[0].target_us:.3g}..{self.levels[-1].target_us:.3g} µS)"
            + (f", {self.n_devices} devices" if self.n_devices else ""),
            f"programming noise std(g) = {_poly_text(self.prog_coeffs_us)} µS, "
            f"x = g / {g_max:g} µS: {_std_at(self.prog_coeffs_us, 0.0):.3g} µS at 0, "
            f"{_std_at(self.prog_coeffs_us, 0.5):.3g} µS at {g_max / 2:g} µS, "
            f"{_std_at(self.prog_coeffs_us, 1.0):.3g} µS at {g_max:g} µS "
            f"(R² {self.r_squared:.3f})",
        ]
        if self.drift_method == "no drift data":
            lines.append("drift: no drift data (one read time or none): drift_nu_mean = std = 0")
        else:
            later = self.times_s[1:]
            lines.append(
                f"drift nu = {self.drift_nu_mean:.4g} ± {self.drift_nu_std:.4g} "
                f"({self.drift_method}; {self.n_drift} readings at {len(later)} later times, "
                f"{later[0]:g}..{later[-1]:g} s, relative to t0 = {self.times_s[0]:g} s)"
            )
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def fit_card(
    measurements: Path,
    *,
    name: str | None = None,
    g_max_us: float | None = None,
    degree: int = 2,
    t0_s: float = 1.0,
) -> tuple[DeviceCard, FitReport]:
    """An ``rram`` card fitted to ``measurements`` (CSV, see the module docstring), and a report.

    ``g_max_us`` defaults to the largest target; ``degree`` is the std polynomial's; ``t0_s`` is
    the card's ``drift_t0_s`` when the file has no times (else the first read time).
    """
    where = f"measurements {measurements}"
    if not (isinstance(degree, int) and degree >= 0):
        raise CimsimError(f"{where}: degree must be a whole number >= 0, got {degree!r}")
    if not (math.isfinite(t0_s) and t0_s > 0):
        raise CimsimError(f"{where}: t0_s must be a finite number > 0, got {t0_s!r}")
    table = _read_table(measurements)
    target, measured, time = table.target_us, table.measured_us, table.time_s
    g_max = float(target.max()) if g_max_us is None else float(g_max_us)
    if not (math.isfinite(g_max) and g_max > 0):
        raise CimsimError(f"{where}: g_max must be a finite number > 0 µS, got {g_max!r}")

    times = tuple(float(t) for t in np.unique(time)) if time is not None else ()
    first = np.ones(len(target), dtype=bool) if time is None else time == times[0]
    notes: list[str] = []

    assign = _levels(target[first])
    level_first = assign(target[first], table.line[first], where)  # (programming rows,)
    levels = _level_stds(target[first], measured[first], level_first, notes)
    if len(levels) < degree + 1:
        raise CimsimError(
            f"{where}: {len(levels)} target level(s) with 2 or more readings; a degree-{degree} "
            f"fit needs at least {degree + 1}"
        )
    coeffs, r_squared = _fit_std(levels, g_max, degree, notes)

    if first.all():
        nu_mean, nu_std, method = 0.0, 0.0, "no drift data"
    elif table.device is not None:
        nu_mean, nu_std = _drift_per_device(table, times[0], where, notes)
        method = "per device"
    else:
        level = assign(target, table.line, where)  # (rows,) level of every reading
        nu_mean = _drift_per_level(table, level, times[0], where)
        nu_std, method = 0.0, "per target level"
        notes.append("no device column: drift_nu_std set to 0 (its spread needs device ids)")

    g_min = max(0.0, float(target.min()))
    try:
        noise = RramNoise(
            sigma=1.0,
            g_max_us=g_max,
            g_min_us=g_min,
            prog_coeffs_us=tuple(_round(c) for c in coeffs),
            drift_nu_mean=_round(nu_mean),
            drift_nu_std=_round(nu_std),
            drift_t0_s=times[0] if times else t0_s,
            drift_time_s=0.0,
            drift_compensation=True,
        )
    except ValueError as err:
        raise CimsimError(f"{where}: the fitted card is not valid: {err}") from None
    drift_text = f"drift nu {noise.drift_nu_mean:.3g} ± {noise.drift_nu_std:.3g}"
    card = DeviceCard(
        name=name or measurements.stem,
        summary=(
            f"RRAM cell fitted to {measurements.name}: programming std "
            f"{_std_at(noise.prog_coeffs_us, 0.0):.3g}..{_std_at(noise.prog_coeffs_us, 1.0):.3g}"
            f" µS over 0..{g_max:g} µS, {drift_text if times[1:] else 'no drift data'}"
        ),
        source=(
            f"fitted by cimsim devices fit from {measurements.name} ({len(target)} measurements)"
        ),
        noise_range="0.5..3",
        noise=noise,
        origin=str(measurements),
    )
    report = FitReport(
        measurements=measurements.name,
        n_programming=int(first.sum()),
        n_drift=int((~first).sum()),
        n_devices=len(set(table.device)) if table.device is not None else 0,
        times_s=times,
        levels=tuple(levels),
        g_max_us=g_max,
        prog_coeffs_us=noise.prog_coeffs_us,
        r_squared=r_squared,
        drift_nu_mean=noise.drift_nu_mean,
        drift_nu_std=noise.drift_nu_std,
        drift_method=method,
        notes=tuple(notes),
    )
    return card, report


# --- reading ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Table:
    target_us: np.ndarray
    measured_us: np.ndarray
    time_s: np.ndarray | None
    device: list[str] | None
    line: np.ndarray
    """Line number in the file of every reading, for error messages."""


def _read_table(path: Path) -> _Table:
    where = f"measurements {path}"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CimsimError(f"{where} does not exist") from None
    except UnicodeDecodeError as err:
        raise CimsimError(
            f"{where} is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset "
            f"{err.start}); expected a CSV file"
        ) from None
    except OSError as err:
        raise CimsimError(f"{where} cannot be read: {err.strerror}") from None
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise CimsimError(f"{where} is empty; expected a CSV header row with target_us, ...")
        index = _column_index(header, where)
        values: dict[str, list[Any]] = {column: [] for column in index}
        lines = []
        for row in reader:
            if not any(field.strip() for field in row):
                continue
            if len(row) != len(header):
                raise CimsimError(
                    f"{where}, line {reader.line_num}: {len(row)} fields, the header has "
                    f"{len(header)}"
                )
            for column, i in index.items():
                field = row[i].strip()
                if column == "device":
                    values[column].append(field)
                else:
                    values[column].append(_number(field, column, where, reader.line_num))
            lines.append(reader.line_num)
    except csv.Error as err:
        raise CimsimError(f"{where}, line {reader.line_num}: not valid CSV ({err})") from None
    if not lines:
        raise CimsimError(f"{where} has a header but no readings")
    return _Table(
        target_us=np.array(values["target_us"], dtype=np.float64),
        measured_us=np.array(values["measured_us"], dtype=np.float64),
        time_s=np.array(values["time_s"], dtype=np.float64) if "time_s" in values else None,
        device=values.get("device"),
        line=np.array(lines),
    )


def _column_index(header: list[str], where: str) -> dict[str, int]:
    """Canonical column -> position in ``header``; aliases match case-insensitively."""
    index: dict[str, int] = {}
    for i, raw in enumerate(header):
        key = raw.strip().lower()
        for column, aliases in COLUMNS.items():
            if key in aliases:
                if column in index:
                    raise CimsimError(
                        f"{where}: columns '{header[index[column]].strip()}' and '{raw.strip()}' "
                        f"both mean {column}"
                    )
                index[column] = i
    missing = [column for column in REQUIRED if column not in index]
    if missing:
        found = ", ".join(h.strip() for h in header)
        raise CimsimError(
            f"{where}: missing column(s) {', '.join(missing)} (found: {found}); "
            "expected target_us, measured_us and optionally time_s, device"
        )
    return index


def _number(field: str, column: str, where: str, line: int) -> float:
    try:
        value = float(field)
    except ValueError:
        raise CimsimError(f"{where}, line {line}: {column} is not a number: {field!r}") from None
    if not math.isfinite(value):
        raise CimsimError(f"{where}, line {line}: {column} is not finite: {field!r}")
    if column == "time_s" and value <= 0:
        raise CimsimError(f"{where}, line {line}: time_s must be > 0 s, got {field}")
    if column != "time_s" and value < 0:
        raise CimsimError(f"{where}, line {line}: {column} is a negative conductance: {field} µS")
    return value


# --- programming noise -----------------------------------------------------------------------


def _levels(targets: np.ndarray) -> Callable[[np.ndarray, np.ndarray, str], np.ndarray]:
    """A function mapping targets to level indices, learnt from the programming targets.

    Up to MAX_BINS distinct targets are levels of their own (a target outside them is an
    error); more are continuous and go into at most MAX_BINS quantile bins.
    """
    values = np.unique(targets)
    if len(values) <= MAX_BINS:

        def exact(t: np.ndarray, line: np.ndarray, where: str) -> np.ndarray:
            i = np.searchsorted(values, t).clip(max=len(values) - 1)
            unknown = np.flatnonzero(values[i] != t)
            if len(unknown):
                bad = unknown[0]
                raise CimsimError(
                    f"{where}, line {line[bad]}: target {t[bad]:g} µS has no reading at the first"
                    " time; drift needs every target level at 2 or more times"
                )
            return i

        return exact
    inner_edges = np.unique(np.quantile(targets, np.linspace(0, 1, MAX_BINS + 1))[1:-1])
    return lambda t, line, where: np.searchsorted(inner_edges, t, side="right")


def _level_stds(
    target: np.ndarray, measured: np.ndarray, level: np.ndarray, notes: list[str]
) -> list[LevelStd]:
    """The std of measured - target per level, for levels with 2 or more usable readings."""
    levels = []
    censored_levels = 0
    for i in np.unique(level):
        t, g = target[level == i], measured[level == i]
        censored = g == 0
        if (~censored).sum() < 2:
            continue
        if censored.any():
            std = _censored_std(g[~censored] - t[~censored], t[censored])
            censored_levels += 1
        else:
            std = float(np.std(g - t, ddof=1))
        levels.append(LevelStd(target_us=float(t.mean()), std_us=std, n=len(t)))
    if censored_levels:
        notes.append(
            f"{censored_levels} level(s) hold readings of 0 µS (clipped): their std is the "
            "censored-normal maximum-likelihood estimate"
        )
    return levels


def _censored_std(residual: np.ndarray, censored_targets: np.ndarray) -> float:
    """Maximum-likelihood s of ``g = max(0, t + s z)``, from residuals g - t > -t and the
    targets of the readings clipped to 0 (each contributes P(t + s z <= 0) = Phi(-t / s))."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_ndtr

    def negative_log_likelihood(s: float) -> float:
        uncensored = len(residual) * math.log(s) + float((residual**2).sum()) / (2 * s * s)
        return uncensored - float(log_ndtr(-censored_targets / s).sum())

    scale = math.sqrt(float((residual**2).mean())) + float(censored_targets.max()) + 1e-12
    result = minimize_scalar(
        negative_log_likelihood, bounds=(1e-6 * scale, 10 * scale), method="bounded"
    )
    return float(result.x)


def _fit_std(
    levels: list[LevelStd], g_max: float, degree: int, notes: list[str]
) -> tuple[tuple[float, ...], float]:
    """Least-squares std(x) = sum_k c_k x^k weighted by readings per level, and its R²."""
    x = np.array([level.target_us for level in levels]) / g_max
    std = np.array([level.std_us for level in levels])
    n = np.array([level.n for level in levels], dtype=np.float64)
    # polyfit weights multiply the residuals, so sqrt(n) minimises sum n (std - fit)^2.
    coeffs = np.polynomial.polynomial.polyfit(x, std, degree, w=np.sqrt(n))
    grid = np.linspace(0.0, 1.0, 1001)
    curve = np.polynomial.polynomial.polyval(grid, coeffs)
    if curve.min() < 0:
        below = grid[curve < 0]
        notes.append(
            f"the fitted std is negative for x in {below.min():.2f}..{below.max():.2f}; "
            "the rram model clips it to 0 µS there"
        )
    predicted = np.polynomial.polynomial.polyval(x, coeffs).clip(min=0.0)
    mean = np.average(std, weights=n)
    total = float((n * (std - mean) ** 2).sum())
    residual = float((n * (std - predicted) ** 2).sum())
    r_squared = 1.0 - residual / total if total > 0 else 1.0
    return tuple(float(c) for c in coeffs), r_squared


# --- drift -----------------------------------------------------------------------------------


def _drift_per_device(
    table: _Table, t_first: float, where: str, notes: list[str]
) -> tuple[float, float]:
    """Mean and std over devices of each device's least-squares nu."""
    assert table.time_s is not None and table.device is not None
    names, device = np.unique(np.array(table.device), return_inverse=True)  # (rows,) ids
    first = table.time_s == t_first
    seen = np.zeros(len(names), dtype=bool)
    for row in np.flatnonzero(first):
        if seen[device[row]]:
            raise CimsimError(
                f"{where}, line {table.line[row]}: device '{table.device[row]}' is read twice "
                f"at the first time, {t_first:g} s"
            )
        seen[device[row]] = True
    counts = np.bincount(device[first], minlength=len(names))
    later = ~first
    orphan = np.flatnonzero(later & (counts[device] == 0))
    if len(orphan):
        bad = orphan[0]
        raise CimsimError(
            f"{where}, line {table.line[bad]}: device '{table.device[bad]}' has no reading at the "
            f"first time, {t_first:g} s; drift needs each device at 2 or more times"
        )
    g_first = np.zeros(len(names))
    g_first[device[first]] = table.measured_us[first]
    d, g = device[later], table.measured_us[later]
    clipped = np.bincount(d, weights=(g <= 0).astype(float), minlength=len(names)) > 0
    usable_rows = (g > 0) & (g_first[d] > 0)
    log_time = np.log(table.time_s[later] / t_first)  # (later rows,)
    log_ratio = np.zeros_like(g)
    log_ratio[usable_rows] = np.log(g[usable_rows] / g_first[d][usable_rows])
    s_ty = np.bincount(d, weights=log_time * log_ratio, minlength=len(names))
    s_tt = np.bincount(d, weights=log_time**2, minlength=len(names))
    usable = (s_tt > 0) & ~clipped & (g_first > 0)
    if not usable.any():
        raise CimsimError(f"{where}: no device has positive readings at 2 or more times")
    nu = -s_ty[usable] / s_tt[usable]  # (devices,)
    skipped = int(((s_tt > 0) & ~usable).sum())
    if skipped:
        notes.append(f"{skipped} device(s) with a reading of 0 µS left out of the drift fit")
    return float(nu.mean()), float(nu.std(ddof=1)) if len(nu) > 1 else 0.0


def _drift_per_level(table: _Table, level: np.ndarray, t_first: float, where: str) -> float:
    """Average over (level, later time) of nu from the mean conductances, weighted by readings."""
    assert table.time_s is not None
    time, measured = table.time_s, table.measured_us
    estimates, weights = [], []
    for i in np.unique(level):
        at_level = level == i
        mean_first = measured[at_level & (time == t_first)].mean()
        for t in np.unique(time[at_level & (time > t_first)]):
            at_t = measured[at_level & (time == t)]
            if mean_first > 0 and at_t.mean() > 0:
                estimates.append(-math.log(at_t.mean() / mean_first) / math.log(t / t_first))
                weights.append(len(at_t))
    if not estimates:
        raise CimsimError(f"{where}: no target level has a positive mean conductance at 2 times")
    return float(np.average(estimates, weights=weights))


# --- cards and synthetic data ----------------------------------------------------------------


def write_card(card: DeviceCard, path: Path) -> None:
    """Write ``card`` as a TOML card file (atomically) that :func:`load_card` reads back equal."""
    raw = card.to_dict()
    lines = [f"{key} = {_toml(raw[key])}" for key in ("name", "summary", "source", "noise")]
    lines += ["", "[device]"]
    lines += [f"{key} = {_toml(value)}" for key, value in raw["device"].items()]
    if card.tile != TileConfig():
        lines += ["", "[tile]"]
        lines += [f"{key} = {_toml(value)}" for key, value in raw["tile"].items()]
    write_atomic(path, "\n".join(lines) + "\n")


def _toml(value: Any) -> str:
    """A TOML value: bools, ints, floats (repr), strings (basic, escaped), lists of these."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return '"' + "".join(_toml_char(c) for c in value) + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _toml_char(c: str) -> str:
    escapes = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
    if c in escapes:
        return escapes[c]
    if ord(c) < 0x20 or ord(c) == 0x7F:
        return f"\\u{ord(c):04x}"
    return c


def synthetic_measurements(
    card: DeviceCard,
    *,
    n_levels: int = 16,
    per_level: int = 2000,
    times_s: tuple[float, ...] = (),
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Readings of ``n_levels * per_level`` devices simulated with ``card`` (an ``rram`` card).

    Targets are evenly spaced in [g_min, g_max]; each device is programmed once,
    ``g = max(0, g_t + sigma std(g_t) z)``, and read at every time in ``times_s`` as
    ``g (t / t_0)^(-nu)`` (no drift before t_0), with its own ``nu ~ N(mean, std)`` clipped at 0.
    Rows are ``{device, target_us, measured_us, time_s}``; without ``times_s`` each device is read
    once, right after programming, and rows have no ``time_s``. Levels and stuck-at faults are
    not simulated (the fit does not model them).
    """
    noise = card.noise
    if not isinstance(noise, RramNoise):
        raise CimsimError(
            f"synthetic measurements need an rram card; '{card.name}' uses '{noise.name}'"
        )
    if n_levels < 2 or per_level < 1:
        raise CimsimError("synthetic measurements need n_levels >= 2 and per_level >= 1")
    if any(not (math.isfinite(t) and t > 0) for t in times_s):
        raise CimsimError(f"synthetic measurements: times must be > 0 s, got {times_s}")
    generator = torch.Generator().manual_seed(seed)
    levels = torch.linspace(noise.g_min_us, noise.g_max_us, n_levels, dtype=torch.float64)
    target = levels.repeat_interleave(per_level)  # (devices,), µS
    z = torch.randn(target.shape, generator=generator, dtype=torch.float64)
    programmed = (target + noise.sigma * noise.programming_std_us(target) * z).clamp(min=0.0)
    z_nu = torch.randn(target.shape, generator=generator, dtype=torch.float64)
    nu = (noise.drift_nu_mean + noise.drift_nu_std * z_nu).clamp(min=0.0)  # (devices,)
    reads: list[tuple[float | None, torch.Tensor]] = [(None, programmed)]
    if times_s:
        reads = [
            (t, programmed * (max(t, noise.drift_t0_s) / noise.drift_t0_s) ** (-nu))
            for t in times_s
        ]
    rows = []
    for t, measured in reads:
        for device, (g_t, g) in enumerate(zip(target.tolist(), measured.tolist(), strict=True)):
            row = {"device": device, "target_us": g_t, "measured_us": g}
            if t is not None:
                row["time_s"] = t
            rows.append(row)
    return rows


def write_measurements(rows: list[dict[str, Any]], path: Path) -> None:
    """Write readings as CSV (atomically), numbers to 7 significant digits."""
    if not rows:
        raise CimsimError(f"no measurements to write to {path}")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{v:.7g}" if isinstance(v, float) else v for k, v in row.items()})
    write_atomic(path, buffer.getvalue())


def _std_at(coeffs: tuple[float, ...], x: float) -> float:
    """The card's programming std at x = g / g_max, µS (clipped at 0 as the model does)."""
    return max(0.0, sum(c * x**k for k, c in enumerate(coeffs)))


def _poly_text(coeffs: tuple[float, ...]) -> str:
    terms = [f"{coeffs[0]:.4g}"]
    for k, c in enumerate(coeffs[1:], start=1):
        power = "x" if k == 1 else f"x^{k}"
        terms.append(f"{'-' if c < 0 else '+'} {abs(c):.4g} {power}")
    return " ".join(terms)


def _round(value: float) -> float:
    """Four significant digits: more than the fit resolves, and a card a person can read."""
    return float(f"{value:.4g}")
