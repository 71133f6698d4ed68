"""Differentiable primitives: the nodes of the seed's computational graphs.

Every primitive is a ``Primitive(apply, vjp)``:

    apply(*args)            -> out
    vjp(*args)              -> (out, pullback)
    pullback(d_out)         -> one cotangent per array argument (a tuple when there are several)

Broadcasting is the seed's Repeat node in disguise, so the backward rule of a broadcasting
``add``/``multiply`` is its dual, Sum: the incoming gradient is summed back to each operand's
shape (`unbroadcast`).

Examples:
    >>> import numpy as np
    >>> z, pullback = multiply.vjp(np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    >>> z, pullback(np.ones(2))
    (array([3., 8.]), (array([3., 4.]), array([1., 2.])))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from funcnet.backend import IN_PLACE_MIN_SIZE, is_floating, largest_finite, namespace, reduce_max, reduce_sum

__all__ = [
    "PRIMITIVES",
    "Primitive",
    "add",
    "branch",
    "exp",
    "log",
    "log_softmax",
    "matmul",
    "matmul_cotangents",
    "multiply",
    "relu",
    "repeat",
    "shifted_by_max",
    "sigmoid",
    "sigmoid_clip",
    "softmax",
    "square",
    "subtract",
    "sum",
    "tanh",
    "unbroadcast",
]


class Primitive(NamedTuple):
    """A pure function together with its vector-Jacobian product: a node of the graph.

    Build your own from two functions, as every primitive here is built.

    Attributes:
        apply: ``apply(*args, **static) -> out``.
        vjp: ``vjp(*args, **static) -> (out, pullback)``; ``pullback(d_out)`` returns one
            cotangent per array argument (a tuple when there are several).

    Examples:
        >>> import numpy as np
        >>> cube = Primitive(lambda x: x ** 3, lambda x: (x ** 3, lambda dy: dy * 3 * x ** 2))
        >>> y, pullback = cube.vjp(np.array([2.0]))
        >>> y, pullback(np.array([1.0]))
        (array([8.]), array([12.]))
    """

    apply: Callable[..., Any]
    vjp: Callable[..., tuple[Any, Callable[..., Any]]]


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(getattr(x, "shape", ()))


def unbroadcast(g: Any, shape: tuple[int, ...]) -> Any:
    """``g`` summed over the axes that broadcasting added to reach ``g``'s shape from ``shape``.

    The backward of the Repeat node that broadcasting is: the gradient of a broadcast operand.

    Args:
        g: an incoming gradient of the broadcast result's shape.
        shape: the operand's shape before broadcasting.

    Returns:
        ``g`` itself when the shapes agree, otherwise a new array of shape ``shape``.

    Examples:
        >>> import numpy as np
        >>> unbroadcast(np.ones((2, 3)), (3,))
        array([2., 2., 2.])
        >>> unbroadcast(np.ones((2, 3)), (2, 1))
        array([[3.],
               [3.]])
    """
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
"""The addition node: ``z = x + y``; both operands receive ``dz`` (summed back to their shape).

Args:
    x, y: arrays (or scalars) that broadcast together.

Returns:
    ``apply``: ``x + y``; ``vjp``: ``(z, pullback)`` with ``pullback(dz) -> (dx, dy)``.

Raises:
    ValueError: shapes that do not broadcast, naming both.

Examples:
    >>> import numpy as np
    >>> z, pullback = add.vjp(np.zeros((2, 3)), np.zeros(3))
    >>> pullback(np.ones((2, 3)))[1]
    array([2., 2., 2.])
"""


def _subtract(x: Any, y: Any) -> Any:
    _check_broadcast("subtract", x, y)
    return x - y


def _subtract_vjp(x: Any, y: Any):
    sx, sy = _shape(x), _shape(y)

    def pullback(dz):
        return unbroadcast(dz, sx), unbroadcast(-dz, sy)

    return _subtract(x, y), pullback


subtract = Primitive(_subtract, _subtract_vjp)
"""The subtraction node: ``z = x - y``; ``dx = dz``, ``dy = -dz`` (summed back to their shape).

Args:
    x, y: arrays (or scalars) that broadcast together.

Returns:
    ``apply``: ``x - y``; ``vjp``: ``(z, pullback)`` with ``pullback(dz) -> (dx, dy)``.

Raises:
    ValueError: shapes that do not broadcast, naming both.

Examples:
    >>> import numpy as np
    >>> z, pullback = subtract.vjp(np.array([3.0]), np.array([1.0]))
    >>> z, pullback(np.array([1.0]))
    (array([2.]), (array([1.]), array([-1.])))
