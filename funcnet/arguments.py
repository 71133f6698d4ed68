"""Checks of the numbers users pass to constructors (layers, optimizers, schedules).

Each returns the value in its plain Python type or raises a ValueError that names the
function, the argument, what was expected and what came.
"""

from __future__ import annotations

import math
import numbers
from typing import Any


def positive_int(name: str, what: str, value: Any) -> int:
    """``value`` if it is an int >= 1 (bool refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: {what} must be a positive int, got {value!r}")
    return value


def real_number(name: str, what: str, value: Any, low: float = 0.0, high: float = math.inf, *,
                open_low: bool = False) -> float:
    """``value`` as a float in ``[low, high)`` (``(low, high)`` with ``open_low``); NaN and inf refused."""
    above = (value > low if open_low else value >= low) if isinstance(value, numbers.Real) else False
    if isinstance(value, bool) or not above or not value < high or not math.isfinite(value):
        if high < math.inf:
            bound = f"in {'(' if open_low else '['}{low}, {high})"
        else:
            bound = f"a finite number {'>' if open_low else '>='} {low}"
        raise ValueError(f"{name}: {what} must be {bound}, got {value!r}")
    return float(value)
