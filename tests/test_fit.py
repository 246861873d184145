"""Device-card fitting: recovery of known cards from simulated readings, card files, error paths."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from cimsim.chip.cards import DeviceCard, load_card
from cimsim.chip.fit import (
    fit_card,
    synthetic_measurements,
    write_card,
    write_measurements,
)
from cimsim.chip.tile import TileConfig
from cimsim.core.errors import CimsimError


def _rram(**fields: Any) -> DeviceCard:
    card = load_card("rram")
    return dataclasses.replace(card, noise=dataclasses.replace(card.noise, **fields))


def _std_us(coeffs: tuple[float, ...], x: float) -> float:
    return max(0.0, sum(c * x**k for k, c in enumerate(coeffs)))


# (card, read times, keep the device column)
KNOWN = {
    "drift-per-device": (
        _rram(
            prog_coeffs_us=(0.8, 1.2, -0.5),
            g_max_us=40.0,
            drift_nu_mean=0.03,
            drift_nu_std=0.01,
            drift_t0_s=1.0,
        ),
        (1.0, 60.0, 3600.0, 86400.0),
        True,
    ),
    "drift-per-level": (
        _rram(
            prog_coeffs_us=(0.5, 0.3),
            g_max_us=25.0,
            g_min_us=2.0,
            drift_nu_mean=0.01,
            drift_nu_std=0.005,
            drift_t0_s=10.0,
        ),
        (10.0, 1000.0, 1e5),
        False,
    ),
    "programming-only": (_rram(prog_coeffs_us=(1.0, 0.6)), (), True),
}


@pytest.mark.parametrize("case", list(KNOWN))
def test_fit_recovers_the_card_that_simulated_the_readings(case: str, tmp_path: Path) -> None:
    card, times, with_devices = KNOWN[case]
    rows = synthetic_measurements(card, per_level=1000, times_s=times, seed=1)
    if not with_devices:
        rows = [{k: v for k, v in row.items() if k != "device"} for row in rows]
    path = tmp_path / f"{case}.csv"
    write_measurements(rows, path)

    fitted, report = fit_card(path)

    true, fit = card.noise, fitted.noise
    assert fit.name == "rram" and fit.sigma == 1.0
    assert (fit.g_max_us, fit.g_min_us) == (true.g_max_us, true.g_min_us)
    # 16 levels x 1000 readings: over 8 seeds the curve's error had s.d. 1.8% at x = 0 (an
    # extrapolation when g_min > 0), under 1.2% elsewhere; 10% is over 5 s.d.
    for x in (0.0, 0.5, 1.0):
        fitted_std = _std_us(fit.prog_coeffs_us, x)
        assert fitted_std == pytest.approx(_std_us(true.prog_coeffs_us, x), rel=0.1), x
    assert len(report.levels) == 16 and report.n_programming == 16_000
    assert report.n_drift == 16_000 * max(len(times) - 1, 0)
    if not times:
        assert (fit.drift_nu_mean, fit.drift_nu_std) == (0.0, 0.0)
        assert "no drift data" in report.text()
        return
    assert fit.drift_t0_s == times[0]
    assert fit.drift_nu_mean == pytest.approx(true.drift_nu_mean, rel=0.1)
    if with_devices:
        assert fit.drift_nu_std == pytest.approx(true.drift_nu_std, rel=0.1)
        assert report.n_devices == 16_000
    else:
        assert fit.drift_nu_std == 0.0
        assert "no device column" in report.text()


def test_report_text_gives_units_and_the_fit_quality(tmp_path: Path) -> None:
    card, times, _ = KNOWN["drift-per-device"]
    path = tmp_path / "m.csv"
    write_measurements(synthetic_measurements(card, per_level=200, times_s=times), path)
    fitted, report = fit_card(path, name="chip-7")
    text = report.text()
    assert "µS" in text and " s" in text and "R²" in text and "m.csv" in text
    assert fitted.name == "chip-7"
    assert fitted.source == "fitted by cimsim devices fit from m.csv (12800 measurements)"
    assert report.r_squared > 0.9


def test_aliases_and_case_of_column_names_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    lines = ["Target,G_Measured,T"] + [f"{t},{t + d},1" for t in (1, 2, 3) for d in (-0.1, 0.1)]
    path.write_text("\n".join(lines) + "\n")
    card, report = fit_card(path, degree=1)
    assert report.n_programming == 6 and report.times_s == (1.0,)
    assert card.noise.prog_coeffs_us[0] == pytest.approx(0.1 * 2**0.5, rel=1e-3)


@pytest.mark.parametrize("name", ["fitted", "rram", "rram-macro"])
def test_written_card_loads_back_equal_and_deploys(name: str, tmp_path: Path) -> None:
    if name == "fitted":
        card, times, _ = KNOWN["drift-per-device"]
        measurements = tmp_path / "m.csv"
        write_measurements(synthetic_measurements(card, per_level=100, times_s=times), measurements)
        card, _ = fit_card(measurements)
    else:
        card = load_card(name)
    # Strings that need TOML escapes, and a non-default tile, must survive too.
    card = dataclasses.replace(card, summary='a "quoted" \\ path\tand µS\nsecond line')
    path = tmp_path / "card.toml"
    write_card(card, path)

    loaded = load_card(str(path))

    assert loaded.to_dict() == card.to_dict()
    assert ("[tile]" in path.read_text()) == (card.tile != TileConfig())
    weight = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    programmed = loaded.noise.program(weight, torch.Generator().manual_seed(0))
    assert programmed.shape == weight.shape and torch.isfinite(programmed).all()


def test_synthetic_measurements_follow_the_card(tmp_path: Path) -> None:
    card, _, _ = KNOWN["drift-per-device"]
    rows = synthetic_measurements(card, n_levels=4, per_level=3, times_s=(1.0, 100.0))
    assert len(rows) == 4 * 3 * 2
    assert set(rows[0]) == {"device", "target_us", "measured_us", "time_s"}
    assert sorted({row["target_us"] for row in rows}) == pytest.approx([0, 40 / 3, 80 / 3, 40])
    assert all(row["measured_us"] >= 0 for row in rows)
    # Drift shrinks every device's conductance between its two reads (nu >= 0).
    first = {row["device"]: row["measured_us"] for row in rows if row["time_s"] == 1.0}
    assert all(row["measured_us"] <= first[row["device"]] for row in rows)
    with pytest.raises(CimsimError, match="rram card"):
        synthetic_measurements(load_card("channel"))


_PROGRAMMING = "target_us,measured_us\n" + "".join(
    f"{t},{t + d}\n" for t in (1, 2, 3) for d in (-0.1, 0.1)
)


@pytest.mark.parametrize(
    "content, kwargs, expected",
    [
        (None, {}, "does not exist"),
        (b"target_us,measured_us\n1,\xff\n", {}, "not UTF-8"),
        ("", {}, "is empty"),
        ("target_us,measured_us\n", {}, "no readings"),
        ("target,value\n1,2\n", {}, r"missing column\(s\) measured_us \(found: target, value\)"),
        ("target,target_us,measured\n1,1,1\n", {}, "both mean target_us"),
        ("target_us,measured_us\n1,1\n1,abc\n", {}, "line 3: measured_us is not a number"),
        ("target_us,measured_us\n1,nan\n", {}, "line 2: measured_us is not finite"),
        ("target_us,measured_us\ninf,1\n", {}, "line 2: target_us is not finite"),
        ("target_us,measured_us\n1,1\n2,-0.5\n", {}, "line 3: measured_us is a negative"),
        ("target_us,measured_us\n1,1\n2\n", {}, "line 3: 1 fields, the header has 2"),
        ('target_us,measured_us\n"1,2\n', {}, "line 2: 1 fields"),
        ("target_us,measured_us,time_s\n1,1,0\n", {}, "line 2: time_s must be > 0"),
        ("target_us,measured_us,time_s\n1,1,-3\n", {}, "line 2: time_s must be > 0"),
        (_PROGRAMMING, {"degree": 3}, "3 target level.*needs at least 4"),
        (_PROGRAMMING.replace("3,", "2,"), {}, "2 target level.*needs at least 3"),
        (
            "device,target_us,measured_us,time_s\n"
            + "".join(f"d{t},{t},{t},1\nd{t}b,{t},{t},1\n" for t in (1, 2, 3))
            + "d1,1,0.9,60\nd9,2,1.9,60\n",
            {},
            "line 9: device 'd9' has no reading at the first time",
        ),
        (
            "device,target_us,measured_us,time_s\n"
            + "".join(f"d{t},{t},{t},1\nd{t}b,{t},{t},1\n" for t in (1, 2, 3))
            + "d1,1,0.9,1\nd1,1,0.8,60\n",
            {},
            "line 8: device 'd1' is read twice",
        ),
        (
            "target_us,measured_us,time_s\n"
            + "".join(f"{t},{t},1\n{t},{t},1\n" for t in (1, 2, 3))
            + "4,3.9,60\n",
            {},
            "line 8: target 4 µS has no reading at the first time",
        ),
        (_PROGRAMMING, {"degree": -1}, "degree must be"),
        (_PROGRAMMING, {"t0_s": 0.0}, "t0_s must be"),
        (_PROGRAMMING, {"g_max_us": float("nan")}, "g_max must be"),
        (_PROGRAMMING, {"g_max_us": 0.5}, "the fitted card is not valid"),
    ],
)
def test_bad_measurements_are_one_line_errors_naming_the_file(
    content: str | bytes | None, kwargs: dict[str, Any], expected: str, tmp_path: Path
) -> None:
    path = tmp_path / "readings.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(CimsimError, match=expected) as caught:
        fit_card(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