"""


def _multiply(x: Any, y: Any) -> Any:
    _check_broadcast("multiply", x, y)
    return x * y


def _multiply_vjp(x: Any, y: Any):
    sx, sy = _shape(x), _shape(y)

    def pullback(dz):
        return unbroadcast(dz * y, sx), unbroadcast(dz * x, sy)

    return _multiply(x, y), pullback


multiply = Primitive(_multiply, _multiply_vjp)
"""The multiplication node: ``z = x * y``; each operand receives ``dz`` times the other one.

Args:
    x, y: arrays (or scalars) that broadcast together.

Returns:
    ``apply``: ``x * y``; ``vjp``: ``(z, pullback)`` with ``pullback(dz) -> (dx, dy)``.

Raises:
    ValueError: shapes that do not broadcast, naming both.

Examples:
    >>> import numpy as np
    >>> multiply.apply(np.array([[1, 2], [3, 4]]), 10)
    array([[10, 20],
           [30, 40]])
"""


def _matmul(x: Any, w: Any) -> Any:
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[0]:
        raise ValueError(
            f"ops.matmul: expected shapes (N, D) and (D, H), got {_shape(x)} and {_shape(w)}"
        )
    return namespace(x, w).matmul(x, w)


def matmul_cotangents(xp: Any, x: Any, w: Any, dy: Any, input_grad: bool = True) -> tuple[Any, Any]:
    """The pullback of ``x @ w``: ``(dy @ w.T, x.T @ dy)``; ``dx`` is None when not wanted.

    The one matrix-product vjp of the library (the primitive, MatMul and Affine use it); the first
    layer's input gradient is never used in training and is a whole GEMM, hence ``input_grad``.

    Args:
        xp: the arrays' module.
        x: ``(N, D)``.
        w: ``(D, H)``.
        dy: ``(N, H)``.
        input_grad: compute ``dx``.

    Returns:
        ``(dx, dw)``.

    Examples:
        >>> import numpy as np
        >>> dx, dw = matmul_cotangents(np, np.ones((2, 3)), np.ones((3, 4)), np.ones((2, 4)), input_grad=False)
        >>> dx is None, dw.shape
        (True, (3, 4))
    """
    return (xp.matmul(dy, w.T) if input_grad else None), xp.matmul(x.T, dy)


def _matmul_vjp(x: Any, w: Any):
    xp = namespace(x, w)
    return _matmul(x, w), lambda dy: matmul_cotangents(xp, x, w, dy)


matmul = Primitive(_matmul, _matmul_vjp)
"""The MatMul node ``y = x @ W``: ``dx = dy @ W.T`` and ``dW = x.T @ dy``.

Args:
    x: an ``(N, D)`` array.
    w: a ``(D, H)`` array.

Returns:
    ``apply``: the ``(N, H)`` product; ``vjp``: ``(y, pullback)`` with
    ``pullback(dy) -> (dx, dW)``.

Raises:
    ValueError: arrays that are not 2-d or whose inner sizes differ, naming both shapes.

Examples:
    >>> import numpy as np
    >>> matmul.apply(np.array([[1, 2], [3, 4]]), np.array([[5, 6], [7, 8]]))
    array([[19, 22],
           [43, 50]])
"""


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
"""The branch (copy) node: one value used ``n`` times; the gradients of the uses add up.

Args:
    x: any array.
    n: the number of uses (static, default 2).

Returns:
    ``apply``: a tuple of ``n`` references to ``x``; ``vjp``: ``(outs, pullback)`` with
    ``pullback(dys) -> sum(dys)``.

Raises:
    ValueError: (from the pullback) a number of cotangents other than ``n``.

Examples:
    >>> import numpy as np
    >>> outs, pullback = branch.vjp(np.array([1.0]), n=3)
    >>> len(outs), pullback((np.array([1.0]), np.array([2.0]), np.array([3.0])))
    (3, array([6.]))
"""


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
"""The Repeat node: each slice along ``axis`` copied ``n`` times; backward is a Sum.

Args:
    x: any array.
    n: the number of copies of each slice (static).
    axis: the axis repeated along (static, default 0).

Returns:
    ``apply``: ``x`` with ``n`` times as many entries along ``axis``; ``vjp``:
    ``(y, pullback)`` with ``pullback(dy)`` summing each group of ``n`` copies.

Examples:
    >>> import numpy as np
    >>> y, pullback = repeat.vjp(np.array([[1.0, 2.0]]), 3, axis=0)
    >>> y.shape, pullback(np.ones((3, 2)))
    ((3, 2), array([[3., 3.]]))
"""


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
"""The Sum node: backward copies the gradient to every summed element (a Repeat).

Args:
    x: any array.
    axis: the axis summed over, or None for all (static).
    keepdims: keep the summed axis with size 1 (static).

Returns:
    ``apply``: the sum; ``vjp``: ``(y, pullback)`` with ``pullback(dy)`` a fresh array of
    ``x``'s shape.

