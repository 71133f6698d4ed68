"""Losses: pure ``(value, vjp)`` pairs.

The contract, stated once::

    value(logits, targets)  -> scalar (mean over the batch)
    vjp(logits, targets)    -> (scalar, pullback);  pullback(dloss=1.0) -> dlogits

Shape and dtype checks are Python on shapes and run on every call. Checks that need the values
(labels in range) run in ``value`` on concrete arrays only, never in ``vjp`` (the training hot
loop) and never under ``jax.jit``; :func:`validate_targets` runs them once, at ``fit``'s start.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from funcnet import ops
from funcnet.backend import is_complex, is_floating, is_integer, is_traced, namespace, reduce_max, reduce_sum


class Loss(NamedTuple):
    """A scalar loss of ``(logits, targets)`` and its vjp with respect to the logits."""

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
    _check_targets_array(name, targets)
    shape = tuple(targets.shape)
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


def _check_label_range(name: str, targets: Any, num_classes: int) -> None:
    if is_traced(targets):
        return
    xp = namespace(targets)
    low, high = int(xp.min(targets)), int(xp.max(targets))
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"{name}: labels must be in [0, {num_classes}), got values in [{low}, {high}]"
        )


def _check_rows_sum_to_one(name: str, xp: Any, t: Any) -> None:
    # vjp's gradient softmax - t assumes distributions: checked where values are read anyway
    if is_traced(t):
        return
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
        _check_rows_sum_to_one(_SCE, xp, t)
        picked = t * logp
    return -xp.sum(picked) / n


def _sce_vjp(logits: Any, targets: Any):
    is_labels = _class_targets(_SCE, logits, targets)
    xp = namespace(logits, targets)
    n, c = logits.shape
    # one pass shared by the loss and its gradient: z = x - max, e = exp(z), s = sum(e);
    # log softmax = z - log s, so loss = sum(t (log s - z)) / n and dlogits = (e / s - t) / n
    # (target rows are distributions: one-hot, or probabilities summing to 1)
    z = logits - reduce_max(xp, logits, axis=1, keepdims=True)
    e = xp.exp(z)
    s = reduce_sum(xp, e, axis=1, keepdims=True)
    t = _one_hot(xp, targets, c, z.dtype) if is_labels else _targets_as(xp, targets, z.dtype)
    loss = reduce_sum(xp, t * (xp.log(s) - z)) / n

    def pullback(dloss: Any = 1.0) -> Any:
        return (e / s - t) * _scale(dloss, n)

    return loss, pullback


softmax_cross_entropy = Loss(_sce_value, _sce_vjp)
"""Softmax then cross-entropy (the book's SoftmaxWithLoss), through log-softmax.

Targets are integer labels ``(N,)`` or one-hot / probability rows ``(N, C)``. Finite for any
finite logits; the gradient is ``(softmax(logits) - onehot) / N``.
"""

SoftmaxWithLoss = softmax_cross_entropy
"""The book's name for :data:`softmax_cross_entropy`."""


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


def _book_value(logits: Any, targets: Any) -> Any:
    _, _, _, _, loss, labels, is_labels = _book_parts(logits, targets)
    if is_labels:
        _check_label_range(_BOOK, labels, logits.shape[1])
    return loss


def _book_vjp(logits: Any, targets: Any):
    _, n, y, onehot, loss, _, _ = _book_parts(logits, targets)
    return loss, lambda dloss=1.0: (y - onehot) * _scale(dloss, n)


book_softmax_cross_entropy = Loss(_book_value, _book_vjp)
"""The book's ``-log(y + 1e-7)`` cross-entropy, kept only for reproducing the book's numbers.

It caps every example's loss near 16 and its gradient is that of the exact loss (the book's
backward ignores the ``1e-7``). Prefer :data:`softmax_cross_entropy`.
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
    if not is_traced(t) and (float(xp.min(t)) < 0.0 or float(xp.max(t)) > 1.0):
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
"""Sigmoid then binary cross-entropy on logits, averaged over all elements; targets in [0, 1]."""

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
"""``mean((y - t) ** 2)`` over all elements (the seed's MSE)."""


def validate_targets(loss: Loss, targets: Any, out_shape: tuple[int, ...]) -> None:
    """Run ``loss``'s value checks (label range, rows of distributions, shapes) once for a whole
    target array.

    ``out_shape`` is the model's per-example output shape. The loss is evaluated on zero logits:
    one forward pass of the loss over an ``(N, *out_shape)`` array, once per ``fit``.
    """
    xp = namespace(targets)
    n = targets.shape[0] if getattr(targets, "ndim", 0) else 0
    logits = xp.zeros((n, *out_shape), dtype=xp.float32)
    loss.value(logits, targets)
