"""Parse the values of a swept axis: ``--noise 0.01..0.1`` and friends.

Accepted forms (whitespace around tokens is ignored):

=================  ===========================================================
``a..b``           10 evenly spaced points from a to b, both included
``a..b:n``         n evenly spaced points from a to b, both included (n >= 2)
``a..b/step``      a, a+step, ... up to b (b included when it lies on the grid)
``x,y,z``          exactly these values, in this order
``x``              one value
=================  ===========================================================

Values must be finite, non-negative, at most ``MAX_VALUE`` (1e15), and a range must not run
backwards; anything else raises :class:`~cimsim.core.errors.CimsimError` with a one-line message
quoting the input.
"""

from __future__ import annotations

import math

from cimsim.core.errors import CimsimError

DEFAULT_POINTS = 10
# A sweep evaluates every level several times; more levels than this is a typo, not a plan.
MAX_POINTS = 10_000
# Largest value of any axis: above it no sigma, time or card field is a physical setting, and
# matplotlib cannot place ticks on an axis that spans close to float64's limit (1e308).
MAX_VALUE = 1e15
# Largest root seed: torch generators take 64-bit seeds, and derived seeds are hashed from it.
MAX_SEED = 2**63 - 1


def check_chips(instances: int, seed: int) -> None:
    """``--seeds`` (chip instances per value) and ``--seed`` (the root seed) within bounds."""
    if not 1 <= instances <= MAX_POINTS:
        raise CimsimError(f"--seeds must be in 1..{MAX_POINTS}, got {instances}")
    if not 0 <= seed <= MAX_SEED:
        raise CimsimError(f"--seed must be in 0..{MAX_SEED}, got {seed}")


# Grid points are rounded so that 0.1 + 2*0.1 prints as 0.3 in result files and figure ticks.
_DECIMALS = 12


def parse_range(text: str, *, what: str = "noise") -> list[float]:
    """Return the list of values that ``text`` denotes (see the module docstring)."""
    spec = text.strip()
    if not spec:
        raise CimsimError(f"empty {what} range; expected e.g. 0.01..0.1, 0.01..0.1:5 or 0,0.05,0.1")
    if ".." in spec:
        values = _parse_interval(spec, what)
    else:
        values = [_number(tok, spec, what) for tok in spec.split(",")]
    if len(set(values)) != len(values):
        raise CimsimError(f"{what} range '{text}' repeats a value")
    return values


def _parse_interval(spec: str, what: str) -> list[float]:
    start_text, _, rest = spec.partition("..")
    count: int | None = None
    step: float | None = None
    if ":" in rest:
        stop_text, _, count_text = rest.partition(":")
        try:
            count = int(count_text)
        except ValueError:
            raise CimsimError(
                f"{what} range '{spec}': the point count after ':' must be an integer"
            ) from None
        if count < 2:
            raise CimsimError(f"{what} range '{spec}': a range needs at least 2 points")
        if count > MAX_POINTS:
            raise CimsimError(f"{what} range '{spec}' has {count} points; at most {MAX_POINTS}")
    elif "/" in rest:
        stop_text, _, step_text = rest.partition("/")
        step = _number(step_text, spec, what)
        if step <= 0:
            raise CimsimError(f"{what} range '{spec}': the step after '/' must be positive")
    else:
        stop_text = rest
    start, stop = _number(start_text, spec, what), _number(stop_text, spec, what)
    if stop < start:
        raise CimsimError(f"{what} range '{spec}' runs backwards ({start} > {stop})")
    if stop == start:
        raise CimsimError(f"{what} range '{spec}' is empty; give one value as '{start}'")
    if step is not None:
        n_steps = math.floor((stop - start) / step + 1e-9)
        if n_steps + 1 > MAX_POINTS:
            raise CimsimError(
                f"{what} range '{spec}' has {n_steps + 1:.3g} points; at most {MAX_POINTS}"
            )
        return [round(start + i * step, _DECIMALS) for i in range(n_steps + 1)]
    n = DEFAULT_POINTS if count is None else count
    return [round(start + (stop - start) * i / (n - 1), _DECIMALS) for i in range(n)]


def _number(token: str, spec: str, what: str) -> float:
    token = token.strip()
    try:
        value = float(token)
    except ValueError:
        raise CimsimError(
            f"{what} range '{spec}': '{token}' is not a number "
            "(expected a..b, a..b:n, a..b/step or a comma list)"
        ) from None
    if not math.isfinite(value):
        raise CimsimError(f"{what} range '{spec}': {token} is not a finite number")
    if value < 0:
        raise CimsimError(f"{what} range '{spec}': {what} must be non-negative, got {value}")
    if value > MAX_VALUE:
        raise CimsimError(f"{what} range '{spec}': {token} is too large (at most {MAX_VALUE:g})")
    return value
