"""Differentiable primitives: the nodes of the seed's computational graphs.

Every primitive is a ``Primitive(apply, vjp)``::

    apply(*args)            -> out
    vjp(*args)              -> (out, pullback)
    pullback(d_out)         -> one cotangent per array argument (a tuple when there are several)

Broadcasting is the seed's Repeat node in disguise, so the backward rule of a broadcasting
``add``/``multiply`` is its dual, Sum: the incoming gradient is summed back to each operand's
shape (:func:`unbroadcast`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from funcnet.backend import IN_PLACE_MIN_SIZE, is_floating, namespace, reduce_max, reduce_sum


class Primitive(NamedTuple):
    """A pure function together with its vector-Jacobian product."""

    apply: Callable[..., Any]
    vjp: Callable[..., tuple[Any, Callable[..., Any]]]


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(getattr(x, "shape", ()))


def unbroadcast(g: Any, shape: tuple[int, ...]) -> Any:
    """``g`` summed over the axes that broadcasting added to reach ``g``'s shape from ``shape``."""
    if _shape(g) == tuple(shape):
        return g
    xp = namespace(g)
    extra = g.ndim - len(shape)
    if extra:
        g = xp.sum(g, axis=tuple(range(extra)))
    ones = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if ones:
        g = xp.sum(g, axis=ones, keepdims=True)
    return g


def _broadcast_error(name: str, x: Any, y: Any) -> ValueError:
    return ValueError(
        f"ops.{name}: operands could not be broadcast together with shapes {_shape(x)} {_shape(y)}"
    )


def _check_broadcast(name: str, x: Any, y: Any) -> None:
    for a, b in zip(reversed(_shape(x)), reversed(_shape(y)), strict=False):
        if a != b and a != 1 and b != 1:
            raise _broadcast_error(name, x, y)


# --- binary, broadcasting -------------------------------------------------------------------


def _add(x: Any, y: Any) -> Any:
    _check_broadcast("add", x, y)
    return x + y


def _add_vjp(x: Any, y: Any):
    sx, sy = _shape(x), _shape(y)

    def pullback(dz):
        return unbroadcast(dz, sx), unbroadcast(dz, sy)

    return _add(x, y), pullback


add = Primitive(_add, _add_vjp)
"""The addition node: ``z = x + y``; both operands receive ``dz`` (summed back to their shape)."""


def _subtract(x: Any, y: Any) -> Any:
    _check_broadcast("subtract", x, y)
    return x - y


def _subtract_vjp(x: Any, y: Any):
    sx, sy = _shape(x), _shape(y)

    def pullback(dz):
        return unbroadcast(dz, sx), unbroadcast(-dz, sy)

    return _subtract(x, y), pullback


subtract = Primitive(_subtract, _subtract_vjp)
"""``z = x - y``."""


def _multiply(x: Any, y: Any) -> Any:
    _check_broadcast("multiply", x, y)
    return x * y


def _multiply_vjp(x: Any, y: Any):
    sx, sy = _shape(x), _shape(y)

    def pullback(dz):
        return unbroadcast(dz * y, sx), unbroadcast(dz * x, sy)

    return _multiply(x, y), pullback


multiply = Primitive(_multiply, _multiply_vjp)
"""The multiplication node: ``z = x * y``; each operand receives ``dz`` times the other one."""


def _matmul(x: Any, w: Any) -> Any:
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[0]:
        raise ValueError(
            f"ops.matmul: expected shapes (N, D) and (D, H), got {_shape(x)} and {_shape(w)}"
        )
    return namespace(x, w).matmul(x, w)


def _matmul_vjp(x: Any, w: Any):
    xp = namespace(x, w)

    def pullback(dy):
        return xp.matmul(dy, w.T), xp.matmul(x.T, dy)

    return _matmul(x, w), pullback


matmul = Primitive(_matmul, _matmul_vjp)
"""The MatMul node ``y = x @ W``: ``dx = dy @ W.T`` and ``dW = x.T @ dy``."""


# --- graph plumbing: branch, repeat, sum ----------------------------------------------------


