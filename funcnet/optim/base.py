"""The two contracts and what every rule sees of its step.

:

    Optimizer:         init(params) -> state
                       update(params, grads, state) -> (params, state)
    GradientTransform: init(params) -> state
                       update(grads, state, params) -> (grads, state)

A `Step` is what a per-leaf rule (`funcnet.optim.from_rule`) learns about the
update it is part of: the array module, the step count and the learning rate.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from funcnet._arguments import real_number
from funcnet.backend import is_traced, largest_finite, numpy_dtype
from funcnet.schedules import Schedule

__all__ = ["GradientTransform", "Leafwise", "LearningRate", "Optimizer", "Step", "bias_correction"]

Tree = Any
LearningRate = float | Schedule


class Leafwise(NamedTuple):
    """How an optimizer made by `from_rule` updates one leaf: what a fused step needs to run the
    very same update without walking trees (the NumPy step plans of `funcnet.train`).

    Attributes:
        rule: the per-leaf rule (``rule(step) -> leaf(p, g, *slots)``).
        lr_at: ``lr_at(count, xp, dtype)``, the checked learning rate of a step.
        state_type: the optimizer state's NamedTuple type (``count``, then the slots).
        update: the lifter's own ``update``; the rule stands for the optimizer only while the
            optimizer's ``update`` is this one (a ``_replace``'d update is used as it is).
        check_outputs: whether the leaf function's outputs are checked every step.
    """

    rule: Callable[[Any], Callable[..., tuple[Any, ...]]]
    lr_at: Callable[[Any, Any, Any], Any]
    state_type: type
    update: Callable[[Tree, Tree, Any], tuple[Tree, Any]]
    check_outputs: bool = True


class Optimizer(NamedTuple):
    """An optimizer: two pure functions, ``init(params) -> state`` and ``update(params, grads, state)``.

    ``update`` returns ``(new_params, new_state)`` and writes into nothing it was given.

    Examples:
        >>> import numpy as np
        >>> from funcnet import optim
        >>> opt = optim.sgd(0.5)
        >>> params = {"w": np.ones(2, np.float32)}
        >>> params, state = opt.update(params, {"w": np.ones(2, np.float32)}, opt.init(params))
        >>> params["w"].tolist(), int(state.count)
        ([0.5, 0.5], 1)
    """

    init: Callable[[Tree], Any]
    update: Callable[[Tree, Tree, Any], tuple[Tree, Any]]
    leafwise: Leafwise | None = None  # set by from_rule: the update is one rule applied leaf by leaf


class GradientTransform(NamedTuple):
    """A stateful gradient transformation, put in front of an optimizer with `funcnet.optim.chain`.

    ``init(params) -> state``; ``update(grads, state, params) -> (new_grads, new_state)``
    (optax's order of arguments). A stateless one keeps ``()`` as its state.

    Examples:
        >>> import numpy as np
        >>> from funcnet import optim
        >>> clip = optim.clip(0.5)
        >>> grads, state = clip.update({"w": np.array([2.0, -0.1])}, clip.init(None), None)
        >>> grads["w"].tolist(), state
        ([0.5, -0.1], ())
    """

    init: Callable[[Tree], Any]
    update: Callable[[Tree, Any, Tree], tuple[Tree, Any]]


class Step(NamedTuple):
    """What a per-leaf rule sees of its update, once per call of ``update``.

    Attributes:
        xp: the params' array module (NumPy, CuPy, ``jax.numpy``, array_api_strict).
        count: the updates made before this one: a Python int where the count lives on the
            host (NumPy, array_api_strict), else the 0-d integer array itself (device, traced).
        lr: this step's learning rate: a Python float for a host count, else a 0-d array of
            ``dtype``; ``None`` for a gradient transformation made without an lr.
        dtype: the dtype the rule computes in (float32 for float16 params).
        grads_writable: True in a fused NumPy step (a step plan): params and grads are all NumPy
            arrays of ``dtype``, the grads fresh buffers nobody else holds, so a leaf function may
            write into its ``g`` and save an allocation; False from the optimizer's ``update``,
            whose grads are the user's.

    Examples:
        >>> import numpy as np
        >>> from funcnet import optim
        >>> step = optim.Step(np, 0, 0.1, np.float32)
        >>> step.count + 1, step.lr
        (1, 0.1)
    """

    xp: Any
    count: Any
    lr: Any
    dtype: Any
    grads_writable: bool = False


def bias_correction(beta: float, step: Step) -> Any:
    """``1 - beta ** (count + 1)``, Adam's bias correction for this step.

    A Python float when the count is a host int (so NumPy and array_api_strict give the same
    bits), else a 0-d array of ``step.dtype`` computed as ``-expm1((count + 1) * log(beta))``
    (``1 - 0.999 ** 1`` in float32 would keep 3 digits; expm1 keeps all of them).

    Args:
        beta: the decay rate of the moving average, in ``[0, 1)``.
        step: the `Step` the rule was given.

    Returns:
        The correction, a Python float or a 0-d array.

    Examples:
        >>> import numpy as np
        >>> from funcnet import optim
        >>> round(optim.bias_correction(0.9, optim.Step(np, 1, 0.1, np.float32)), 12)
        0.19
    """
    t = step.count + 1
    if isinstance(t, int):
        return 1.0 - beta**t
    if beta == 0.0:
        return 1.0
    xp = step.xp
    return -xp.expm1(xp.astype(t, step.dtype) * math.log(beta))


def _is_host(x: Any) -> bool:
    """True for a value that can be read without a device sync: Python, NumPy or array_api_strict."""
    return isinstance(x, int | float | np.ndarray | np.generic) or type(x).__module__.startswith("array_api_strict")


def _host_count(count: Any) -> tuple[Any, Any]:
    """``(t, next_count)``: ``t`` a Python int for a host count, else the count itself (never read)."""
    if isinstance(count, int):
        return count, count + 1
    if type(count) is np.ndarray:  # the host count every NumPy state carries: the common case first
        return _next_count(np, int(count), count.dtype)
    if not isinstance(count, np.ndarray | np.integer) and not type(count).__module__.startswith("array_api_strict"):
        return count, count + 1  # on a device or traced: no sync
    xp = np if isinstance(count, np.ndarray | np.integer) else count.__array_namespace__()
    return _next_count(xp, int(count), count.dtype)


def _next_count(xp: Any, t: int, dtype: Any) -> tuple[int, Any]:
    try:  # out of the dtype's range: NumPy and array_api_strict raise OverflowError
        return t, xp.asarray(t + 1, dtype=dtype)
    except OverflowError:
        raise OverflowError(f"the optimizer's step count {t} is the largest its {dtype} holds: "
                            "this state cannot take another step") from None


def _learning_rate(name: str, lr: Any) -> Callable[[Any, Any, Any], Any]:
    """``at(count, xp, dtype)``: the rate for this step, a Python float or (device, traced) a 0-d array.

    A host value is checked every step (>= 0 and finite in the compute dtype: a float64 number
    that overflows float32 params would make them inf as surely as an inf); a
    traced or device value is never read (that would be a sync every step): its dtype is made
    the params' instead.
    """
    if not callable(lr):
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
            raise TypeError(f"{name}: lr must be a number or a schedule (a function of the step count), "
                            f"got {type(lr).__name__}")
        value = real_number(name, "lr", lr)

        def constant(count, xp, dtype):
            if value > largest_finite(dtype):  # 1e39 is a finite float64 but an inf for float32 params
                raise ValueError(f"{name}: lr {value} is not finite in the params' {numpy_dtype(dtype)}")
            return value

        return constant

    def at(count, xp, dtype):
        value = lr(count)
        if not hasattr(value, "dtype") and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise TypeError(f"{name}: the lr schedule returned {type(value).__name__} {value!r:.40} at step "
                            f"{count if isinstance(count, int) else 'count'}; it must return a real number")
        if is_traced(value) or not _is_host(value):
            return value if value.dtype == dtype else xp.astype(value, dtype)
        value = float(value)  # a Python float cannot promote float32 params
        if not 0.0 <= value <= largest_finite(dtype):
            step = count if isinstance(count, int) or is_traced(count) else int(count)
            raise ValueError(f"{name}: the lr schedule gave {value} at step {step}; a learning rate must be "
                             f">= 0 and finite in the params' {numpy_dtype(dtype)}")
        return value

    return at
