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
    """``value`` at every step, as a Python float whatever the count.

    Args:
        value: the learning rate, a finite number >= 0.

    Returns:
        A `Schedule` that ignores its count and gives ``value`` as a Python float (for
        an array count too, traced or not).

    Raises:
        ValueError: ``value`` negative, NaN, infinite, a bool or not a real number.

    Examples:
        >>> import numpy as np
        >>> lr = constant(0.1)
        >>> lr(0), lr(1000), lr(np.array(5))
        (0.1, 0.1, 0.1)
        >>> constant(-1.0)
        Traceback (most recent call last):
        ...
        ValueError: constant: value must be a finite number >= 0.0, got -1.0
    """
    value = real_number("constant", "value", value)
    return lambda count: value


def exponential_decay(init_value: float, decay_rate: float, transition_steps: int,
                      staircase: bool = False) -> Schedule:
    """``init_value * decay_rate ** (count / transition_steps)``; the exponent floored when ``staircase``.

    The same formula and arguments as ``optax.exponential_decay`` (without its delayed start).

    Args:
        init_value: the rate at step 0, a finite number >= 0.
        decay_rate: the factor per ``transition_steps`` steps, a finite number > 0 (above
            1 the rate grows and overflows to ``inf``, which the optimizers refuse).
        transition_steps: the steps over which the rate is multiplied by
            ``decay_rate``, an int >= 1.
        staircase: floor ``count / transition_steps``, so the rate drops in steps (as
            `step_decay`) instead of smoothly.

    Returns:
        A `Schedule`: a Python float for an int count, a float32 0-d value of the
        count's backend for an integer array; ``TypeError`` for any other count.

    Raises:
        ValueError: ``init_value`` negative or not finite, ``decay_rate`` not a finite
            number > 0, or ``transition_steps`` not an int >= 1 (the message names it).

    Examples:
        >>> lr = exponential_decay(0.1, 0.5, transition_steps=10)
        >>> lr(0), lr(10), round(lr(15), 6)
        (0.1, 0.05, 0.035355)
        >>> exponential_decay(0.1, 0.5, 10, staircase=True)(15)
        0.05
        >>> import numpy as np
        >>> lr(np.array(10))
        np.float32(0.05)
        >>> exponential_decay(0.1, 0.0, 10)
        Traceback (most recent call last):
        ...
        ValueError: exponential_decay: decay_rate must be a finite number > 0.0, got 0.0
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
    """The rate multiplied by ``decay_rate`` every ``transition_steps`` steps (PyTorch's StepLR).

    ``init_value * decay_rate ** floor(count / transition_steps)``: `exponential_decay`
    with ``staircase=True``.

    Args:
        init_value: the rate of the first ``transition_steps`` steps, finite and >= 0.
        decay_rate: the factor applied every ``transition_steps`` steps, finite and > 0.
        transition_steps: the length of each stair, an int >= 1.

    Returns:
        A `Schedule`: a Python float for an int count, a float32 0-d value of the
        count's backend for an integer array.

    Raises:
        ValueError: ``init_value`` negative or not finite, ``decay_rate`` not a finite
            number > 0, or ``transition_steps`` not an int >= 1 (the message names
            ``exponential_decay``, which does the checking).

    Examples:
        >>> lr = step_decay(0.1, 0.5, transition_steps=10)
        >>> [lr(count) for count in (0, 9, 10, 25)]
        [0.1, 0.1, 0.05, 0.025]
        >>> step_decay(0.1, 0.5, 0)
        Traceback (most recent call last):
        ...
        ValueError: exponential_decay: transition_steps must be a positive int, got 0
    """
    return exponential_decay(init_value, decay_rate, transition_steps, staircase=True)


def cosine_decay(init_value: float, decay_steps: int, alpha: float = 0.0) -> Schedule:
    """Half a cosine from ``init_value`` down to ``alpha * init_value`` over ``decay_steps``, then flat.

    ``init_value * ((1 - alpha) * (1 + cos(pi * min(count, decay_steps) / decay_steps)) / 2 + alpha)``,
    as ``optax.cosine_decay_schedule``.

    Args:
        init_value: the rate at step 0, a finite number >= 0.
        decay_steps: the steps the half cosine takes, an int >= 1; the rate stays at
            ``alpha * init_value`` from then on.
        alpha: the final rate as a fraction of ``init_value``, in ``[0, 1]``.

    Returns:
        A `Schedule`: a Python float for an int count, a float32 0-d value of the
        count's backend for an integer array; ``TypeError`` for any other count.

    Raises:
        ValueError: ``init_value`` negative or not finite, ``decay_steps`` not an int
            >= 1, or ``alpha`` outside ``[0, 1]`` or not finite.

    Examples:
        >>> lr = cosine_decay(1.0, decay_steps=100)
        >>> lr(0), round(lr(50), 6), lr(100), lr(500)
        (1.0, 0.5, 0.0, 0.0)
        >>> round(cosine_decay(1.0, 100, alpha=0.1)(100), 6)
        0.1
        >>> cosine_decay(1.0, 100, alpha=1.5)
        Traceback (most recent call last):
        ...
        ValueError: cosine_decay: alpha ... must be in [0, 1], got 1.5
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

    Args:
        schedule: the `Schedule` to follow after the warm-up; it is called once here,
            at 0, for the top of the ramp.
        warmup_steps: the length of the ramp, an int >= 1.
        init_value: the rate at step 0, a finite number >= 0.

    Returns:
        A `Schedule`: a Python float for an int count (once the ramp is over, what
        ``schedule`` gives), a float32 0-d array of the count's backend for an integer
        array, traced or not (both branches are computed then); ``TypeError`` for any
        other count.

    Raises:
        TypeError: ``schedule`` is not callable.
        ValueError: ``warmup_steps`` not an int >= 1, ``init_value`` negative or not
            finite, or ``schedule(0)`` negative or not finite.

    Examples:
        >>> lr = warmup(cosine_decay(0.1, decay_steps=100), warmup_steps=10)
        >>> [round(lr(count), 6) for count in (0, 5, 10, 60)]
        [0.0, 0.05, 0.1, 0.05]
        >>> import numpy as np
        >>> lr(np.array(5))
        array(0.05, dtype=float32)
        >>> warmup(0.1, 10)
        Traceback (most recent call last):
        ...
        TypeError: warmup: schedule must be a function of the step count, got float
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
