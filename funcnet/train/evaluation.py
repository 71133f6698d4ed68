"""Evaluation: predictions in batches, accuracy, and loss with accuracy."""

from __future__ import annotations

from typing import Any

from funcnet import tree
from funcnet._arguments import positive_int
from funcnet.backend import is_complex, is_floating, is_integer, is_traced, namespace
from funcnet.layers import Layer
from funcnet.losses import Loss, softmax_cross_entropy
from funcnet.train.data import to_params_backend
from funcnet.train.state import check_parts
from funcnet.train.step import as_params_dtype

__all__ = ["accuracy", "evaluate", "predict"]


def predict(model: Layer, params: Any, x: Any, *, batch_size: int | None = None) -> Any:
    """``model.apply`` over ``x`` in batches (no randomness), concatenated.

    ``x`` is moved to the params' backend and cast to their dtype first (``apply`` itself follows
    the backend's type promotion: float64 data with float32 params gives float64 there).

    Args:
        model: the Layer.
        params: its params (e.g. ``state.params``).
        x: inputs ``(N, ...)``.
        batch_size: rows per ``apply`` call (None: all at once).

    Returns:
        The outputs, ``(N, ...)``, on the params' backend in their dtype.

    Raises:
        TypeError, ValueError: bad input, named.

    Examples:
        >>> import numpy as np
        >>> import funcnet as fn
        >>> _, params = fn.Affine(3).init(fn.random.key(0), (2,))
        >>> fn.train.predict(fn.Affine(3), params, np.ones((5, 2))).shape
        (5, 3)
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"predict: x must be an array, got {type(x).__name__}")
    if isinstance(batch_size, float):
        raise TypeError(f"predict: batch_size must be a positive int or None, got {batch_size!r}")
    batch_size = positive_int("predict", "batch_size", batch_size, or_none=True)
    if is_complex(x.dtype):
        raise TypeError(f"predict: x must be real numbers, got dtype {x.dtype}")
    if len(x.shape) == 0:
        raise ValueError("predict: x must have a batch axis, got a 0-d array")
    (x,) = to_params_backend(params, x)
    x = as_params_dtype("predict", x, tree.any_leaf(params))
    xp = namespace(x)
    n = x.shape[0]
    if batch_size is None or batch_size >= n:
        return model.apply(params, x)
    parts = [model.apply(params, x[i:i + batch_size, ...]) for i in range(0, n, batch_size)]
    return xp.concat(parts, axis=0)


def _labels(t: Any, xp: Any, n: int, classes: int) -> Any:
    """``t`` as integer labels ``(N,)``: labels, an ``(N, 1)`` column of labels, or one-hot rows."""
    shape = tuple(t.shape)
    if shape == (n, 1):  # a column of labels (or of binary targets)
        t, shape = xp.reshape(t, (n,)), (n,)
    if shape == (n,):
        if classes == 1:  # binary: 0/1 targets, as labels or probabilities
            if not is_traced(t) and not bool(xp.all((t == 0) | (t == 1))):
                raise ValueError("accuracy: binary targets (one logit a row) must be 0 or 1")
            return xp.astype(t, xp.int32)
        if not is_integer(t.dtype):
            raise TypeError(f"accuracy: labels must be integers, got {t.dtype} (of shape {tuple(t.shape)} "
                            f"for logits of {classes} classes)")
        if not is_traced(t) and n and not (int(xp.min(t)) >= 0 and int(xp.max(t)) < classes):
            raise ValueError(f"accuracy: labels must be in [0, {classes}), got values from "
                             f"{int(xp.min(t))} to {int(xp.max(t))}")
        return t
    if len(shape) == 2 and shape[0] == n and shape[1] == classes and classes > 1:
        if not is_traced(t) and not bool(xp.all(xp.max(t, axis=1) > 0)):
            raise ValueError("accuracy: a row of one-hot targets is all zeros (no class to match)")
        return xp.argmax(t, axis=1)
    raise ValueError(f"accuracy: targets must be labels ({n},) or ({n}, 1), or one-hot ({n}, {classes}) "
                     f"for logits of shape ({n}, {classes}); got {shape}")


def accuracy(logits: Any, t: Any) -> float:
    """The fraction of rows classified right.

    Several classes: the arg-max of each row against labels ``(N,)``/``(N, 1)`` or one-hot rows.
    One logit a row (a binary model): positive logits mean class 1, against 0/1 targets.

    Args:
        logits: ``(N, C)`` model outputs.
        t: labels or one-hot targets.

    Returns:
        A float in [0, 1].

    Raises:
        ValueError, TypeError: targets that do not fit the logits (width, range, dtype).

    Examples:
        >>> import numpy as np
        >>> from funcnet.train import accuracy
        >>> accuracy(np.array([[2.0, 1.0], [0.0, 3.0]]), np.array([0, 0]))
        0.5
        >>> accuracy(np.array([[1.5], [-0.5]]), np.array([[1.0], [0.0]]))
        1.0
    """
    for what, a in (("logits", logits), ("t", t)):
        if not hasattr(a, "shape") or not hasattr(a, "dtype"):
            raise TypeError(f"accuracy: {what} must be an array, got {type(a).__name__}")
    xp = namespace(logits, t)
    if len(logits.shape) != 2 or logits.shape[0] == 0:
        raise ValueError(f"accuracy: logits must have shape (N, C) with N > 0, got {tuple(logits.shape)}")
    if not hasattr(t, "shape") or len(t.shape) == 0 or t.shape[0] != logits.shape[0]:
        raise ValueError(f"accuracy: targets must have one row per logit row ({logits.shape[0]}), "
                         f"got shape {tuple(getattr(t, 'shape', ()))}")
    n, classes = int(logits.shape[0]), int(logits.shape[1])
    if not is_traced(logits) and not bool(xp.all(xp.isfinite(logits))):
        raise ValueError("accuracy: logits hold NaN or infinite values (an arg-max of them means nothing)")
    labels = _labels(t, xp, n, classes)
    # one logit a row is a binary model: positive means class 1 (an arg-max would always say 0)
    predicted = xp.astype(logits[:, 0] > 0, xp.int32) if classes == 1 else xp.argmax(logits, axis=1)
    hits = xp.sum(xp.astype(predicted == xp.astype(labels, predicted.dtype), xp.int32))
    return int(hits) / n


def evaluate(model: Layer, params: Any, x: Any, t: Any, *, loss: Loss = softmax_cross_entropy,
             batch_size: int | None = None) -> dict[str, float]:
    """``{"loss", "accuracy"}`` of ``params`` on the whole of ``(x, t)``.

    Args:
        model: the Layer.
        params: its params.
        x: inputs.
        t: targets (see `accuracy`).
        loss: the Loss to report.
        batch_size: rows per ``apply`` call.

    Returns:
        ``{"loss": float, "accuracy": float}``.

    Raises:
        ValueError, TypeError: bad input, named.

    Examples:
        >>> import numpy as np
        >>> import funcnet as fn
        >>> model = fn.Affine(2)
        >>> _, params = model.init(fn.random.key(0), (2,))
        >>> sorted(fn.evaluate(model, params, np.ones((4, 2)), np.array([0, 1, 1, 0])))
        ['accuracy', 'loss']
    """
    check_parts("evaluate", model=model, loss=loss)
    if not hasattr(t, "shape") or not hasattr(t, "dtype"):
        raise TypeError(f"evaluate: t must be an array, got {type(t).__name__}")
    logits = predict(model, params, x, batch_size=batch_size)
    lxp = namespace(logits)
    if not bool(lxp.all(lxp.isfinite(logits))):
        raise ValueError("evaluate: the model's outputs are NaN or infinite (NaN or huge values in x, "
                         "or non-finite params): no loss or accuracy to report")
    (t,) = to_params_backend(params, t)
    if hasattr(t, "dtype") and is_floating(t.dtype) and not bool(namespace(t).all(namespace(t).isfinite(t))):
        raise ValueError("evaluate: t contains NaN or infinite values")
    return {"loss": float(loss.value(logits, t)), "accuracy": accuracy(logits, t)}