Examples:
    >>> import numpy as np
    >>> y, pullback = sum.vjp(np.ones((2, 3)), axis=1)
    >>> y, pullback(np.array([1.0, 2.0]))
    (array([3., 3.]), array([[1., 1., 1.],
           [2., 2., 2.]]))
"""


# --- element-wise ---------------------------------------------------------------------------


def _square(x: Any) -> Any:
    return x * x


def _square_vjp(x: Any):
    return x * x, lambda dy: dy * (2.0 * x)


square = Primitive(_square, _square_vjp)
"""``y = x ** 2``; ``dx = 2 x dy``.

Args:
    x: any array.

Returns:
    ``apply``: ``x * x``; ``vjp``: ``(y, pullback)`` with ``pullback(dy) -> 2 x dy``.

Examples:
    >>> import numpy as np
    >>> y, pullback = square.vjp(np.array([3.0]))
    >>> y, pullback(np.array([1.0]))
    (array([9.]), array([6.]))
"""


def _exp(x: Any) -> Any:
    return namespace(x).exp(x)


def _exp_vjp(x: Any):
    y = _exp(x)
    return y, lambda dy: dy * y


exp = Primitive(_exp, _exp_vjp)
"""``y = exp(x)``; ``dx = y dy``.

Args:
    x: a floating array.

Returns:
    ``apply``: ``exp(x)``; ``vjp``: ``(y, pullback)`` with ``pullback(dy) -> y dy``.

Examples:
    >>> import numpy as np
    >>> exp.apply(np.array([0.0]))
    array([1.])
"""


def _log(x: Any) -> Any:
    return namespace(x).log(x)


def _log_vjp(x: Any):
    return _log(x), lambda dy: dy / x


log = Primitive(_log, _log_vjp)
"""``y = log(x)``; ``dx = dy / x``.

Args:
    x: a positive floating array.

Returns:
    ``apply``: ``log(x)``; ``vjp``: ``(y, pullback)`` with ``pullback(dy) -> dy / x``.

Examples:
    >>> import numpy as np
    >>> y, pullback = log.vjp(np.array([1.0, 4.0]))
    >>> y[0], pullback(np.ones(2))
    (np.float64(0.0), array([1.  , 0.25]))
"""


# (module, dtype) -> c, with exp(-c) the smallest normal number (a few ulp inside). Keyed by
# the module first, so array_api_strict dtypes are never compared with NumPy's; str(dtype)
# would cost microseconds on the hot path.
_CLIP: dict[tuple[Any, Any], float] = {}


def sigmoid_clip(xp: Any, dtype: Any) -> float:
    """``c`` with ``exp(-c)`` the smallest normal number of ``dtype`` (a few ulp inside): the
    sigmoid clips its input to ``[-c, c]`` (see `sigmoid`); fused code (the step plans) uses the
    same bound to give the same bits.

    Args:
        xp: the array module.
        dtype: a floating dtype of it.

    Returns:
        The bound, a Python float (cached).

    Examples:
        >>> import numpy as np
        >>> round(sigmoid_clip(np, np.dtype(np.float32)), 2)
        87.34
    """
    c = _CLIP.get((xp, dtype))
    if c is None:
        info = xp.finfo(dtype)
        c = _CLIP[(xp, dtype)] = -math.log(float(info.smallest_normal)) * (1.0 - 8.0 * float(info.eps))
    return c


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
        c = sigmoid_clip(xp, x.dtype)
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
"""``y = 1 / (1 + exp(-x))`` computed without overflow; ``dx = dy y (1 - y)``.

Accurate to a few ulp for every ``x``, no floating-point warning, NaN stays NaN.

Args:
    x: a floating array.

Returns:
    ``apply``: ``sigmoid(x)``; ``vjp``: ``(y, pullback)`` with
    ``pullback(dy) -> dy y (1 - y)``.

Examples:
    >>> import numpy as np
    >>> sigmoid.apply(np.array([-1000.0, 0.0, 1000.0]))  # far out: the smallest normal, 1
    array([2.22507386e-308, 5.00000000e-001, 1.00000000e+000])
"""


def _tanh(x: Any) -> Any:
    return namespace(x).tanh(x)


def _tanh_vjp(x: Any):
    y = _tanh(x)
    return y, lambda dy: dy * (1.0 - y * y)


tanh = Primitive(_tanh, _tanh_vjp)
"""``y = tanh(x)``; ``dx = dy (1 - y^2)``.

Args:
    x: a floating array.

Returns:
    ``apply``: ``tanh(x)``; ``vjp``: ``(y, pullback)`` with ``pullback(dy) -> dy (1 - y^2)``.

Examples:
    >>> import numpy as np
    >>> y, pullback = tanh.vjp(np.array([0.0]))
    >>> y, pullback(np.array([2.0]))
    (array([0.]), array([2.]))
