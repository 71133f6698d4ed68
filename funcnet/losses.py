"""Losses: pure ``(value, vjp)`` pairs.

The contract, stated once:

    value(logits, targets)  -> scalar (mean over the batch)
    vjp(logits, targets)    -> (scalar, pullback);  pullback(dloss=1.0) -> dlogits

Shape and dtype checks are Python on shapes and run on every call. Checks that need the values
(labels in range, rows of probabilities) run on concrete arrays only, never under ``jax.jit``
(a traced value cannot be read, so cannot raise): ``value`` runs them all; ``vjp`` runs the
label range check alone (one reduction over the labels: an out-of-range label would otherwise
give a silent all-zero one-hot row); `validate_targets` runs them once for a whole data
set, at ``fit``'s start, which is also the only check a jitted jax step gets.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from funcnet import ops
from funcnet.backend import is_complex, is_floating, is_integer, is_traced, namespace, reduce_sum

__all__ = [
    "Loss",
    "SigmoidWithLoss",
    "SoftmaxWithLoss",
    "book_softmax_cross_entropy",
    "mean_squared_error",
    "sigmoid_binary_cross_entropy",
    "softmax_cross_entropy",
    "validate_targets",
]


class Loss(NamedTuple):
    """A scalar loss of ``(logits, targets)`` and its vjp with respect to the logits.

    Build your own from two pure functions; funcnet's losses are built the same way.

    Attributes:
        value: ``value(logits, targets) -> scalar``, the mean loss of the batch.
        vjp: ``vjp(logits, targets) -> (scalar, pullback)`` with ``pullback(dloss=1.0) ->
            dlogits`` of the logits' shape.

    Examples:
        >>> import numpy as np
        >>> def value(y, t):
        ...     return np.mean(np.abs(y - t))
        >>> def vjp(y, t):
        ...     return value(y, t), lambda dloss=1.0: dloss * np.sign(y - t) / y.size
        >>> l1 = Loss(value, vjp)
        >>> loss, pullback = l1.vjp(np.array([1.0, -2.0]), np.array([0.0, 0.0]))
        >>> float(loss), pullback()
        (1.5, array([ 0.5, -0.5]))
    """

    value: Callable[[Any, Any], Any]
    vjp: Callable[[Any, Any], tuple[Any, Callable[..., Any]]]


def _batch_size(name: str, logits: Any) -> int:
    shape = getattr(logits, "shape", None)
    if shape is None:
        raise TypeError(f"{name}: logits must be an array, got {type(logits).__name__}")
    if not is_floating(logits.dtype):
        raise TypeError(f"{name}: logits must be floating point, got {logits.dtype}")
    if len(shape) == 0 or shape[0] == 0:
        raise ValueError(f"{name}: empty batch, logits of shape {tuple(shape)}")
    return shape[0]


def _check_targets_array(name: str, targets: Any) -> None:
    if not hasattr(targets, "shape") or not hasattr(targets, "dtype"):
        raise TypeError(f"{name}: targets must be an array, got {type(targets).__name__}")
    if is_complex(targets.dtype):
        raise TypeError(f"{name}: targets must be real numbers, got dtype {targets.dtype}")


def _scale(dloss: Any, n: float) -> Any:
    """``dloss / n``; a NumPy float64 scalar becomes a Python float, so float32 stays float32."""
    return float(dloss) / n if isinstance(dloss, numbers.Real) else dloss / n


def _class_targets(name: str, logits: Any, targets: Any) -> bool:
    """Check shapes for ``(N, C)`` logits; True when targets are integer labels, False for one-hot."""
    n = _batch_size(name, logits)
    if logits.ndim != 2:
        raise ValueError(f"{name}: logits must have shape (N, C), got {tuple(logits.shape)}")
    if logits.shape[1] == 0:
        raise ValueError(f"{name}: logits have no classes (shape {tuple(logits.shape)}); C must be >= 1")
    _check_targets_array(name, targets)
    shape = tuple(targets.shape)
    if shape == (n, 1) and logits.shape[1] != 1 and is_integer(targets.dtype):
        raise ValueError(f"{name}: labels must have shape ({n},), got a column of shape {shape} "
                         "(pass t[:, 0] or t.reshape(-1))")
    if shape == (n,):
        if not is_integer(targets.dtype):
            raise TypeError(
                f"{name}: labels of shape ({n},) must be integers, got {targets.dtype} "
                "(float labels where class indices are meant?)"
            )
        return True
    if len(shape) == 2 and shape[0] == n:
        if shape[1] != logits.shape[1]:
            raise ValueError(
                f"{name}: one-hot targets have {shape[1]} classes but logits have "
                f"{logits.shape[1]} (targets {shape}, logits {tuple(logits.shape)})"
            )
        return False
    raise ValueError(
        f"{name}: targets must be labels of shape ({n},) or one-hot of shape "
        f"({n}, {logits.shape[1]}), got {shape}"
    )


def _one_maximum_checks_labels(dtype: Any, num_classes: int) -> bool:
    """Whether labels of NumPy ``dtype`` viewed as unsigned integers of the same width are all below
    ``num_classes`` exactly when they lie in ``[0, num_classes)``: always for unsigned labels; for
    signed ones while ``num_classes`` is at most ``2 ** (bits - 1)``, as a negative label then
    reads as at least that (int8's -1 is 255: below 300 classes, so 300 classes need two reductions)."""
    return dtype.kind == "u" or num_classes <= 1 << (8 * dtype.itemsize - 1)


def _check_label_range(name: str, targets: Any, num_classes: int) -> None:
    """Integer labels in ``[0, num_classes)``; skipped on traced arrays (nothing can be read)."""
    if is_traced(targets):
        return
    if type(targets) is np.ndarray and _one_maximum_checks_labels(targets.dtype, num_classes):
        # one reduction where min and max take two (it runs in every eager vjp): seen as
        # unsigned integers of the same width, negative labels are huge, so one maximum
        # finds both kinds of fault; the slow path below then words the message
        width = np.dtype(targets.dtype.str.replace("i", "u"))  # same width and byte order
        if int(np.maximum.reduce(targets.view(width), axis=None)) < num_classes:
            return
    xp = namespace(targets)
    low, high = int(xp.min(targets)), int(xp.max(targets))
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"{name}: labels must be in [0, {num_classes}), got values in [{low}, {high}]"
        )


