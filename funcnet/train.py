"""The pure training step, ``fit``, and evaluation helpers.

``step(state, batch) -> (state, metrics)`` is a pure function of its arguments; on the jax
backend ``jax.jit(step)`` compiles it unchanged. :func:`fit` is a loop around it that is itself
a function of the state: the order of epoch ``e`` comes from ``random.fold_in(state.key, e)``
and the epoch (and the position inside it) from ``state.step``, so a run resumed from a saved
state sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from funcnet import random, tree
from funcnet.backend import get as get_backend
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
from funcnet.layers import Layer, can_skip_input_grad, uses_rng
from funcnet.losses import Loss, softmax_cross_entropy, validate_targets

# fold_in(state.key, e) shuffles epoch e; the step's own randomness (Dropout) comes from a
# separate stream of the same key so the two never coincide.
_STEP_STREAM = 0x7FFFFFFF


class TrainState(NamedTuple):
    """Everything a training run carries from one step to the next."""

    params: Any
    opt_state: Any
    key: Any
    step: Any


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; ``state`` is the last finite state (see :func:`fit`)."""

    def __init__(self, message: str, state: TrainState, history: dict[str, Any]):
        super().__init__(message)
        self.state = state
        self.history = history


def init_state(model: Layer, optimizer: Any, key: Any, in_shape: tuple[int, ...], *,
               dtype: Any = "float32", backend: Any = None) -> TrainState:
    """A fresh state: params drawn on the host from ``key`` (then moved to ``backend``)."""
    k_params, k_train = random.split(key)
    _, params = model.init(k_params, tuple(in_shape), dtype)
    if backend is not None:
        params = put(params, backend)
        if name_of(get_backend(backend)) == "jax":
            k_train = put(k_train, backend)  # jax keys draw with jax.random, eagerly or traced
    return TrainState(params, optimizer.init(params), k_train, 0)


def step_key(state: TrainState) -> Any:
    """The key of the step's own randomness: a pure function of ``state.key`` and ``state.step``."""
    return random.fold_in(random.fold_in(state.key, _STEP_STREAM), state.step)


def make_train_step(model: Layer, loss: Loss, optimizer: Any) -> Callable[[TrainState, Any], tuple[TrainState, dict]]:
    """``step(state, (x, t)) -> (state, {"loss": scalar})``: forward, backward, update.

    ``x`` is cast to the params' dtype at this boundary. The returned function carries
    ``model``, ``loss`` and ``optimizer`` as attributes (``fit`` validates data with them).
    """
    model_vjp, loss_vjp, update = model.vjp, loss.vjp, optimizer.update
    stochastic = uses_rng(model)
    # the gradient with respect to the data is never used: skip it where the model can
    backward_kwargs = {"input_grad": False} if can_skip_input_grad(model) else {}

    def step(state: TrainState, batch: Any) -> tuple[TrainState, dict]:
        if not isinstance(batch, tuple | list) or len(batch) != 2:
            raise TypeError(f"step: batch must be a pair (x, t), got {type(batch).__name__}")
        x, t = batch
        params = state.params
        x = _as_params_dtype("step", x, tree.any_leaf(params))
        rng = step_key(state) if stochastic else None
        logits, pullback = model_vjp(params, x, rng=rng)
        value, loss_pullback = loss_vjp(logits, t)
        grads, _ = pullback(loss_pullback(1.0), **backward_kwargs)
        # the pullbacks hold every activation: let them go before the update allocates new params
        del logits, pullback, loss_pullback
        params, opt_state = update(params, grads, state.opt_state)
        return TrainState(params, opt_state, state.key, state.step + 1), {"loss": value}

    step.model, step.loss, step.optimizer = model, loss, optimizer
    return step


def _as_params_dtype(where: str, x: Any, leaf: Any) -> Any:
    """``x`` cast to ``leaf``'s dtype; the checks run only when a cast is needed (free otherwise)."""
    if not hasattr(x, "dtype"):
        raise TypeError(f"{where}: x must be an array, got {type(x).__name__}")
    try:
        same = x.dtype == leaf.dtype
    except Exception:  # NumPy's dtype cannot even be compared with array_api_strict's
        same = False
    if same:
        return x
    try:
        xp = namespace(x, leaf)
    except TypeError as err:
        raise TypeError(f"{where}: {err}") from None
    if is_complex(x.dtype):
        raise TypeError(f"{where}: x must be real numbers, got dtype {x.dtype}")
    return xp.astype(x, leaf.dtype)


# --- fit ------------------------------------------------------------------------------------


