"""Gradient accumulation: an optimizer that steps once every ``k`` calls, on the mean gradient."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from funcnet import tree
from funcnet._arguments import positive_int
from funcnet.backend import is_floating, is_integer, namespace
from funcnet.optim.base import Optimizer, _host_count
from funcnet.optim.rules import _is_half, _leaf_error, _namespace

__all__ = ["AccumulateState", "accumulate"]


class AccumulateState(NamedTuple):
    """`accumulate`'s state: calls since the last step, the running mean of their grads, the inner state."""

    mini_step: Any
    grad_mean: Any
    inner: Any


def _like(count: Any, value: int) -> Any:
    """``value`` as the same kind of count as ``count`` (a Python int or a 0-d array of its backend)."""
    if isinstance(count, int):
        return value
    if isinstance(count, np.ndarray | np.generic):
        return np.asarray(value, dtype=count.dtype)
    return namespace(count).asarray(value, dtype=count.dtype)


def accumulate(k: int, optimizer: Optimizer) -> Optimizer:
    """``optimizer`` stepping once every ``k`` calls with the mean of their grads (``optax.MultiSteps``).

    The calls in between return the params unchanged (the same arrays) and the inner state
    untouched. The mean is kept as ``mean + (g - mean) / n`` (optax's Welford update), in
    float32 for float16 params. On a host count (NumPy, array_api_strict) the step is chosen by a
    Python ``if``; on a device or under ``jax.jit`` the inner update runs every call and its result
    is selected with ``xp.where``.

    Args:
        k: the number of calls per step, >= 1 (1 is ``optimizer`` itself, state apart).
        optimizer: the optimizer that steps.

    Returns:
        The accumulating optimizer; its state is `AccumulateState`.

    Raises:
        ValueError: a k that is not a positive int.
        TypeError: ``optimizer`` is not an Optimizer; at update, a state of another optimizer.

    Examples:
        >>> import numpy as np
        >>> from funcnet import optim
        >>> opt = optim.accumulate(2, optim.sgd(1.0))
        >>> p = {"w": np.array([0.0])}
        >>> state = opt.init(p)
        >>> p, state = opt.update(p, {"w": np.array([1.0])}, state)
        >>> p["w"].tolist()
        [0.0]
        >>> p, state = opt.update(p, {"w": np.array([3.0])}, state)
        >>> p["w"].tolist(), int(state.inner.count)
        ([-2.0], 1)
    """
    name = "accumulate"
    if isinstance(k, Optimizer):
        raise TypeError(f"{name}: the arguments are (k, optimizer): got an Optimizer first")
    k = positive_int(name, "k", k)
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{name}: optimizer must be an Optimizer, got {type(optimizer).__name__}")
    inner_init, inner_update = optimizer.init, optimizer.update

    def init(params):
        inner = inner_init(params)
        leaves, spec = tree.flatten(params)
        xp = _namespace(leaves)
        mean = tree.unflatten(spec, [xp.zeros_like(x, dtype=xp.float32 if _is_half(x.dtype) else x.dtype)
                                     for x in leaves])
        return AccumulateState(xp.asarray(0, dtype=xp.int32), mean, inner)

    def update(params, grads, state):
        if type(state) is not AccumulateState:
            raise TypeError(f"{name}.update: state must be the AccumulateState that its init makes, "
                            f"got {type(state).__name__}")
        p_leaves, spec = tree.flatten(params)
        g_leaves = tree.flatten_like(spec, grads)  # cheap, and None on a mismatch
        if g_leaves is None:
            tree.assert_same_structure(params, grads, f"{name}.update: grads")
            g_leaves = tree.leaves(grads)
        mini_step = state.mini_step
        dtype = getattr(mini_step, "dtype", None)
        if isinstance(mini_step, bool) or not (isinstance(mini_step, int) or (dtype is not None and is_integer(dtype))):
            raise TypeError(f"{name}.update: state.mini_step must be an integer count, got {mini_step!r}")
        t, next_step = _host_count(mini_step)
        if isinstance(t, int) and not 0 <= t < k:  # a device count is never read (no sync)
            raise ValueError(f"{name}.update: state.mini_step is {t}, outside [0, {k}): a state of another "
                             f"accumulate (another k)?")
        try:  # the wrapped optimizer would see only the mean: check grads against params here
            mismatch = any(p.shape != g.shape or p.dtype != g.dtype for p, g in zip(p_leaves, g_leaves, strict=True))
        except AttributeError:
            mismatch = True
        if mismatch:
            raise _leaf_error(name, params, p_leaves, g_leaves)
        m_leaves = tree.flatten_like(spec, state.grad_mean)
        if m_leaves is None or any(m.shape != p.shape or not is_floating(m.dtype)
                                   for m, p in zip(m_leaves, p_leaves, strict=True)):
            tree.assert_same_structure(params, state.grad_mean, f"{name}.update: state.grad_mean")
            bad = next(path for (path, m), p in zip(tree.leaves_with_paths(state.grad_mean), p_leaves, strict=True)
                       if getattr(m, "shape", None) != p.shape or not is_floating(m.dtype))
            raise ValueError(f"{name}.update: state.grad_mean leaf {bad!r} does not have its param's shape, "
                             "or is not floating point (a state of another model?)")
        xp = _namespace(g_leaves)
        means = [m + ((g if g.dtype == m.dtype else xp.astype(g, m.dtype)) - m) / (t + 1)
                 for g, m in zip(g_leaves, m_leaves, strict=True)]
        if isinstance(t, int) and t + 1 < k:  # a host count between steps: the mean only
            return params, AccumulateState(next_step, tree.unflatten(spec, means), state.inner)
        mean_grads = tree.unflatten(spec, [m if m.dtype == g.dtype else xp.astype(m, g.dtype)
                                           for g, m in zip(g_leaves, means, strict=True)])
        new_params, new_inner = inner_update(params, mean_grads, state.inner)
        zeros = [xp.zeros_like(m) for m in means]
        if isinstance(t, int):
            return new_params, AccumulateState(_like(state.mini_step, 0), tree.unflatten(spec, zeros), new_inner)
        # a device or traced count: no Python if on it; both outcomes computed, one selected
        emit = t == k - 1

        def pick(new, old):
            return tree.map(lambda a, b: xp.where(emit, a, b), new, old)

        kept = tree.unflatten(spec, [xp.where(emit, z, m) for z, m in zip(zeros, means, strict=True)])
        return pick(new_params, params), AccumulateState(next_step % k, kept, pick(new_inner, state.inner))

    return Optimizer(init, update)