def _check_distributions(name: str, xp: Any, t: Any) -> None:
    """Rows of probabilities: entries in [0, 1], each row summing to 1; NaN fails."""
    # the vjp's gradient softmax - t and the loss assume distributions ([2, -1, 0] sums to 1
    # yet drives the loss to -inf). Every test is written "not ok" so that NaN, which
    # compares False with everything, fails it instead of passing.
    if is_traced(t):
        return
    low, high = float(xp.min(t)), float(xp.max(t))
    if not (low >= 0.0 and high <= 1.0):
        got = "NaN" if low != low or high != high else f"values in [{low:.3g}, {high:.3g}]"
        raise ValueError(f"{name}: one-hot or probability targets must lie in [0, 1], got {got}")
    worst = float(xp.max(xp.abs(reduce_sum(xp, t, axis=1) - 1.0)))
    if not worst <= 1e-3:
        raise ValueError(f"{name}: each row of one-hot or probability targets must sum to 1; "
                         f"a row is off by {worst:.3g}")


def _one_hot(xp: Any, labels: Any, num_classes: int, dtype: Any) -> Any:
    # a comparison-built one-hot: no eye[t] fancy indexing, so every backend runs it
    return xp.astype(labels[:, None] == xp.arange(num_classes), dtype)


def _targets_as(xp: Any, targets: Any, dtype: Any) -> Any:
    return targets if targets.dtype == dtype else xp.astype(targets, dtype)


# --- softmax cross-entropy ------------------------------------------------------------------

_SCE = "softmax_cross_entropy"


def _sce_value(logits: Any, targets: Any) -> Any:
    is_labels = _class_targets(_SCE, logits, targets)
    xp = namespace(logits, targets)
    n = logits.shape[0]
    logp = ops.log_softmax.apply(logits)
    if is_labels:
        _check_label_range(_SCE, targets, logits.shape[1])
        picked = xp.take_along_axis(logp, targets[:, None], axis=1)  # any integer dtype indexes
    else:
        t = _targets_as(xp, targets, logp.dtype)
        _check_distributions(_SCE, xp, t)
        picked = t * logp
    return -xp.sum(picked) / n