def _check_batch_size(batch_size: Any, n: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise TypeError(f"fit: batch_size must be an int, got {type(batch_size).__name__}")
    if not 1 <= batch_size <= n:
        raise ValueError(f"fit: batch_size must be between 1 and the data size {n}, got {batch_size}")
    return int(batch_size)


def validate_data(x: Any, t: Any, *, model: Layer | None = None, loss: Loss | None = None,
                  params: Any = None) -> None:
    """The once-per-run checks of ``fit``: matching lengths, floating and finite inputs, valid targets."""
    xp = namespace(x, t)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"fit: x is empty (shape {tuple(x.shape)})")
    if t.shape[0] != x.shape[0]:
        raise ValueError(f"fit: x and t have different lengths: x {tuple(x.shape)}, t {tuple(t.shape)}")
    if not is_floating(x.dtype):
        if not is_integer(x.dtype):
            raise TypeError(f"fit: x must be real numbers, got dtype {x.dtype}")
    elif not bool(xp.all(xp.isfinite(x))):
        raise ValueError("fit: x contains NaN or infinite values")
    if is_floating(t.dtype) and not bool(xp.all(xp.isfinite(t))):
        raise ValueError("fit: t contains NaN or infinite values")
    if model is not None and loss is not None and params is not None:
        out = model.apply(params, xp.astype(x[0:1, ...], tree.any_leaf(params).dtype))
        validate_targets(loss, t, tuple(out.shape[1:]))


