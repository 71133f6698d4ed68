"""Optimizers: pure ``(init, update)`` pairs over pytrees of params.

The contract, stated once::

    init(params)                 -> state             # NamedTuple: count, then trees shaped like params
    update(params, grads, state) -> (params, state)   # fresh arrays; nothing is written to

``count`` is the number of updates made so far, a 0-d int32 array of the params' backend (so
the state traces under ``jax.jit``). ``lr`` is a number or a schedule (:mod:`funcnet.schedules`),
a function of ``count`` before the update. The update rules are the book's (its
``common/optimizer.py``) by default; where the book departs from the standard (optax, PyTorch)
form, a documented argument selects the standard one.

Gradient transformations (:func:`clip_by_global_norm`) are stateless functions of the grads,
put in front of an optimizer with :func:`chain`; :func:`with_clipping` is such a composition.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import numpy as np

from funcnet import tree
from funcnet.arguments import real_number
from funcnet.backend import IN_PLACE_MIN_SIZE, is_floating, is_traced, namespace
from funcnet.schedules import Schedule

Tree = Any
LearningRate = float | Schedule
GradientTransform = Callable[[Tree], Tree]

_BOOK_EPS = 1e-7  # the book's 1e-7 in AdaGrad, RMSprop and Adam


class Optimizer(NamedTuple):
    """An optimizer: two pure functions (see the module docstring for the contract)."""

    init: Callable[[Tree], Any]
    update: Callable[[Tree, Tree, Any], tuple[Tree, Any]]


class SGDState(NamedTuple):
    """:func:`sgd`'s state: the step count alone."""

    count: Any


class MomentumState(NamedTuple):
    """:func:`momentum`'s state: the book's ``v`` (``momentum * v - lr * g``, the last step taken)."""

    count: Any
    velocity: Tree


class NesterovState(NamedTuple):
    """``nesterov(form="book")``'s state: the book's ``v`` (``momentum * v - lr * g``)."""

    count: Any
    velocity: Tree


class NesterovTraceState(NamedTuple):
    """``nesterov(form="standard")``'s state: optax's trace (``momentum * trace + g``, no lr in it)."""

    count: Any
    trace: Tree


class AdaGradState(NamedTuple):
    """:func:`adagrad`'s state: the book's ``h``, the running sum of squared gradients."""

    count: Any
    sum_of_squares: Tree


class RMSpropState(NamedTuple):
    """:func:`rmsprop`'s state: the book's ``h``, a moving average of squared gradients."""

    count: Any
    mean_of_squares: Tree


class AdamState(NamedTuple):
    """:func:`adam`'s state: the book's ``m`` and ``v``, moving averages of ``g`` and ``g * g``."""

    count: Any
    first_moment: Tree
    second_moment: Tree


# --- checks (run once, when an optimizer is built or a state is made) --------------------------


def _learning_rate(name: str, lr: Any) -> Callable[[Any, Any, Any], Any]:
    """``at(count, xp, dtype)``: the rate for this step, a Python float or (traced) a 0-d array of ``dtype``."""
    if not callable(lr):
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
            raise TypeError(f"{name}: lr must be a number or a schedule (a function of the step count), "
                            f"got {type(lr).__name__}")
        value = real_number(name, "lr", lr)
        return lambda count, xp, dtype: value

    def at(count, xp, dtype):
        value = lr(count)
        if is_traced(value) or not isinstance(value, numbers.Real | np.ndarray | np.generic):
            # traced, or on a device: reading it would cost a host sync every step, so it is not
            # checked here (the built-in schedules are checked when built); its dtype must be the params'
            return value if value.dtype == dtype else xp.astype(value, dtype)
        value = float(value)  # a Python float cannot promote float32 params
        if not value >= 0.0:
            step = count if isinstance(count, int) or is_traced(count) else int(count)
            raise ValueError(f"{name}: the lr schedule gave {value} at step {step}; a learning rate must be >= 0")
        return value

    return at


