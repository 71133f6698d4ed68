"""Checks of the numbers users pass to constructors (layers, optimizers, schedules).

Each returns the value in its plain Python type or raises a ValueError that names the
function, the argument, what was expected and what came.
"""

from __future__ import annotations

import math
import numbers
from typing import Any


def positive_int(name: str, what: str, value: Any, *, or_none: bool = False) -> int | None:
    """``value`` as a Python int if it is an integer >= 1 (NumPy integers too; bool refused).

    With ``or_none``, None is accepted too (and returned).
    """
    if or_none and value is None:
        return None
    return _int_at_least(name, what, value, 1, "a positive int or None" if or_none else "a positive int")


def non_negative_int(name: str, what: str, value: Any) -> int:
    """``value`` as a Python int if it is an integer >= 0 (NumPy integers too; bool refused)."""
    return _int_at_least(name, what, value, 0, "a non-negative int")


def _int_at_least(name: str, what: str, value: Any, low: int, expected: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name}: {what} must be {expected}, got {value!r}")
    return int(value)


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
