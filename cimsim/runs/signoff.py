"""Sign-off statistics: a chip's pass/fail against an accuracy budget, yield with exact binomial
intervals, the certified tolerance, the k-th percentile chip. No model, no torch.

**A chip passes at a value** when a one-sided exact upper confidence bound on its accuracy drop
from digital, on the same test examples, is at most the budget ``B`` (a fraction: 1 point is
0.01). Paired: per example, the chip *breaks* it (digital right, chip wrong) or *fixes* it
(digital wrong, chip right); the drop is ``(broken - fixed) / n`` on the test set and
``p_broken - p_fixed <= p_broken`` on the task. The bound used is the Clopper-Pearson upper bound
of ``p_broken`` from ``broken`` of ``n``: exact, and conservative because fixed examples are not
credited (near its decision boundary a noisy chip fixes about as many examples as it breaks, so
a chip as accurate as digital can fail); at no broken example it is the rule of three,
``1 - alpha^(1/n) ~ 3/n`` at 95 %. Crediting fixes needs a second bound (on the disagreement
rate and on the broken share of it, each at half the error), which widens the bound at zero
disagreement to ~3.7/n and breaks the count threshold that early decisions rely on. So a chip
passes iff ``broken <= max_broken(n, B)``, and the smallest budget a test set of n examples can
certify is ``resolution(n)``.

**Early decision** (curtailment): the decision is a count threshold on the full test set, so a
chip that has broken more than ``max_broken`` examples has failed whatever the rest gives, and
one that cannot reach it any more has passed; :func:`decide` stops there. The decision is the
full test set's, exactly: no error is added.

**Yield** at a value: passes / chips, with the Clopper-Pearson interval; it is the yield of the
acceptance test above (a production test's yield). **Certified tolerance**: values are tested in
the order from most to least favourable (increasing noise; decreasing bits for resolution
fields), each at the confidence level, stopping at the first whose one-sided lower yield bound
misses the target (fixed-sequence testing: the chance that any certified value has a true yield
below target is at most 1 - confidence, with no multiplicity correction).
"""

from __future__ import annotations

import dataclasses
import math

from scipy import stats


def cp_upper(k: int, n: int, confidence: float) -> float:
    """One-sided Clopper-Pearson upper bound of a binomial proportion (k of n)."""
    if k >= n:
        return 1.0
    return float(stats.beta.ppf(confidence, k + 1, n - k))


def cp_lower(k: int, n: int, confidence: float) -> float:
    """One-sided Clopper-Pearson lower bound of a binomial proportion (k of n)."""
    if k <= 0:
        return 0.0
    return float(stats.beta.ppf(1 - confidence, k, n - k + 1))


def cp_interval(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval (each tail (1 - confidence) / 2)."""
    tail = (1 + confidence) / 2
    return cp_lower(k, n, tail), cp_upper(k, n, tail)


def resolution(n: int, confidence: float) -> float:
    """The smallest drop a test set of ``n`` examples can certify: the bound at 0 broken."""
    return cp_upper(0, n, confidence)


def max_broken(n: int, budget: float, confidence: float) -> int:
    """The most broken examples of ``n`` with which a chip still passes (-1: none can pass)."""
    lo, hi = -1, n  # cp_upper is increasing in k: find the last k with bound <= budget
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cp_upper(mid, n, confidence) <= budget:
            lo = mid
        else:
            hi = mid
    return lo


def chips_needed(target: float, confidence: float) -> int:
    """The fewest chips that can certify ``target`` yield: all pass and ``target^n <= 1 - c``."""
    return math.ceil(math.log(1 - confidence) / math.log(target)) if target > 0 else 1


def passes_needed(n: int, target: float, confidence: float) -> int | None:
    """The fewest passing chips of ``n`` whose lower yield bound reaches ``target`` (None: even
    ``n`` of ``n`` do not)."""
    for k in range(n + 1):
        if cp_lower(k, n, confidence) >= target:
            return k
    return None


@dataclasses.dataclass(frozen=True)
class Rule:
    """The acceptance test of one chip on a test set of ``n`` examples."""

    n: int
    budget: float
    """Largest accuracy drop allowed, as a fraction (0.01 = 1 point)."""
    confidence: float
    max_broken: int

    @classmethod
    def of(cls, n: int, budget: float, confidence: float) -> Rule:
        return cls(n, budget, confidence, max_broken(n, budget, confidence))

    def text(self) -> str:
        """The rule in words, for every output."""
        return (
            f"a chip passes when the one-sided {self.confidence:.0%} Clopper-Pearson upper bound "
            f"on its rate of broken examples (digital right, chip wrong) is <= "
            f"{100 * self.budget:.3g} points: at most {self.max_broken} broken of {self.n} "
            f"(test-set resolution {100 * resolution(self.n, self.confidence):.3g} points)"
        )


def decide(rule: Rule, broken: int, unseen_digital_right: int) -> bool | None:
    """The full test set's decision once it is determined: False when ``broken`` already
    exceeds the rule's threshold, True when even breaking every example digital gets right
    among those not yet evaluated keeps it within, None while open."""
    if broken > rule.max_broken:
        return False
    if broken + unseen_digital_right <= rule.max_broken:
        return True
    return None


@dataclasses.dataclass(frozen=True)
class YieldPoint:
    value: float
    passes: int
    chips: int
    low: float
    high: float
    lower_bound: float
    """One-sided lower bound at the confidence level: what certification compares."""

    @property
    def estimate(self) -> float:
        return self.passes / self.chips if self.chips else math.nan


def yield_point(value: float, passes: int, chips: int, confidence: float) -> YieldPoint:
    low, high = cp_interval(passes, chips, confidence)
    return YieldPoint(value, passes, chips, low, high, cp_lower(passes, chips, confidence))


def certified(points: list[YieldPoint], target: float) -> YieldPoint | None:
    """The last point, in the given (most to least favourable) order, before the first whose
    lower bound misses ``target``; None when the first already misses."""
    last = None
    for point in points:
        if point.lower_bound < target:
            break
        last = point
    return last


def percentile_chip(
    accuracies: list[float], q: float, confidence: float
) -> tuple[float, float, float]:
    """The q-quantile of chip accuracy (e.g. q 0.05: the 5th-percentile chip) and a
    distribution-free interval from order statistics: with ``K ~ Binomial(n, q)`` chips below
    the quantile, ``[x_(l), x_(u)]`` covers it with probability ``P(l <= K < u) >= confidence``.
    A side the chips cannot bound is 0 (below) or 1 (above)."""
    x = sorted(accuracies)
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan
    estimate = x[min(n - 1, max(0, math.ceil(q * n) - 1))]
    tail = (1 - confidence) / 2
    binom = stats.binom(n, q)
    # l: the largest order statistic index (1-based) with P(K <= l - 1) <= tail
    lows = [k for k in range(1, n + 1) if binom.cdf(k - 1) <= tail]
    highs = [k for k in range(1, n + 1) if binom.cdf(k - 1) >= 1 - tail]
    low = x[max(lows) - 1] if lows else 0.0
    high = x[min(highs) - 1] if highs else 1.0
    return estimate, low, high