def _sce_vjp(logits: Any, targets: Any):
    is_labels = _class_targets(_SCE, logits, targets)
    xp = namespace(logits, targets)
    n, c = logits.shape
    if is_labels:
        _check_label_range(_SCE, targets, c)  # an out-of-range label is an all-zero one-hot row
    # one pass shared by the loss and its gradient: z = x - max, e = exp(z), s = sum(e);
    # log softmax = z - log s, so loss = sum(t (log s - z)) / n and dlogits = (e / s - t) / n
    # (target rows are distributions: one-hot, or probabilities summing to 1)
    z = ops.shifted_by_max(xp, logits, axis=1)  # floored: t = 0 times z is never 0 * inf
    e = xp.exp(z)
    s = reduce_sum(xp, e, axis=1, keepdims=True)
    t = _one_hot(xp, targets, c, z.dtype) if is_labels else _targets_as(xp, targets, z.dtype)
    loss = reduce_sum(xp, t * (xp.log(s) - z)) / n

    def pullback(dloss: Any = 1.0) -> Any:
        return (e / s - t) * _scale(dloss, n)

    return loss, pullback


softmax_cross_entropy = Loss(_sce_value, _sce_vjp)
"""Softmax then cross-entropy (the book's SoftmaxWithLoss), through log-softmax.

``value(logits, targets)`` is ``mean(logsumexp(logits) - logits[label])`` over the batch;
``vjp``'s pullback gives ``dloss * (softmax(logits) - onehot) / N``.

The gradient is finite for any finite logits. So is the loss, unless it exceeds the dtype's
range: a row spanning more than the largest finite number (float32 ``[3e38, -3e38, 0]``)
contributes at most that number, never NaN, and only a batch sum beyond the range is ``inf``.

Args:
    logits: floating ``(N, C)`` scores.
    targets: integer labels ``(N,)`` in ``[0, C)``, or one-hot / probability rows ``(N, C)``
        (entries in [0, 1], each row summing to 1).

Returns:
    ``value``: the scalar mean loss in the logits' dtype; ``vjp``: ``(loss, pullback)``.

Raises:
    TypeError: logits that are not floating, float labels of shape ``(N,)``.
    ValueError: shapes that do not fit, an empty batch, labels out of range (``value`` and
        ``vjp``), or one-hot / probability rows that are not distributions (``value``) -- on
        concrete arrays. Under ``jax.jit`` no value can be read: an out-of-range label there
        is an all-zero row (a loss of 0 for it), so check targets first, as ``fit`` does
        with `validate_targets`.

Examples:
    >>> import numpy as np
    >>> logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]])
    >>> round(float(softmax_cross_entropy.value(logits, np.array([0, 1]))), 6)
    0.31854
    >>> loss, pullback = softmax_cross_entropy.vjp(logits, np.array([0, 1]))
    >>> np.round(pullback(), 4)
    array([[-0.1705,  0.1212,  0.0493],
           [ 0.0543, -0.0988,  0.0445]])
    >>> softmax_cross_entropy.value(logits, np.array([0, 3]))
    Traceback (most recent call last):
    ...
    ValueError: softmax_cross_entropy: labels must be in [0, 3), got values in [0, 3]
"""

SoftmaxWithLoss = softmax_cross_entropy
"""The book's name for `softmax_cross_entropy` (the same object).

Examples:
    >>> SoftmaxWithLoss is softmax_cross_entropy
    True
"""


# --- the book's form, for compatibility -----------------------------------------------------

_BOOK = "book_softmax_cross_entropy"


def _book_parts(logits: Any, targets: Any):
    is_labels = _class_targets(_BOOK, logits, targets)
    xp = namespace(logits, targets)
    n, c = logits.shape
    y = ops.softmax.apply(logits)
    labels = targets if is_labels else xp.argmax(targets, axis=1)
    onehot = _one_hot(xp, labels, c, y.dtype)
    loss = -xp.sum(xp.log(xp.sum(y * onehot, axis=1) + 1e-7)) / n
    return xp, n, y, onehot, loss, labels, is_labels