def progress_bar(enabled: bool | None, total: int, initial: int = 0, **kwargs: Any) -> Any:
    """A tqdm bar, or None when ``enabled`` is False, tqdm is missing, or (``None``) stderr is no terminal."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    # mininterval: a log file (not a terminal) gets a few lines, not one per update
    return tqdm(total=total, initial=initial, leave=True, mininterval=0.5, **kwargs)


def fit(step: Callable, state: TrainState, x: Any, t: Any, *, epochs: int, batch_size: int,
        eval_interval: int | None = 20, progress: bool | None = None, log: bool = False,
        on_nonfinite: str = "raise", callback: Callable[[TrainState, dict], None] | None = None,
        validate: bool = True, compile_epoch: bool | None = None,
        epochs_per_call: int | None = None) -> tuple[TrainState, dict[str, Any]]:
    """Train ``epochs`` more epochs of shuffled mini-batches; returns ``(state, history)``.

    The book's batching: ``len(x) // batch_size`` iterations an epoch, the tail dropped. Every
    ``eval_interval`` steps (counted by ``state.step``) the mean loss since the last record is
    appended to ``history["loss"]`` (and printed in the book's format with ``log=True``).
    A NaN or infinite loss raises :class:`NonFiniteLossError` carrying the last finite state:
    the input of the failing step where the loss is read every step (NumPy, array_api_strict),
    the state at the last record on device backends (``on_nonfinite="skip"`` drops such
    updates instead, reading every loss). Ctrl-C returns the last complete state
    with ``history["interrupted"] = True``. Nothing passed in is modified.

    On the jax backend (``compile_epoch=None`` picks it there, unless a ``callback`` or
    ``on_nonfinite="skip"`` needs every step) whole epochs run as one ``jax.jit``-compiled
    ``lax.scan`` of ``step``, shuffling included: ``epochs_per_call`` of them a call (all
    remaining ones, or one when a progress bar is shown). Non-finite losses are then found
    once a call, and the error carries the state at that call's start.
    """
    if on_nonfinite not in ("raise", "skip"):
        raise ValueError(f"fit: on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int | np.integer) or epochs < 0:
        raise ValueError(f"fit: epochs must be a non-negative int, got {epochs!r}")
    if epochs_per_call is not None and (not isinstance(epochs_per_call, int) or epochs_per_call < 1):
        raise ValueError(f"fit: epochs_per_call must be a positive int or None, got {epochs_per_call!r}")
    if eval_interval is not None and (not isinstance(eval_interval, int) or eval_interval < 1):
        raise ValueError(f"fit: eval_interval must be a positive int or None, got {eval_interval!r}")
    if not isinstance(state, TrainState):
        raise TypeError(f"fit: state must be a TrainState (see init_state), got {type(state).__name__}")
    for label, a in (("x", x), ("t", t)):
        if not hasattr(a, "shape") or not hasattr(a, "dtype"):
            raise TypeError(f"fit: {label} must be an array, got {type(a).__name__}")
    if len(x.shape) == 0 or x.shape[0] == 0:
        raise ValueError(f"fit: x is empty (shape {tuple(x.shape)})")
    x, t = to_params_backend(state.params, x, t)
    n = x.shape[0]
    batch_size = _check_batch_size(batch_size, n)
    xp = namespace(x, t)
    if validate:
        # on jax, eager checks would compile a kernel each: check host copies instead
        host = name_of(xp) == "jax"
        validate_data(*(to_numpy((x, t)) if host else (x, t)), model=getattr(step, "model", None),
                      loss=getattr(step, "loss", None),
                      params=to_numpy(state.params) if host else state.params)
    leaf = tree.any_leaf(state.params)
    if leaf is not None:  # cast once here (the spiral is float64) rather than in every step
        x = _as_params_dtype("fit", x, leaf)

    on_host = name_of(xp) in ("numpy", "array_api_strict")  # loss readable without a device sync
    iters = n // batch_size
    current = int(to_numpy(state.step))  # a host copy of state.step: no device read per step
    first_epoch, first_iter = divmod(current, iters)
    last_epoch = first_epoch + epochs
    host_key = to_numpy(state.key)
    history: dict[str, Any] = {"loss": [], "step": [], "epoch": [], "interrupted": False}
    bar = progress_bar(progress, last_epoch, first_epoch, unit="epoch")
    started = time.perf_counter()
    total, count = 0.0, 0
    # the latest state reached by steps whose losses were all seen to be finite. Only this one
    # state is kept besides the current one: a functional update must not pin old copies.
    last_good = state

    def nonfinite(value: float, where: str, carried: TrainState) -> NonFiniteLossError:
        return NonFiniteLossError(f"fit: the loss became {value} {where}; the error carries the "
                                  "last finite state (the input of the failing steps)", carried, history)

    def add(loss: Any, epoch: int, it: int) -> None:
        """Count one step; ``loss`` is None for a skipped one (it is not averaged)."""
        nonlocal total, count, current, last_good
        current += 1
        if loss is not None:
            total, count = total + loss, count + 1
        if eval_interval is None or current % eval_interval or not count:
            return
        mean = float(total) / count
        if not math.isfinite(mean):
            raise nonfinite(mean, f"by step {current} (epoch {epoch + 1})", last_good)
        history["loss"].append(mean)
        history["step"].append(current)
        history["epoch"].append(epoch + 1)
        if log:
            print(f"| epoch {epoch + 1} |  iter {it + 1} / {iters} | "
                  f"time {int(time.perf_counter() - started)}[s] | loss {mean:.2f}")
        total, count = 0.0, 0
        last_good = state

    def order(epoch: int) -> np.ndarray:
        return random.permutation(random.fold_in(host_key, epoch), n)

    def steps_of(epoch: int, start_iter: int) -> None:
        nonlocal state
        perm = order(epoch)
        perm = perm if xp is np else xp.asarray(perm)
        xs, ts = xp.take(x, perm, axis=0), xp.take(t, perm, axis=0)
        for it in range(start_iter, iters):
            lo = it * batch_size
            new_state, metrics = step(state, (xs[lo:lo + batch_size, ...], ts[lo:lo + batch_size, ...]))
            loss = metrics["loss"]
            if on_host or on_nonfinite == "skip":
                loss = float(loss)
                if not math.isfinite(loss):
                    if on_nonfinite == "raise":
                        raise nonfinite(loss, f"at step {current + 1} (epoch {epoch + 1}, "
                                              f"iteration {it + 1})", state)
                    new_state, loss = state._replace(step=new_state.step), None  # drop the update
            state = new_state
            add(loss, epoch, it)
            if callback is not None:
                callback(state, metrics)

    def compiled_epochs(epoch: int, chunk: int) -> None:
        nonlocal state, last_good
        start = state
        perms = xp.asarray(np.stack([order(e) for e in range(epoch, epoch + chunk)]))
        state, losses = runner(state, x, t, perms)
        losses = np.asarray(losses, dtype=np.float64).reshape(-1)
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            raise nonfinite(losses[bad[0]], f"at step {current + bad[0] + 1}", start)
        for k, loss in enumerate(losses):
            add(loss, epoch + k // iters, k % iters)
        last_good = state

    runner = None
    if name_of(xp) == "jax":
        # one state type on every jax path: a jax key draws Dropout masks with jax.random
        # whether the epochs are compiled or not, so the paths (and resumes) agree
        state = last_good = _as_jax_state(state)
    if _use_scan(compile_epoch, xp) and callback is None and on_nonfinite == "raise" and epochs:
        runner = _compiled_epochs(step, iters, batch_size)
    try:
        epoch = first_epoch
        while epoch < last_epoch:
            if runner is None or (epoch == first_epoch and first_iter):
                steps_of(epoch, first_iter if epoch == first_epoch else 0)
                done = 1
            else:
                done = min(last_epoch - epoch, epochs_per_call or (1 if bar else last_epoch - epoch))
                compiled_epochs(epoch, done)
            epoch += done
            if bar is not None:
                bar.update(done)
                if history["loss"]:
                    bar.set_postfix(loss=f"{history['loss'][-1]:.3f}")
    except KeyboardInterrupt:
        history["interrupted"] = True
    finally:
        if bar is not None:
            bar.close()
    history["time"] = time.perf_counter() - started
    return state, history


def to_params_backend(params: Any, *arrays: Any) -> tuple[Any, ...]:
    """``arrays`` moved, once, to the params' backend where they are elsewhere (host data,
    device params); floating ones are cast on the host first (float64 may not exist there)."""
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


def _use_scan(compile_epoch: bool | None, xp: Any) -> bool:
    if compile_epoch is None:
        return name_of(xp) == "jax"
    if compile_epoch and name_of(xp) != "jax":
        raise ValueError("fit: compile_epoch=True needs data on the jax backend")
    return bool(compile_epoch)


_EPOCH_RUNNERS: dict[tuple[int, int, int], Any] = {}
_MAX_RUNNERS = 8


def _as_jax_state(state: TrainState) -> TrainState:
    import jax.numpy as jnp

    return tree.map(jnp.asarray, state)


def _compiled_epochs(step: Callable, iters: int, batch_size: int) -> Callable:
    """``runner(state, x, t, perms) -> (state, losses)``: ``jax.jit`` of a ``lax.scan`` over
    epochs (one row of ``perms`` each) of a ``lax.scan`` of ``step`` over that epoch's batches."""
    cache_key = (id(step), iters, batch_size)
    if cache_key in _EPOCH_RUNNERS:
        return _EPOCH_RUNNERS[cache_key][1]
    import jax
    import jax.numpy as jnp

    used = iters * batch_size

    def one_epoch(carry, perm):
        state, x, t = carry
        # the book's order: shuffle the whole set, then cut consecutive batches, tail dropped
        xb = jnp.reshape(jnp.take(x, perm[:used], axis=0), (iters, batch_size, *x.shape[1:]))
        tb = jnp.reshape(jnp.take(t, perm[:used], axis=0), (iters, batch_size, *t.shape[1:]))

        def body(s, batch):
            s, metrics = step(s, batch)
            return s, metrics["loss"]

        state, losses = jax.lax.scan(body, state, (xb, tb))
        return (state, x, t), losses

    @jax.jit
    def runner(state, x, t, perms):
        (state, _, _), losses = jax.lax.scan(one_epoch, (state, x, t), perms)
        return state, losses

    _EPOCH_RUNNERS[cache_key] = (step, runner)  # keep step alive so its id is not reused
    while len(_EPOCH_RUNNERS) > _MAX_RUNNERS:  # the oldest compiled programs go first
        del _EPOCH_RUNNERS[next(iter(_EPOCH_RUNNERS))]
    return runner