def _branch(x: Any, n: int = 2) -> tuple[Any, ...]:
    return (x,) * n  # arrays are never written to, so sharing one is a copy


def _branch_vjp(x: Any, n: int = 2):
    def pullback(dys):
        if len(dys) != n:
            raise ValueError(f"ops.branch: expected {n} cotangents, got {len(dys)}")
        total = dys[0]
        for dy in dys[1:]:
            total = total + dy
        return total

    return _branch(x, n), pullback


branch = Primitive(_branch, _branch_vjp)
"""The branch (copy) node: one value used ``n`` times; the gradients of the uses add up."""


def _repeat(x: Any, n: int, axis: int = 0) -> Any:
    return namespace(x).repeat(x, n, axis=axis)


def _repeat_vjp(x: Any, n: int, axis: int = 0):
    xp = namespace(x)
    axis = axis % x.ndim

    def pullback(dy):
        grouped = (*x.shape[:axis], x.shape[axis], n, *x.shape[axis + 1 :])
        return xp.sum(xp.reshape(dy, grouped), axis=axis + 1)

    return _repeat(x, n, axis), pullback


repeat = Primitive(_repeat, _repeat_vjp)
"""The Repeat node: each slice along ``axis`` copied ``n`` times; backward is a Sum."""


def _sum(x: Any, axis: int | None = None, keepdims: bool = False) -> Any:
    return namespace(x).sum(x, axis=axis, keepdims=keepdims)


def _sum_vjp(x: Any, axis: int | None = None, keepdims: bool = False):
    xp = namespace(x)
    shape = x.shape

    def pullback(dy):
        if axis is not None and not keepdims:
            dy = xp.expand_dims(dy, axis=axis)
        elif axis is None:
            dy = xp.reshape(dy, (1,) * len(shape))
        # a copy, so the gradient never aliases the caller's cotangent
        return xp.asarray(xp.broadcast_to(dy, shape), copy=True)

    return _sum(x, axis, keepdims), pullback


sum = Primitive(_sum, _sum_vjp)
"""The Sum node: backward copies the gradient to every summed element (a Repeat)."""


# --- element-wise ---------------------------------------------------------------------------


def _square(x: Any) -> Any:
    return x * x


def _square_vjp(x: Any):
    return x * x, lambda dy: dy * (2.0 * x)


square = Primitive(_square, _square_vjp)
"""``y = x ** 2``; ``dx = 2 x dy``."""


def _exp(x: Any) -> Any:
    return namespace(x).exp(x)


def _exp_vjp(x: Any):
    y = _exp(x)
    return y, lambda dy: dy * y


exp = Primitive(_exp, _exp_vjp)
"""``y = exp(x)``; ``dx = y dy``."""


def _log(x: Any) -> Any:
    return namespace(x).log(x)


def _log_vjp(x: Any):
    return _log(x), lambda dy: dy / x


log = Primitive(_log, _log_vjp)
"""``y = log(x)``; ``dx = dy / x``."""


# (module, dtype) -> c, with exp(-c) the smallest normal number (a few ulp inside). Keyed by
# the module first, so array_api_strict dtypes are never compared with NumPy's; str(dtype)
# would cost microseconds on the hot path.
_CLIP: dict[tuple[Any, Any], float] = {}


def _clip_bound(xp: Any, dtype: Any) -> float:
    info = xp.finfo(dtype)
    return -math.log(float(info.smallest_normal)) * (1.0 - 8.0 * float(info.eps))


