"""The data's boundary: moved, cast and checked once, before the first step."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from funcnet import tree
from funcnet.backend import (
    is_complex,
    is_floating,
    is_integer,
    name_of,
    namespace,
    numpy_dtype,
    put,
    to_numpy,
)
from funcnet.layers import Layer
from funcnet.losses import Loss, validate_targets
from funcnet.train.step import TrainStep, as_params_dtype

__all__ = ["Data", "prepare", "to_params_backend", "validate_data"]


class Data(NamedTuple):
    """Training data on the params' backend, in their dtype, checked.

    Attributes:
        x: inputs, ``(N, ...)``, in the params' dtype.
        t: targets, ``(N,)`` labels or ``(N, ...)`` arrays.
        xp: their array module.
        backend: its name (``"numpy"``, ``"jax"``, ...).
    """

    x: Any
    t: Any
    xp: Any
    backend: str

    @property
    def size(self) -> int:
        """The number of examples."""
        return int(self.x.shape[0])

    @property
    def losses_on_host(self) -> bool:
        """Whether a step's loss can be read without a device sync (NumPy, array_api_strict)."""
        return self.backend in ("numpy", "array_api_strict")


def _check_arrays(where: str, x: Any, t: Any) -> None:
    for label, a in (("x", x), ("t", t)):
        if not hasattr(a, "shape") or not hasattr(a, "dtype"):
            raise TypeError(f"{where}: {label} must be an array, got {type(a).__name__}")
    if len(x.shape) < 2:
        raise ValueError(f"{where}: x must be (N, features...) with a batch axis first, got shape {tuple(x.shape)}"
                         + (" (one feature per example? use x[:, None])" if len(x.shape) == 1 else ""))
    if x.shape[0] == 0:
        raise ValueError(f"{where}: x is empty (shape {tuple(x.shape)})")
    if len(t.shape) == 0:
        raise ValueError(f"{where}: t must have a batch axis (labels (N,) or targets (N, ...)), got a 0-d array")
    if t.shape[0] != x.shape[0]:
        raise ValueError(f"{where}: x and t have different lengths: x {tuple(x.shape)}, t {tuple(t.shape)}")
    if is_complex(x.dtype) or not (is_floating(x.dtype) or is_integer(x.dtype)):
        raise TypeError(f"{where}: x must be real numbers, got dtype {x.dtype}")


def validate_data(x: Any, t: Any, *, model: Layer | None = None, loss: Loss | None = None,
                  params: Any = None, where: str = "fit") -> None:
    """The once-per-run value checks: lengths, finite inputs, targets the loss accepts.

    With ``model``, ``loss`` and ``params`` the targets are checked against the model's output
    (label range, one-hot width, probabilities); without them only the generic checks run.

    Args:
        x: inputs ``(N, ...)``.
        t: targets.
        model: the model (optional).
        loss: its loss (optional).
        params: its params (optional).
        where: the caller's name, for messages.

    Raises:
        ValueError: a check failed; the message names it.
        TypeError: a dtype is wrong.

    Examples:
        >>> import numpy as np
        >>> from funcnet import train
        >>> train.validate_data(np.zeros((2, 1)), np.array([0.0, np.nan]))
        Traceback (most recent call last):
        ...
        ValueError: fit: t contains NaN or infinite values
    """
    _check_arrays(where, x, t)
    xp = namespace(x, t)
    if is_floating(x.dtype) and not bool(xp.all(xp.isfinite(x))):
        raise ValueError(f"{where}: x contains NaN or infinite values")
    if is_floating(t.dtype) and not bool(xp.all(xp.isfinite(t))):
        raise ValueError(f"{where}: t contains NaN or infinite values")
    if model is not None and loss is not None and params is not None:
        try:  # one row, for the output's shape; a cast that overflows is named by the caller, not warned about
            with np.errstate(over="ignore", invalid="ignore"):
                out = model.apply(params, as_params_dtype(where, x[0:1, ...], tree.any_leaf(params)))
        except (ValueError, TypeError) as err:
            raise type(err)(f"{where}: examples of shape {tuple(x.shape[1:])} (x is {tuple(x.shape)}) do not fit "
                            f"the model or its params: {err}") from err
        validate_targets(loss, t, tuple(out.shape[1:]))


def to_params_backend(params: Any, *arrays: Any) -> tuple[Any, ...]:
    """``arrays`` moved, once, to the params' backend where they are elsewhere.

    Floating arrays are cast on the host first (float64 may not exist on the device).

    Args:
        params: a tree with at least one array (else ``arrays`` come back unchanged).
        *arrays: the arrays to move.

    Returns:
        The moved arrays, in order.

    Examples:
        >>> import numpy as np
        >>> from funcnet import backend
        >>> params = backend.put({"W": np.ones((2, 2), np.float32)}, "array_api_strict")
        >>> (x,) = to_params_backend(params, np.ones((3, 2)))
        >>> backend.name_of(backend.namespace(x)), str(x.dtype)
        ('array_api_strict', 'array_api_strict.float32')
    """
    leaf = tree.any_leaf(params)
    if leaf is None:
        return arrays
    target = namespace(leaf)
    moved = []
    for a in arrays:
        if namespace(a) is not target:
            host = to_numpy(a)
            a = put(host.astype(numpy_dtype(leaf.dtype)) if host.dtype.kind == "f" else host, target)
        moved.append(a)
    return tuple(moved)


def prepare(step: Any, params: Any, x: Any, t: Any, *, validate: bool = True) -> Data:
    """``(x, t)`` moved to the params' backend, ``x`` cast to their dtype, and checked.

    The targets are checked against the model only when ``step`` is a `TrainStep` (a
    plain function hides its model and loss).

    Args:
        step: the step that will train on the data.
        params: the params it starts from.
        x: inputs.
        t: targets.
        validate: run the value checks (finiteness, targets).

    Returns:
        The `Data`.

    Raises:
        ValueError, TypeError: bad data, named.

    Examples:
        >>> import numpy as np
        >>> import funcnet as fn
        >>> step = fn.TrainStep(fn.Affine(3), fn.softmax_cross_entropy, fn.optim.sgd(0.1))
        >>> state = fn.init_state(step.model, step.optimizer, fn.random.key(0), (2,))
        >>> data = prepare(step, state.params, np.ones((4, 2)), np.array([0, 1, 2, 0]))
        >>> data.x.dtype, data.backend, data.size
        (dtype('float32'), 'numpy', 4)
    """
    _check_arrays("fit", x, t)
    x, t = to_params_backend(params, x, t)
    xp = namespace(x, t)
    backend = name_of(xp)
    leaf = tree.any_leaf(params)
    with np.errstate(over="ignore"):  # an overflowing cast is named by the checks, not warned about
        cast = as_params_dtype("fit", x, leaf)
    if validate:
        # eager checks on jax would compile a kernel each: check host copies there
        host = to_numpy if backend == "jax" else (lambda a: a)
        model, loss = (step.model, step.loss) if isinstance(step, TrainStep) else (None, None)
        hx, ht, hparams = host((x, t, params if model else None))  # one trip to the host
        validate_data(hx, ht, model=model, loss=loss, params=hparams)
        if cast is not x and is_floating(cast.dtype):
            checked = host(cast)
            cxp = namespace(checked)
            if not bool(cxp.all(cxp.isfinite(checked))):
                raise ValueError(f"fit: x is finite as {x.dtype} but overflows the params' dtype {leaf.dtype} "
                                 "(scale the data, or train in a wider dtype)")
    return Data(cast, t, xp, backend)