"""


def _relu(x: Any) -> Any:
    return namespace(x).maximum(x, 0.0)


def _relu_vjp(x: Any):
    xp = namespace(x)
    y = xp.maximum(x, 0.0)
    return y, lambda dy: xp.where(x > 0, dy, 0.0)


relu = Primitive(_relu, _relu_vjp)
"""``y = max(x, 0)``; the gradient passes where ``x > 0``.

Args:
    x: a real array.

Returns:
    ``apply``: ``max(x, 0)``; ``vjp``: ``(y, pullback)`` with ``pullback(dy)`` equal to
    ``dy`` where ``x > 0`` and 0 elsewhere (0 at the kink).

Examples:
    >>> import numpy as np
    >>> y, pullback = relu.vjp(np.array([-1.0, 0.0, 2.0]))
    >>> y, pullback(np.array([5.0, 5.0, 5.0]))
    (array([0., 0., 2.]), array([0., 0., 5.]))
"""


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
"""``y = exp(x) / sum(exp(x))`` along ``axis`` (max-shifted); ``dx = y (dy - sum(dy y))``.

Args:
    x: a floating array.
    axis: the axis normalised over (static, default -1).

Returns:
    ``apply``: rows of probabilities, finite for finite ``x``; ``vjp``: ``(y, pullback)``.

Examples:
    >>> import numpy as np
    >>> softmax.apply(np.array([[0.0, 0.0], [1000.0, 0.0]]))
    array([[0.5, 0.5],
           [1. , 0. ]])
"""


def shifted_by_max(xp: Any, x: Any, axis: int = -1) -> Any:
    """``x - max(x)`` along ``axis``, floored at minus the dtype's largest finite number.

    The log-sum-exp shift. For finite ``x`` the difference overflows to ``-inf`` only when a
    row spans more than the dtype's range (float32 ``[3e38, -3e38]``); the floor keeps it
    finite, so ``0 * shifted`` stays 0 and log-softmax stays finite. ``exp`` of the floor is
    0, as ``exp(-inf)`` is. Every entry of ordinary inputs is bit for bit ``x - max``.

    Args:
        xp: the array module of ``x``.
        x: a floating array.
        axis: the axis the maximum is taken along.

    Returns:
        An array of ``x``'s shape and dtype, every entry in ``[-largest, 0]`` for finite ``x``.

    Examples:
        >>> import numpy as np
        >>> shifted_by_max(np, np.array([[1.0, 3.0, 2.0]]))
        array([[-2.,  0., -1.]])
        >>> with np.errstate(over="ignore"):  # the subtraction overflows; the floor catches it
        ...     shifted_by_max(np, np.array([[3e38, -3e38]], np.float32))
        array([[ 0.0000000e+00, -3.4028235e+38]], dtype=float32)
    """
    # x - max itself still overflows (NumPy warns once); the floor is one cheap pass that
    # turns its -inf back into a number, where a non-overflowing shift would cost three
    z = x - reduce_max(xp, x, axis=axis, keepdims=True)
    if not is_floating(x.dtype):
        return z
    largest = largest_finite(x.dtype)
    if type(z) is np.ndarray:
        return np.maximum(z, -largest, out=z)  # z is this call's own fresh buffer
    return xp.maximum(z, -largest)


def _log_softmax(x: Any, axis: int = -1) -> Any:
    xp = namespace(x)
    z = shifted_by_max(xp, x, axis)
    return z - xp.log(reduce_sum(xp, xp.exp(z), axis=axis, keepdims=True))


def _log_softmax_vjp(x: Any, axis: int = -1):
    xp = namespace(x)
    y = _log_softmax(x, axis)

    def pullback(dy):
        return dy - xp.exp(y) * reduce_sum(xp, dy, axis=axis, keepdims=True)

    return y, pullback


log_softmax = Primitive(_log_softmax, _log_softmax_vjp)
"""``log(softmax(x))`` via log-sum-exp: finite for any finite logits.

The shift is `shifted_by_max`, so an entry further than the dtype's largest number
below its row's maximum is that number negated, not ``-inf``.

Args:
    x: a floating array.
    axis: the axis normalised over (static, default -1).

Returns:
    ``apply``: ``x - logsumexp(x)`` along ``axis``; ``vjp``: ``(y, pullback)`` with
    ``pullback(dy) -> dy - softmax(x) sum(dy)``.

Examples:
    >>> import numpy as np
    >>> log_softmax.apply(np.array([[1000.0, 1000.0]]))
    array([[-0.69314718, -0.69314718]])
"""


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
"""Every primitive by name (the tests walk it to check each vjp).

Examples:
    >>> sorted(PRIMITIVES)[:4]
    ['add', 'branch', 'exp', 'log']
"""