def _one_minus_power(beta: float, t: Any, xp: Any, dtype: Any) -> Any:
    """``1 - beta ** t``: Python floats for an int ``t``, else an expm1 in ``dtype``."""
    if isinstance(t, int):
        return 1.0 - beta**t
    if beta == 0.0:
        return 1.0
    # 1 - 0.999 ** 1 computed in float32 keeps only 3 digits; expm1 keeps all of them
    return -xp.expm1(xp.astype(t, dtype) * math.log(beta))


def _sqrt(xp: Any, x: Any) -> Any:
    return math.sqrt(x) if isinstance(x, float) else xp.sqrt(x)


def _state_type_error(name: str, expected: type, state: Any) -> TypeError:
    got = type(state).__name__
    hint = " (a state made by another optimizer's init?)" if isinstance(state, tuple) else ""
    return TypeError(f"{name}.update: state must be the {expected.__name__} that {name}'s init makes, "
                     f"got {got}{hint}")


def _leaf_error(name: str, params: Tree, p_leaves: list[Any], g_leaves: list[Any]) -> Exception:
    for path, p, g in zip(tree.paths(params), p_leaves, g_leaves, strict=True):
        for what, leaf in (("params", p), ("grads", g)):
            if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
                return TypeError(f"{name}.update: {what} leaf {path!r} must be an array, got {type(leaf).__name__}")
        try:
            namespace(p, g)
        except TypeError as err:
            return TypeError(f"{name}.update: grads leaf {path!r}: {err}")
        if p.shape != g.shape:
            return ValueError(f"{name}.update: grads leaf {path!r} has shape {tuple(g.shape)}, "
                              f"expected the param's shape {tuple(p.shape)}")
        if p.dtype != g.dtype:
            return TypeError(f"{name}.update: grads leaf {path!r} has dtype {g.dtype}, expected the "
                             f"param's dtype {p.dtype} (cast grads to the params' dtype)")
    return ValueError(f"{name}.update: grads do not match params")  # not reached


def _namespace(leaves: list[Any]) -> Any:
    """The leaves' array module; NumPy for none, or for the NumPy scalars that 0-d arithmetic gives."""
    if not leaves or isinstance(leaves[0], np.generic):
        return np
    return namespace(leaves[0])


def _check_params(name: str, params: Tree) -> None:
    for path, leaf in tree.leaves_with_paths(params):
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or not hasattr(leaf, "shape"):
            raise TypeError(f"{name}.init: params leaf {path!r} must be an array, got {type(leaf).__name__}")
        if not is_floating(dtype):
            raise TypeError(f"{name}.init: params leaf {path!r} has dtype {dtype}; only floating-point "
                            "params can be optimized")


# --- the one update loop all optimizers share ----------------------------------------------------