def _book_checks(xp: Any, logits: Any, targets: Any, is_labels: bool) -> None:
    if is_labels:
        _check_label_range(_BOOK, targets, logits.shape[1])
    else:
        _check_distributions(_BOOK, xp, targets)


def _book_value(logits: Any, targets: Any) -> Any:
    xp, _, _, _, loss, _, is_labels = _book_parts(logits, targets)
    _book_checks(xp, logits, targets, is_labels)
    return loss


def _book_vjp(logits: Any, targets: Any):
    _, n, y, onehot, loss, _, is_labels = _book_parts(logits, targets)
    if is_labels:
        _check_label_range(_BOOK, targets, logits.shape[1])
    return loss, lambda dloss=1.0: (y - onehot) * _scale(dloss, n)


book_softmax_cross_entropy = Loss(_book_value, _book_vjp)
"""The book's ``-log(y + 1e-7)`` cross-entropy, kept only for reproducing the book's numbers.

It caps every example's loss near 16 and its gradient is that of the exact loss (the book's
backward ignores the ``1e-7``). Prefer `softmax_cross_entropy`. One-hot targets are
turned into labels by their arg-max, as in the book.

Args:
    logits: floating ``(N, C)`` scores.
    targets: integer labels ``(N,)`` in ``[0, C)`` or one-hot rows ``(N, C)``.

Returns:
    ``value``: the scalar mean loss; ``vjp``: ``(loss, pullback)``, ``pullback(dloss=1.0)``
    giving ``dloss * (softmax(logits) - onehot) / N``.

Raises:
    TypeError: as `softmax_cross_entropy`.
    ValueError: as `softmax_cross_entropy` (labels out of range in ``value`` and
        ``vjp``; rows that are not distributions in ``value``), on concrete arrays.

Examples:
    >>> import numpy as np
    >>> float(book_softmax_cross_entropy.value(np.array([[0.0, 1000.0]]), np.array([0])))
    16.11809565095832
"""


# --- binary and regression losses ------------------------------------------------------------

_BCE = "sigmoid_binary_cross_entropy"


def _same_shape(name: str, logits: Any, targets: Any) -> None:
    _batch_size(name, logits)
    _check_targets_array(name, targets)
    if tuple(getattr(targets, "shape", ())) != tuple(logits.shape):
        raise ValueError(
            f"{name}: targets must have the shape of the predictions {tuple(logits.shape)}, "
            f"got {tuple(getattr(targets, 'shape', ()))}"
        )


def _bce_value(logits: Any, targets: Any) -> Any:
    _same_shape(_BCE, logits, targets)
    xp = namespace(logits, targets)
    t = _targets_as(xp, targets, logits.dtype)
    # written "not ok" so that NaN targets fail too
    if not is_traced(t) and not (float(xp.min(t)) >= 0.0 and float(xp.max(t)) <= 1.0):
        raise ValueError(f"{_BCE}: targets must lie in [0, 1]")
    return _bce_loss(xp, logits, t)


def _bce_loss(xp: Any, logits: Any, t: Any) -> Any:
    # softplus(x) - t x, with softplus(x) = max(x, 0) + log1p(exp(-|x|)): no overflow
    elementwise = xp.maximum(logits, 0.0) + xp.log1p(xp.exp(-xp.abs(logits))) - t * logits
    return xp.mean(elementwise)


def _bce_vjp(logits: Any, targets: Any):
    _same_shape(_BCE, logits, targets)
    xp = namespace(logits, targets)
    t = _targets_as(xp, targets, logits.dtype)
    size = float(np.prod(logits.shape))

    def pullback(dloss: Any = 1.0) -> Any:
        return (ops.sigmoid.apply(logits) - t) * _scale(dloss, size)

    return _bce_loss(xp, logits, t), pullback


