"""Learning-rate schedules: pure functions of the step count.

The contract, stated once:

    schedule(count) -> learning rate

``count`` is the optimizer's step count before the update (0 for the first step): a Python
int (the optimizers pass one on NumPy) or a 0-d integer array, traced under ``jax.jit``. A
Python int gives a Python float; an array gives a float32 0-d array of the count's own backend
(`constant` gives its Python float), so no float64 scalar reaches float32 params (the
optimizers cast it to the params' dtype).
Arguments are checked when a schedule is built, so the schedules here never go negative; a
growing one (``decay_rate > 1``) overflows to ``inf`` on every backend, which the optimizers
refuse with a ValueError naming the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

from funcnet._arguments import positive_int, real_number
from funcnet.backend import is_integer, namespace

__all__ = ["Schedule", "constant", "cosine_decay", "exponential_decay", "step_decay", "warmup"]

Schedule = Callable[[Any], Any]


# the few array functions the schedules use, on Python floats: an int count costs no array op
_PYTHON_MATH = SimpleNamespace(floor=math.floor, cos=math.cos, minimum=min)


def _float_count(count: Any) -> tuple[Any, Any]:
    """``(xp, t)``: the count as a float, a Python float for an int, else float32 of its backend."""
    if isinstance(count, int | np.integer):
        return _PYTHON_MATH, float(count)
    if not hasattr(count, "dtype") or not is_integer(count.dtype):
        raise TypeError(f"a schedule is a function of the step count, an int or an integer array; "
                        f"got {type(count).__name__} {count!r:.40}")
    xp = namespace(count)
    return xp, xp.astype(count, xp.float32)


def _result(count: Any, value: Any) -> Any:
    return float(value) if isinstance(count, int | np.integer) else value


def constant(value: float) -> Schedule:
    """``value`` at every step, as a Python float whatever the count."""
    value = real_number("constant", "value", value)
    return lambda count: value


def exponential_decay(init_value: float, decay_rate: float, transition_steps: int,
                      staircase: bool = False) -> Schedule:
    """``init_value * decay_rate ** (count / transition_steps)``; the exponent floored when ``staircase``.

    The same formula and arguments as ``optax.exponential_decay`` (without its delayed start).
    """
    name = "exponential_decay"
    init_value = real_number(name, "init_value", init_value)
    decay_rate = real_number(name, "decay_rate", decay_rate, open_low=True)
    transition_steps = positive_int(name, "transition_steps", transition_steps)

    def schedule(count):
        xp, t = _float_count(count)
        p = t / transition_steps
        if staircase:
            p = xp.floor(p)
        try:
            factor = decay_rate**p
        except OverflowError:  # Python's float ** raises where an array gives inf: give inf too
            factor = math.inf
        return _result(count, init_value * factor)

    return schedule


def step_decay(init_value: float, decay_rate: float, transition_steps: int) -> Schedule:
    """The rate multiplied by ``decay_rate`` every ``transition_steps`` steps (PyTorch's StepLR)."""
    return exponential_decay(init_value, decay_rate, transition_steps, staircase=True)


def cosine_decay(init_value: float, decay_steps: int, alpha: float = 0.0) -> Schedule:
    """Half a cosine from ``init_value`` down to ``alpha * init_value`` over ``decay_steps``, then flat.

    ``init_value * ((1 - alpha) * (1 + cos(pi * min(count, decay_steps) / decay_steps)) / 2 + alpha)``,
    as ``optax.cosine_decay_schedule``.
    """
    name = "cosine_decay"
    init_value = real_number(name, "init_value", init_value)
    decay_steps = positive_int(name, "decay_steps", decay_steps)
    alpha = real_number(name, "alpha", alpha)
    if alpha > 1.0:
        raise ValueError(f"{name}: alpha (the final fraction of init_value) must be in [0, 1], got {alpha!r}")

    def schedule(count):
        xp, t = _float_count(count)
        t = xp.minimum(t, float(decay_steps))
        cosine = 0.5 * (1.0 + xp.cos((math.pi / decay_steps) * t))
        return _result(count, init_value * ((1.0 - alpha) * cosine + alpha))

    return schedule


def warmup(schedule: Schedule, warmup_steps: int, init_value: float = 0.0) -> Schedule:
    """A linear ramp from ``init_value`` to ``schedule(0)`` over ``warmup_steps``, then ``schedule`` delayed.

    Step ``count >= warmup_steps`` gives ``schedule(count - warmup_steps)``.
    """
    name = "warmup"
    if not callable(schedule):
        raise TypeError(f"{name}: schedule must be a function of the step count, got {type(schedule).__name__}")
    warmup_steps = positive_int(name, "warmup_steps", warmup_steps)
    init_value = real_number(name, "init_value", init_value)
    peak = real_number(name, "schedule(0)", float(schedule(0)))
    slope = (peak - init_value) / warmup_steps

    def warmed(count):
        if isinstance(count, int | np.integer):
            return init_value + slope * int(count) if count < warmup_steps else schedule(count - warmup_steps)
        xp, t = _float_count(count)
        later = schedule(count - warmup_steps)
        # a constant schedule gives a Python number, the others an array
        later = xp.full_like(t, later) if isinstance(later, int | float) else xp.astype(later, t.dtype)
        # both branches are computed: a traced count allows no Python if
        return xp.where(t < warmup_steps, init_value + slope * t, later)

    return warmed