def _optimizer(name: str, state_cls: type, hyper: Callable[[Any, Any, Any], Any],
               step: Callable[..., tuple[Any, ...]], slot_inits: tuple[float, ...] = ()) -> Optimizer:
    """An optimizer from ``hyper(count, xp, dtype)``, the step's scalars, and ``step(h, p, g, *slots)``.

    ``step`` maps one leaf of params, grads and each state tree to the new param and slots.
    On NumPy the count is read as a Python int and the scalars are Python floats (cheap and
    exact); elsewhere (cupy, jax, traced) the count stays on its device and the scalars are
    0-d arrays of the params' dtype. A schedule's value is checked for its sign where it is a
    host number; a traced or device value is never read (that would be a sync every step).
    """
    fields = state_cls._fields[1:]
    n_slots = len(fields)
    if len(slot_inits) != n_slots:
        raise AssertionError(f"{name}: {n_slots} state trees but {len(slot_inits)} initial values")

    def init(params):
        _check_params(name, params)
        leaves, spec = tree.flatten(params)
        xp = _namespace(leaves)
        slots = [
            tree.unflatten(spec, [xp.zeros_like(x) if v == 0.0 else xp.full_like(x, v) for x in leaves])
            for v in slot_inits
        ]
        return state_cls(xp.asarray(0, dtype=xp.int32), *slots)

    last_spec: list[Any] = [None]  # the params' structure of the previous call: a cache, unseen

    def flatten_params(params):
        # params keep their structure from step to step: flattening against the last spec costs
        # a tenth of a full flatten; anything odd falls back to the full one
        spec = last_spec[0]
        if spec is not None:
            leaves = tree.flatten_like(spec, params)
            if leaves is not None:
                return leaves, spec
        leaves, spec = tree.flatten(params)
        last_spec[0] = spec
        return leaves, spec

    def update(params, grads, state):
        if type(state) is not state_cls:
            raise _state_type_error(name, state_cls, state)
        p_leaves, spec = flatten_params(params)
        # the others are flattened against params' structure: cheap, and None on a mismatch
        g_leaves = tree.flatten_like(spec, grads)
        if g_leaves is None:
            tree.assert_same_structure(params, grads, f"{name}.update: grads")
            g_leaves = tree.leaves(grads)  # same structure after all (e.g. a list for a tuple)
        slot_leaves = []
        for field, slot in zip(fields, state[1:], strict=True):
            leaves = tree.flatten_like(spec, slot)
            if leaves is None:
                tree.assert_same_structure(params, slot, f"{name}.update: state.{field}")
                leaves = tree.leaves(slot)
            slot_leaves.append(leaves)
        try:
            mismatch = any(p.shape != g.shape or p.dtype != g.dtype
                           for p, g in zip(p_leaves, g_leaves, strict=True))
        except AttributeError:  # a leaf that is not an array
            mismatch = True
        if mismatch:
            raise _leaf_error(name, params, p_leaves, g_leaves)

        count = state.count
        if isinstance(count, np.ndarray | np.integer | int):
            t = int(count)  # free on the host; a device count is never read (no sync)
            next_count = t + 1 if isinstance(count, int) else np.asarray(t + 1, dtype=count.dtype)
        else:
            t = count
            next_count = count + 1
        if not p_leaves:
            return params, state_cls(next_count, *state[1:])
        first = p_leaves[0]
        h = hyper(t, _namespace(p_leaves), first.dtype)
        if not n_slots:  # sgd: no state trees to regroup
            new_params = [step(h, p, g)[0] for p, g in zip(p_leaves, g_leaves, strict=True)]
            return tree.unflatten(spec, new_params), state_cls(next_count)
        new = [step(h, *leaves) for leaves in zip(p_leaves, g_leaves, *slot_leaves, strict=True)]
        columns = [tree.unflatten(spec, list(column)) for column in zip(*new, strict=True)]
        return columns[0], state_cls(next_count, *columns[1:])

    return Optimizer(init, update)


# --- the optimizers -------------------------------------------------------------------------------


def _minus_scaled(p: Any, lr_t: Any, g: Any) -> Any:
    """``p - lr_t * g``; on NumPy into the one fresh buffer ``lr_t * g`` (callers never see it)."""
    u = lr_t * g
    if type(u) is np.ndarray and u.size >= IN_PLACE_MIN_SIZE and type(p) is np.ndarray and u.shape == p.shape \
            and u.dtype == p.dtype:
        return np.subtract(p, u, out=u)
    return p - u


def sgd(lr: LearningRate) -> Optimizer:
    """The book's SGD: ``p - lr * g`` (the same as ``optax.sgd(lr)``)."""
    lr_at = _learning_rate("sgd", lr)

    def step(lr_t, p, g):
        return (_minus_scaled(p, lr_t, g),)

    return _optimizer("sgd", SGDState, lr_at, step)


def momentum(lr: LearningRate, momentum: float = 0.9) -> Optimizer:
    """The book's Momentum: ``v = momentum * v - lr * g; p + v``, with ``v`` starting at zero.

    At a constant lr this is ``optax.sgd(lr, momentum=momentum)`` (optax keeps ``-v / lr``);
    under a schedule the book's ``v`` carries each step's own lr, optax's trace does not.
    """
    name = "momentum"
    lr_at = _learning_rate(name, lr)
    mu = real_number(name, "momentum", momentum, 0.0, 1.0)

    def step(lr_t, p, g, v):
        v = mu * v - lr_t * g
        return p + v, v

    return _optimizer(name, MomentumState, lr_at, step, (0.0,))