# --- evaluation -----------------------------------------------------------------------------


def predict(model: Layer, params: Any, x: Any, *, batch_size: int | None = None) -> Any:
    """``model.apply`` over ``x`` in batches (no randomness), concatenated.

    ``x`` is moved to the params' backend and cast to their dtype first.
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"predict: x must be an array, got {type(x).__name__}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer)):
        raise TypeError(f"predict: batch_size must be a positive int or None, got {batch_size!r}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"predict: batch_size must be a positive int or None, got {batch_size}")
    if is_complex(x.dtype):
        raise TypeError(f"predict: x must be real numbers, got dtype {x.dtype}")
    (x,) = to_params_backend(params, x)
    leaf = tree.any_leaf(params)
    if leaf is not None:
        x = _as_params_dtype("predict", x, leaf)
    xp = namespace(x)
    n = x.shape[0]
    if batch_size is None or batch_size >= n:
        return model.apply(params, x)
    parts = [model.apply(params, x[i:i + batch_size, ...]) for i in range(0, n, batch_size)]
    return xp.concat(parts, axis=0)


def accuracy(logits: Any, t: Any) -> float:
    """The fraction of rows whose arg-max matches the label (``t`` as labels or one-hot)."""
    xp = namespace(logits, t)
    labels = xp.argmax(t, axis=1) if t.ndim == 2 else t
    predicted = xp.argmax(logits, axis=1)
    hits = xp.sum(xp.astype(predicted == xp.astype(labels, predicted.dtype), xp.int32))
    return int(hits) / int(logits.shape[0])


def evaluate(model: Layer, params: Any, x: Any, t: Any, *, loss: Loss = softmax_cross_entropy,
             batch_size: int | None = None) -> dict[str, float]:
    """``{"loss", "accuracy"}`` of ``params`` on the whole of ``(x, t)``."""
    logits = predict(model, params, x, batch_size=batch_size)
    (t,) = to_params_backend(params, t)
    return {"loss": float(loss.value(logits, t)), "accuracy": accuracy(logits, t)}