sigmoid_binary_cross_entropy = Loss(_bce_value, _bce_vjp)
"""Sigmoid then binary cross-entropy on logits, averaged over all elements (the book's
SigmoidWithLoss).

Computed as ``softplus(x) - t x`` without overflow; the gradient is
``dloss * (sigmoid(x) - t) / size``.

Args:
    logits: floating scores of any shape with a batch axis first.
    targets: the same shape, entries in [0, 1] (hard 0/1 or soft).

Returns:
    ``value``: the scalar mean loss; ``vjp``: ``(loss, pullback)``.

Raises:
    TypeError: logits that are not floating, complex targets.
    ValueError: targets of another shape, an empty batch, or (``value``, on concrete arrays)
        targets outside [0, 1] or NaN.

Examples:
    >>> import numpy as np
    >>> round(float(sigmoid_binary_cross_entropy.value(np.array([[0.0], [2.0]]), np.array([[1.0], [1.0]]))), 6)
    0.410038
"""

SigmoidWithLoss = sigmoid_binary_cross_entropy
"""The book's name for `sigmoid_binary_cross_entropy` (the same object).

Examples:
    >>> SigmoidWithLoss is sigmoid_binary_cross_entropy
    True
"""

_MSE = "mean_squared_error"


def _mse_value(y: Any, targets: Any) -> Any:
    _same_shape(_MSE, y, targets)
    xp = namespace(y, targets)
    d = y - _targets_as(xp, targets, y.dtype)
    return xp.mean(d * d)


def _mse_vjp(y: Any, targets: Any):
    _same_shape(_MSE, y, targets)
    xp = namespace(y, targets)
    d = y - _targets_as(xp, targets, y.dtype)
    size = float(np.prod(y.shape))
    return xp.mean(d * d), lambda dloss=1.0: d * (2.0 * _scale(dloss, size))


mean_squared_error = Loss(_mse_value, _mse_vjp)
"""``mean((y - t) ** 2)`` over all elements (the seed's MSE).

Args:
    y: floating predictions with a batch axis first.
    targets: real targets of the same shape.

Returns:
    ``value``: the scalar mean; ``vjp``: ``(loss, pullback)``, ``pullback(dloss=1.0)``
    giving ``dloss * 2 (y - t) / size``.

Raises:
    TypeError: predictions that are not floating, complex targets.
    ValueError: targets of another shape, an empty batch.

Examples:
    >>> import numpy as np
    >>> float(mean_squared_error.value(np.array([[1.0, 2.0]]), np.array([[0.0, 0.0]])))
    2.5
"""


def validate_targets(loss: Loss, targets: Any, out_shape: tuple[int, ...]) -> None:
    """Run ``loss``'s value checks once for a whole target array.

    The checks are the loss's own (shapes, label range, rows of probabilities, targets in
    [0, 1]): the loss is evaluated on zero logits, one forward pass over an
    ``(N, *out_shape)`` array, once per ``fit``. A jitted step cannot check values, so this is
    where they are checked for it.

    Args:
        loss: the `Loss` the targets are for.
        targets: the whole target array of a data set.
        out_shape: the model's per-example output shape (``(C,)`` for C classes).

    Returns:
        None; it only raises.

    Raises:
        TypeError: as the loss's ``value`` (float labels, complex targets, ...).
        ValueError: as the loss's ``value`` (labels out of range, rows that are not
            distributions, shapes that do not fit, an empty batch), or 0-d targets.

    Examples:
        >>> import numpy as np
        >>> validate_targets(softmax_cross_entropy, np.array([0, 2, 1]), (3,))
        >>> validate_targets(softmax_cross_entropy, np.array([[2.0, -1.0, 0.0]]), (3,))
        Traceback (most recent call last):
        ...
        ValueError: softmax_cross_entropy: one-hot or probability targets must lie in [0, 1], got values in [-1, 2]
    """
    xp = namespace(targets)
    if getattr(targets, "ndim", 0) == 0:  # not "an empty batch": there is no batch axis at all
        raise ValueError(f"validate_targets: targets need a batch axis, got shape {tuple(getattr(targets, 'shape', ()))}")
    n = targets.shape[0]
    logits = xp.zeros((n, *out_shape), dtype=xp.float32)
    loss.value(logits, targets)