_momentum = momentum  # for the book's Momentum, whose argument of that name hides the function


def nesterov(lr: LearningRate, momentum: float = 0.9, *,
             form: Literal["book", "standard"] = "book") -> Optimizer:
    """Nesterov's accelerated gradient, in the book's form or the standard (optax, PyTorch) one.

    ``form="book"`` (the book's Nesterov, which applies the *new* velocity)::

        v = momentum * v - lr * g
        p = p + momentum * momentum * v - (1 + momentum) * lr * g

    ``form="standard"``, ``optax.sgd(lr, momentum, nesterov=True)`` and PyTorch's
    ``SGD(nesterov=True)``; state :class:`NesterovTraceState`::

        trace = g + momentum * trace
        p = p - lr * (g + momentum * trace)
    """
    name = "nesterov"
    lr_at = _learning_rate(name, lr)
    mu = real_number(name, "momentum", momentum, 0.0, 1.0)
    if form == "book":
        mu2 = mu * mu

        def hyper(count, xp, dtype):
            lr_t = lr_at(count, xp, dtype)
            return lr_t, (1.0 + mu) * lr_t

        def book_step(h, p, g, v):
            lr_t, g_scale = h
            v = mu * v - lr_t * g
            return p + mu2 * v - g_scale * g, v

        return _optimizer(name, NesterovState, hyper, book_step, (0.0,))
    if form == "standard":

        def standard_step(lr_t, p, g, trace):
            trace = g + mu * trace
            return p - lr_t * (g + mu * trace), trace

        return _optimizer(name, NesterovTraceState, lr_at, standard_step, (0.0,))
    raise ValueError(f"{name}: form must be 'book' or 'standard', got {form!r}")


def adagrad(lr: LearningRate, eps: float = _BOOK_EPS, *, eps_in_sqrt: bool = False,
            initial_accumulator_value: float = 0.0) -> Optimizer:
    """AdaGrad: ``h = h + g * g; p - lr * g / (sqrt(h) + eps)``, the book's with its defaults.

    ``eps_in_sqrt=True`` divides by ``sqrt(h + eps)`` instead; ``h`` starts at
    ``initial_accumulator_value``. ``optax.adagrad(lr)`` is
    ``adagrad(lr, eps_in_sqrt=True, initial_accumulator_value=0.1)``; PyTorch's
    ``Adagrad(lr)`` is ``adagrad(lr, eps=1e-10)``.
    """
    name = "adagrad"
    lr_at = _learning_rate(name, lr)
    eps = real_number(name, "eps", eps)
    h0 = real_number(name, "initial_accumulator_value", initial_accumulator_value)

    def hyper(count, xp, dtype):
        return lr_at(count, xp, dtype), xp

    def step(h_, p, g, h):
        lr_t, xp = h_
        h = h + g * g
        denominator = xp.sqrt(h + eps) if eps_in_sqrt else xp.sqrt(h) + eps
        return p - lr_t * g / denominator, h

    return _optimizer(name, AdaGradState, hyper, step, (h0,))


def rmsprop(lr: LearningRate, decay_rate: float = 0.99, eps: float = _BOOK_EPS, *,
            eps_in_sqrt: bool = False) -> Optimizer:
    """RMSprop: ``h = decay_rate * h + (1 - decay_rate) * g * g; p - lr * g / (sqrt(h) + eps)``.

    The book's RMSprop with its defaults, and ``optax.rmsprop(lr, decay_rate, eps,
    eps_in_sqrt=False)``; ``eps_in_sqrt=True`` divides by ``sqrt(h + eps)`` as optax's default does.
    """
    name = "rmsprop"
    lr_at = _learning_rate(name, lr)
    rho = real_number(name, "decay_rate", decay_rate, 0.0, 1.0)
    eps = real_number(name, "eps", eps)

    def hyper(count, xp, dtype):
        return lr_at(count, xp, dtype), xp

    def step(h_, p, g, h):
        lr_t, xp = h_
        h = rho * h + (1.0 - rho) * g * g
        denominator = xp.sqrt(h + eps) if eps_in_sqrt else xp.sqrt(h) + eps
        return p - lr_t * g / denominator, h

    return _optimizer(name, RMSpropState, hyper, step, (0.0,))