def _sigmoid(x: Any) -> Any:
    # 1 / (1 + exp(-x)) is accurate to a few ulp for every x (for x << 0 the sum is exp(-x)
    # to within rounding, and so is its reciprocal: sigmoid(-80) in float64 included); its only
    # fault is exp(-x) overflowing, or underflowing, far out. x is therefore clipped to
    # [-c, c] with exp(-c) the smallest normal number: beyond it the true value is below the
    # smallest normal number, or 1 to within rounding. No warning under any errstate, NaN
    # stays NaN, and it costs 6 array operations.
    xp = namespace(x)
    c = _CLIP.get((xp, x.dtype))  # one look-up on the hot path; a miss works it out
    if c is None:
        if not is_floating(x.dtype):
            return 1.0 / (1.0 + xp.exp(-x))
        c = _CLIP[(xp, x.dtype)] = _clip_bound(xp, x.dtype)
    if xp is np and x.size >= IN_PLACE_MIN_SIZE:
        # the same operations, written into the one fresh buffer: callers cannot see it, and
        # on large activations it saves four allocations (page faults included)
        a = np.negative(x)
        np.clip(a, -c, c, out=a)  # = -clip(x, -c, c) exactly; one pass where two were
        np.exp(a, out=a)
        np.add(a, 1.0, out=a)
        return np.divide(1.0, a, out=a)
    x = xp.minimum(xp.maximum(x, -c), c)
    return 1.0 / (1.0 + xp.exp(-x))


def _sigmoid_grad(y: Any, dy: Any) -> Any:
    if type(y) is np.ndarray and type(dy) is np.ndarray and y.size >= IN_PLACE_MIN_SIZE and dy.shape == y.shape:
        g = np.subtract(1.0, y)  # one fresh buffer for (1 - y) y dy
        np.multiply(g, y, out=g)
        return np.multiply(g, dy, out=g)
    return dy * (y * (1.0 - y))


def _sigmoid_vjp(x: Any):
    y = _sigmoid(x)
    return y, lambda dy: _sigmoid_grad(y, dy)


sigmoid = Primitive(_sigmoid, _sigmoid_vjp)
"""``y = 1 / (1 + exp(-x))`` computed without overflow; ``dx = dy y (1 - y)``."""


def _tanh(x: Any) -> Any:
    return namespace(x).tanh(x)


def _tanh_vjp(x: Any):
    y = _tanh(x)
    return y, lambda dy: dy * (1.0 - y * y)


tanh = Primitive(_tanh, _tanh_vjp)
"""``y = tanh(x)``; ``dx = dy (1 - y^2)``."""


def _relu(x: Any) -> Any:
    return namespace(x).maximum(x, 0.0)


def _relu_vjp(x: Any):
    xp = namespace(x)
    y = xp.maximum(x, 0.0)
    return y, lambda dy: xp.where(x > 0, dy, 0.0)


relu = Primitive(_relu, _relu_vjp)
"""``y = max(x, 0)``; the gradient passes where ``x > 0``."""


def _softmax(x: Any, axis: int = -1) -> Any:
    xp = namespace(x)
    e = xp.exp(x - reduce_max(xp, x, axis=axis, keepdims=True))
    return e / reduce_sum(xp, e, axis=axis, keepdims=True)


def _softmax_vjp(x: Any, axis: int = -1):
    xp = namespace(x)
    y = _softmax(x, axis)

    def pullback(dy):
        return y * (dy - reduce_sum(xp, dy * y, axis=axis, keepdims=True))

    return y, pullback


softmax = Primitive(_softmax, _softmax_vjp)
"""``y = exp(x) / sum(exp(x))`` along ``axis`` (max-shifted); ``dx = y (dy - sum(dy y))``."""


def _log_softmax(x: Any, axis: int = -1) -> Any:
    xp = namespace(x)
    z = x - reduce_max(xp, x, axis=axis, keepdims=True)
    return z - xp.log(reduce_sum(xp, xp.exp(z), axis=axis, keepdims=True))


def _log_softmax_vjp(x: Any, axis: int = -1):
    xp = namespace(x)
    y = _log_softmax(x, axis)

    def pullback(dy):
        return dy - xp.exp(y) * reduce_sum(xp, dy, axis=axis, keepdims=True)

    return y, pullback


log_softmax = Primitive(_log_softmax, _log_softmax_vjp)
"""``log(softmax(x))`` via log-sum-exp: finite for any finite logits."""


PRIMITIVES: dict[str, Primitive] = {
    "add": add,
    "subtract": subtract,
    "multiply": multiply,
    "matmul": matmul,
    "branch": branch,
    "repeat": repeat,
    "sum": sum,
    "square": square,
    "exp": exp,
    "log": log,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "relu": relu,
    "softmax": softmax,
    "log_softmax": log_softmax,
}
