"""The training state and its errors: everything a run carries from one step to the next."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from funcnet import random
from funcnet.backend import get as get_backend
from funcnet.backend import name_of, put
from funcnet.layers import Layer
from funcnet.optim.base import GradientTransform

__all__ = ["NonFiniteLossError", "TrainState", "TrainingInterrupted", "init_state", "step_key"]

# fold_in(state.key, e) shuffles epoch e; the step's own randomness (Dropout) comes from a
# separate stream of the same key so the two never coincide.
_STEP_STREAM = 0x7FFFFFFF


class TrainState(NamedTuple):
    """Everything a training run carries from one step to the next.

    Attributes:
        params: the model's params (a pytree of arrays).
        opt_state: the optimizer's state.
        key: the run's random key (shuffles and the step's own randomness derive from it).
        step: the number of steps taken (an int, or a 0-d array inside ``jax.jit``).
        epoch: the number of whole epochs completed (kept by `fit`).
        offset: examples of the current epoch already used (non-zero only after an interrupt).

    Examples:
        >>> import funcnet as fn
        >>> state = fn.init_state(fn.Affine(3), fn.optim.sgd(0.1), fn.random.key(0), (2,))
        >>> state.step, state.epoch, state.offset
        (0, 0, 0)
    """

    params: Any
    opt_state: Any
    key: Any
    step: Any
    epoch: int = 0
    offset: int = 0


class NonFiniteLossError(FloatingPointError):
    """Training met a NaN or infinite loss, params or optimizer state.

    Attributes:
        state: the last state whose params and optimizer state were all finite.
        history: the history recorded up to the failure.

    Examples:
        >>> import funcnet as fn
        >>> x, t = fn.datasets.spiral.load_data()
        >>> net = fn.TwoLayerNet(2, 10, 3)
        >>> step = fn.TrainStep(net, fn.softmax_cross_entropy, fn.optim.sgd(1e38))
        >>> state = fn.init_state(step.model, step.optimizer, fn.random.key(0), (2,))
        >>> try:
        ...     fn.fit(step, state, x, t, epochs=1, batch_size=30)
        ... except fn.NonFiniteLossError as err:
        ...     fn.train.nonfinite_leaf(err.state) is None  # what it carries is finite
        True
    """

    def __init__(self, message: str, state: TrainState, history: dict[str, Any]):
        super().__init__(message)
        self.state = state
        self.history = history


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGINT) stopped `fit`; it is a ``KeyboardInterrupt``.

    Attributes:
        state: the last complete state (every step in it finished), resumable with ``fit``.
        history: the history recorded up to the interrupt.

    Examples:
        >>> import funcnet as fn
        >>> x, t = fn.datasets.spiral.load_data()
        >>> net = fn.TwoLayerNet(2, 10, 3)
        >>> step = fn.TrainStep(net, fn.softmax_cross_entropy, fn.optim.sgd(1.0))
        >>> state = fn.init_state(step.model, step.optimizer, fn.random.key(0), (2,))
        >>> def ctrl_c(s, metrics):
        ...     if s.step == 15:
        ...         raise KeyboardInterrupt
        >>> try:
        ...     fn.fit(step, state, x, t, epochs=3, batch_size=30, callback=ctrl_c)
        ... except fn.TrainingInterrupted as err:
        ...     state = err.state
        >>> state.step, state.epoch, state.offset
        (15, 1, 150)
        >>> state, _ = fn.fit(step, state, x, t, epochs=2, batch_size=30)  # epoch 2's rest, 3
        >>> state.step, state.epoch
        (30, 3)
    """

    def __init__(self, message: str, state: TrainState, history: dict[str, Any]):
        super().__init__(message)
        self.state = state
        self.history = history


def _check_in_shape(in_shape: Any) -> tuple[int, ...]:
    if isinstance(in_shape, tuple | list) and all(
            isinstance(d, int | np.integer) and not isinstance(d, bool) for d in in_shape):
        return tuple(int(d) for d in in_shape)
    raise TypeError(f"init_state: in_shape must be a tuple of ints, the shape of one example "
                    f"without the batch axis (e.g. (2,)), got {in_shape!r}")


def check_parts(where: str, model: Any = None, optimizer: Any = None, loss: Any = None) -> None:
    """Name a constructor passed for a value, or arguments given in the wrong order."""

    def hint(x: Any) -> str:
        return " (did you pass the constructor instead of calling it?)" if callable(x) else ""

    if model is not None and not isinstance(model, Layer):
        raise TypeError(f"{where}: model must be a Layer, got {type(model).__name__}{hint(model)}")
    if isinstance(optimizer, GradientTransform):
        raise TypeError(f"{where}: optimizer is a gradient transformation, which changes grads but never the "
                        "params; put it in front of an optimizer: optim.chain(transform, optim.sgd(0.1))")
    if optimizer is not None and not (callable(getattr(optimizer, "init", None))
                                      and callable(getattr(optimizer, "update", None))):
        raise TypeError(f"{where}: optimizer must have init and update (e.g. optim.sgd(0.1)), "
                        f"got {type(optimizer).__name__}{hint(optimizer)}")
    if loss is not None and not (callable(getattr(loss, "value", None)) and callable(getattr(loss, "vjp", None))):
        raise TypeError(f"{where}: loss must be a Loss with value and vjp (e.g. softmax_cross_entropy), "
                        f"got {type(loss).__name__}")


def init_state(model: Layer, optimizer: Any, key: Any, in_shape: tuple[int, ...], *,
               dtype: Any = "float32", backend: Any = None) -> TrainState:
    """A fresh state: params drawn on the host from ``key``, then moved to ``backend``.

    Args:
        model: the Layer to train.
        optimizer: an Optimizer (``init``, ``update``).
        key: a key from `funcnet.random.key`.
        in_shape: the shape of one example, without the batch axis.
        dtype: the params' dtype.
        backend: where the params live (a name or module; None keeps NumPy).

    Returns:
        A `TrainState` at step 0.

    Raises:
        TypeError: a constructor was passed instead of a model/optimizer, or ``in_shape`` is not a shape.

    Examples:
        >>> import funcnet as fn
        >>> state = fn.init_state(fn.Affine(3), fn.optim.sgd(0.1), fn.random.key(0), (2,))
        >>> state.params["W"].shape
        (2, 3)
    """
    check_parts("init_state", model=model, optimizer=optimizer)
    in_shape = _check_in_shape(in_shape)
    k_params, k_train = random.split(key)
    _, params = model.init(k_params, in_shape, dtype)
    if backend is not None:
        params = put(params, backend)
        if name_of(get_backend(backend)) == "jax":
            k_train = put(k_train, backend)  # a jax key: the compiled epochs derive step keys traced
    return TrainState(params, optimizer.init(params), k_train, 0)


def step_key(state: TrainState) -> Any:
    """The key of the step's own randomness: a pure function of ``state.key`` and ``state.step``.

    Args:
        state: the state before the step.

    Returns:
        A key.

    Examples:
        >>> import funcnet as fn
        >>> state = fn.init_state(fn.Affine(3), fn.optim.sgd(0.1), fn.random.key(0), (2,))
        >>> bool((step_key(state) == step_key(state)).all())  # a pure function of the state
        True
    """
    return random.fold_in(random.fold_in(state.key, _STEP_STREAM), state.step)