def adam(lr: LearningRate = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float | None = None, *,
         eps_root: float = 0.0, form: Literal["book", "standard"] = "book") -> Optimizer:
    """Adam, in the book's form or the standard (optax, PyTorch) one; ``t`` is ``count + 1``.

    Both keep the moving averages ``m = m + (1 - beta1) * (g - m)`` and
    ``v = v + (1 - beta2) * (g * g - v)`` (the standard form in optax's order of operations,
    ``(1 - beta1) * g + beta1 * m``). ``form="book"`` (eps defaults to the book's 1e-7), the bias
    correction folded into the rate::

        lr_t = lr * sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        p = p - lr_t * m / (sqrt(v + eps_root) + eps)

    ``form="standard"`` (eps defaults to 1e-8), ``optax.adam(lr, beta1, beta2, eps, eps_root)``::

        m_hat = m / (1 - beta1 ** t);  v_hat = v / (1 - beta2 ** t)
        p = p - lr * m_hat / (sqrt(v_hat + eps_root) + eps)

    The two differ only in where eps sits: the book's is ``eps / sqrt(1 - beta2 ** t)`` of the
    standard one, large in the first steps. With ``eps=0`` they are the same.
    """
    name = "adam"
    lr_at = _learning_rate(name, lr)
    b1 = real_number(name, "beta1", beta1, 0.0, 1.0)
    b2 = real_number(name, "beta2", beta2, 0.0, 1.0)
    if form not in ("book", "standard"):
        raise ValueError(f"{name}: form must be 'book' or 'standard', got {form!r}")
    eps = real_number(name, "eps", (_BOOK_EPS if form == "book" else 1e-8) if eps is None else eps)
    eps_root = real_number(name, "eps_root", eps_root)

    if form == "book":

        def book_hyper(count, xp, dtype):
            t = count + 1
            lr_t = lr_at(count, xp, dtype)
            bc1, bc2 = _one_minus_power(b1, t, xp, dtype), _one_minus_power(b2, t, xp, dtype)
            return lr_t * _sqrt(xp, bc2) / bc1, xp

        def book_step(h, p, g, m, v):
            lr_t, xp = h
            m = m + (1.0 - b1) * (g - m)
            v = v + (1.0 - b2) * (g * g - v)
            return p - lr_t * m / (xp.sqrt(v + eps_root) + eps), m, v

        return _optimizer(name, AdamState, book_hyper, book_step, (0.0, 0.0))

    def standard_hyper(count, xp, dtype):
        t = count + 1
        lr_t = lr_at(count, xp, dtype)
        return lr_t, _one_minus_power(b1, t, xp, dtype), _one_minus_power(b2, t, xp, dtype), xp

    def standard_step(h, p, g, m, v):
        lr_t, bc1, bc2, xp = h
        m = (1.0 - b1) * g + b1 * m  # optax's order of operations
        v = (1.0 - b2) * (g * g) + b2 * v
        return p - lr_t * ((m / bc1) / (xp.sqrt(v / bc2 + eps_root) + eps)), m, v

    return _optimizer(name, AdamState, standard_hyper, standard_step, (0.0, 0.0))


# --- gradient transformations and their composition -----------------------------------------------


