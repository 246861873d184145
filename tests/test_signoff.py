"""The sign-off statistics, checked by simulated coverage on populations with known truth.

Each coverage check repeats a simulation many times with a fixed seed and requires the observed
rate to reach the nominal one up to 2.5 Monte-Carlo standard errors (the intervals are exact, so
their true coverage is at least nominal; the slack only absorbs the simulation's own noise).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from cimsim.runs import signoff

CONFIDENCE = 0.95
REPEATS = 2000


def slack(rate: float, repeats: int = REPEATS) -> float:
    return 2.5 * math.sqrt(rate * (1 - rate) / repeats)


def test_the_figures_a_hardware_team_quotes() -> None:
    assert signoff.chips_needed(0.9, 0.95) == 29
    assert signoff.chips_needed(0.95, 0.95) == 59
    assert signoff.cp_lower(3, 3, 0.95) == pytest.approx(0.05 ** (1 / 3))  # 0.37
    assert signoff.cp_lower(29, 29, 0.95) == pytest.approx(0.05 ** (1 / 29))  # 0.90
    assert 100 * signoff.resolution(300, 0.95) == pytest.approx(0.994, abs=1e-3)  # rule of three
    low, high = signoff.cp_interval(2, 3, 0.95)  # the default sweep's sigma 0.02: 2 of 3 chips
    assert (round(low, 2), round(high, 2)) == (0.09, 0.99)


def test_max_broken_is_the_last_count_within_budget() -> None:
    for n, budget in [(300, 0.01), (426, 0.02), (1000, 0.05), (50, 0.01)]:
        k = signoff.max_broken(n, budget, CONFIDENCE)
        if k >= 0:
            assert signoff.cp_upper(k, n, CONFIDENCE) <= budget
        assert signoff.cp_upper(k + 1, n, CONFIDENCE) > budget
    assert signoff.max_broken(50, 0.01, CONFIDENCE) == -1  # 50 examples cannot certify 1 point


@pytest.mark.parametrize("chips", [10, 29, 50])
@pytest.mark.parametrize("true_yield", [0.5, 0.9, 0.97])
def test_yield_intervals_cover_the_true_yield(chips: int, true_yield: float) -> None:
    rng = np.random.default_rng(chips * 1000 + int(100 * true_yield))
    passes = rng.binomial(chips, true_yield, size=REPEATS)
    lower = np.array([signoff.cp_lower(int(k), chips, CONFIDENCE) for k in passes])
    two_sided = [signoff.cp_interval(int(k), chips, CONFIDENCE) for k in passes]
    covered_lower = float(np.mean(lower <= true_yield))
    covered_both = float(np.mean([lo <= true_yield <= hi for lo, hi in two_sided]))
    assert covered_lower >= CONFIDENCE - slack(CONFIDENCE)
    assert covered_both >= CONFIDENCE - slack(CONFIDENCE)


@pytest.mark.parametrize("n", [300, 426])
def test_a_chip_over_budget_passes_at_most_at_the_nominal_error_rate(n: int) -> None:
    """Chips whose true rate of broken examples is just over the budget: the rule passes at
    most 5 % of them, deciding early or not (early decisions equal the full set's)."""
    budget = 0.02
    rule = signoff.Rule.of(n, budget, CONFIDENCE)
    rng = np.random.default_rng(n)
    digital_right = rng.random(n) < 0.95
    false_passes = 0
    for _ in range(REPEATS // 4):
        broken = digital_right & (rng.random(n) < budget * 1.001 / 0.95)  # p_broken = budget
        full = int(broken.sum()) <= rule.max_broken
        early = None
        for used in range(1, n + 1):
            early = signoff.decide(rule, int(broken[:used].sum()), int(digital_right[used:].sum()))
            if early is not None:
                break
        assert early == full  # the early decision is the full test set's
        false_passes += full
    rate = false_passes / (REPEATS // 4)
    assert rate <= (1 - CONFIDENCE) + slack(1 - CONFIDENCE, REPEATS // 4)


def test_early_decisions_are_reached_early_for_chips_far_from_the_budget() -> None:
    rule = signoff.Rule.of(426, 0.02, CONFIDENCE)
    assert signoff.decide(rule, rule.max_broken + 1, 400) is False
    assert signoff.decide(rule, 0, rule.max_broken) is True
    assert signoff.decide(rule, 0, rule.max_broken + 1) is None


def test_fixed_sequence_certification_keeps_its_error_rate() -> None:
    """A true yield curve falling through the target: the certified value's true yield is
    below target in at most 5 % of repetitions (no correction for testing many values)."""
    true_yields = [1.0, 0.99, 0.97, 0.93, 0.88, 0.8, 0.6]
    target, chips = 0.9, 60
    rng = np.random.default_rng(7)
    wrong = 0
    for _ in range(REPEATS // 2):
        # common chips: one uniform per chip; it passes value j while u < true_yields[j]
        u = rng.random(chips)
        points = [
            signoff.yield_point(float(j), int((u < y).sum()), chips, CONFIDENCE)
            for j, y in enumerate(true_yields)
        ]
        best = signoff.certified(points, target)
        wrong += best is not None and true_yields[int(best.value)] < target
    rate = wrong / (REPEATS // 2)
    assert rate <= (1 - CONFIDENCE) + slack(1 - CONFIDENCE, REPEATS // 2)


def test_certified_stops_at_the_first_miss() -> None:
    points = [signoff.yield_point(v, k, 30, CONFIDENCE) for v, k in [(1, 30), (2, 29), (3, 30)]]
    assert signoff.certified(points, 0.9).value == 1  # 29 of 30 misses 0.9; 3 is not reached
    assert signoff.certified(points[1:], 0.9) is None


@pytest.mark.parametrize("chips", [20, 50, 100])
def test_percentile_chip_interval_covers_the_true_quantile(chips: int) -> None:
    q = 0.05
    rng = np.random.default_rng(chips)
    true_quantile = 0.8 + 0.1 * q  # accuracies ~ U(0.8, 0.9)
    covered = 0
    for _ in range(REPEATS // 4):
        accuracies = list(rng.uniform(0.8, 0.9, size=chips))
        _, low, high = signoff.percentile_chip(accuracies, q, CONFIDENCE)
        covered += low <= true_quantile <= high
    rate = covered / (REPEATS // 4)
    assert rate >= CONFIDENCE - slack(CONFIDENCE, REPEATS // 4)


def test_rule_text_states_the_rule_and_the_resolution() -> None:
    text = signoff.Rule.of(300, 0.01, CONFIDENCE).text()
    assert "Clopper-Pearson" in text and "broken" in text and "resolution 0.994 points" in text