def clip_grads(grads: Tree, max_norm: float) -> Tree:
    """The book's ``clip_grads``, pure: grads times ``max_norm / (norm + 1e-6)`` when that is below 1.

    ``norm`` is the L2 norm of all leaves together. Returns a new tree; the factor is chosen
    with ``xp.minimum``, not a Python ``if``, so it runs under ``jax.jit``.
    """
    max_norm = _positive_norm("clip_grads", max_norm)
    leaves, spec = tree.flatten(grads)
    if not leaves:
        return grads
    xp = namespace(*leaves)
    rate = max_norm / (tree.global_norm(leaves) + 1e-6)
    scale = xp.minimum(rate, 1.0)  # times 1.0 leaves a gradient unchanged, bit for bit
    return tree.unflatten(spec, [g * (scale if g.dtype == scale.dtype else xp.astype(scale, g.dtype))
                                 for g in leaves])


def clip_by_global_norm(max_norm: float) -> GradientTransform:
    """A gradient transformation for :func:`chain`: :func:`clip_grads` with ``max_norm``."""
    max_norm = _positive_norm("clip_by_global_norm", max_norm)
    return lambda grads: clip_grads(grads, max_norm)


def _positive_norm(name: str, max_norm: Any) -> float:
    # 0 would silently zero every gradient: refused by both clipping entry points alike
    max_norm = real_number(name, "max_norm", max_norm)
    if max_norm == 0.0:
        raise ValueError(f"{name}: max_norm must be > 0, got 0")
    return max_norm


def chain(*transforms_then_optimizer: GradientTransform | Optimizer) -> Optimizer:
    """Gradient transformations applied in order, then an optimizer: ``chain(clip_by_global_norm(5.0), sgd(0.1))``.

    The transformations are stateless functions ``grads -> grads``; the chained optimizer's
    state is the last optimizer's, so states and checkpoints carry over unchanged.
    """
    if not transforms_then_optimizer or not isinstance(transforms_then_optimizer[-1], Optimizer):
        got = type(transforms_then_optimizer[-1]).__name__ if transforms_then_optimizer else "nothing"
        raise TypeError(f"chain: the last argument must be an Optimizer, got {got}")
    *transforms, optimizer = transforms_then_optimizer
    for i, transform in enumerate(transforms):
        if isinstance(transform, Optimizer) or not callable(transform):
            raise TypeError(f"chain: argument {i} must be a gradient transformation (grads -> grads), "
                            f"got {type(transform).__name__}; only the last argument is an Optimizer")
    inner_update = optimizer.update

    def update(params, grads, state):
        for transform in transforms:
            grads = transform(grads)
        return inner_update(params, grads, state)

    return Optimizer(optimizer.init, update)


def with_clipping(optimizer: Optimizer, max_norm: float) -> Optimizer:
    """``optimizer`` fed grads clipped to global norm ``max_norm`` (the book's ``clip_grads``)."""
    return chain(clip_by_global_norm(max_norm), optimizer)


# --- the book's names, arguments and defaults -----------------------------------------------------


def SGD(lr: float = 0.01) -> Optimizer:
    """The book's ``SGD(lr=0.01)``: :func:`sgd`."""
    return sgd(lr)


def Momentum(lr: float = 0.01, momentum: float = 0.9) -> Optimizer:
    """The book's ``Momentum(lr=0.01, momentum=0.9)``: :func:`momentum`."""
    return _momentum(lr, momentum)


def Nesterov(lr: float = 0.01, momentum: float = 0.9) -> Optimizer:
    """The book's ``Nesterov(lr=0.01, momentum=0.9)``: ``nesterov(form="book")``."""
    return nesterov(lr, momentum, form="book")


def AdaGrad(lr: float = 0.01) -> Optimizer:
    """The book's ``AdaGrad(lr=0.01)``: :func:`adagrad`."""
    return adagrad(lr)


def RMSprop(lr: float = 0.01, decay_rate: float = 0.99) -> Optimizer:
    """The book's ``RMSprop(lr=0.01, decay_rate=0.99)``: :func:`rmsprop`."""
    return rmsprop(lr, decay_rate)


def Adam(lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999) -> Optimizer:
    """The book's ``Adam(lr=0.001, beta1=0.9, beta2=0.999)``: ``adam(form="book")``."""
    return adam(lr, beta1, beta2, form="book")
