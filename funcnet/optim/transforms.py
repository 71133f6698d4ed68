"""Gradient transformations and their composition with an optimizer.

A `GradientTransform` maps ``(grads, state, params)`` to
``(grads, state)``; `chain` runs any number of them, in order, in front of an optimizer
and keeps every part's state in a `ChainState`. The names and formulas are optax's, so
``chain(clip_by_global_norm(1.0, form="standard"), add_decayed_weights(1e-4), adam(lr, form="standard"))``
is optax's ``chain(clip_by_global_norm(1.0), add_decayed_weights(1e-4), adam(lr))``: a transform in
front of the optimizer acts on the gradient the optimizer sees (there, L2 decay inside Adam's
moments). Decoupled (AdamW) decay comes after the scaling: `adamw`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

from funcnet import tree
from funcnet._arguments import real_number
from funcnet.backend import namespace
from funcnet.optim.base import GradientTransform, LearningRate, Optimizer, Step, _host_count, _is_host
from funcnet.optim.optimizers import _form, adam_direction, sgd
from funcnet.optim.rules import LeafRule, _is_half, _namespace, state_type, transform_from_rule
from funcnet.schedules import Schedule

__all__ = [
    "ChainState", "ScaleByAdamState", "ScaleByScheduleState", "adamw", "add_decayed_weights", "chain", "clip",
    "clip_by_global_norm", "clip_grads", "scale_by_adam", "scale_by_schedule", "stateless", "with_clipping",
]

Tree = Any


class ChainState(NamedTuple):
    """`chain`'s state: a tuple with each transformation's state, then the optimizer's."""

    transforms: tuple
    optimizer: Any


ScaleByScheduleState = state_type("ScaleByScheduleState", (), "`scale_by_schedule`'s state: the step count.")
ScaleByAdamState = state_type("ScaleByAdamState", ("first_moment", "second_moment"),
                              "`scale_by_adam`'s state: the count and Adam's two moving averages.")


def _positive_norm(name: str, max_norm: Any) -> float:
    # 0 would silently zero every gradient: refused by every clipping entry point alike
    max_norm = real_number(name, "max_norm", max_norm)
    if max_norm == 0.0:
        raise ValueError(f"{name}: max_norm must be > 0, got 0")
    return max_norm


def _global_norm(xp: Any, leaves: list[Any]) -> Any:
    """The L2 norm of all leaves; float16 ones squared in float32 (in float16 a norm above 256 is inf)."""
    return tree.global_norm([xp.astype(g, xp.float32) if _is_half(g.dtype) else g for g in leaves])


def _scaled(xp: Any, leaves: list[Any], factor: Any) -> list[Any]:
    """Each leaf times the 0-d ``factor`` in the leaf's dtype (no float64 promotion); float16 in float32."""
    return [xp.astype(xp.astype(g, xp.float32) * xp.astype(factor, xp.float32), g.dtype) if _is_half(g.dtype)
            else g * (factor if g.dtype == factor.dtype else xp.astype(factor, g.dtype)) for g in leaves]


def clip_grads(grads: Tree, max_norm: float) -> Tree:
    """The book's ``clip_grads``, pure: grads times ``max_norm / (norm + 1e-6)`` when that is below 1.

    ``norm`` is the L2 norm of all leaves together (float16 leaves in float32, where it cannot
    overflow). The factor is chosen with ``xp.minimum``, not a Python ``if``, so it runs under
    ``jax.jit``.

    Args:
        grads: a tree of arrays.
        max_norm: the largest global norm let through, > 0.

    Returns:
        A new tree (times 1.0 leaves a gradient unchanged, bit for bit).

    Raises:
        ValueError: a max_norm that is not a finite number > 0.

    Examples:
        >>> import numpy as np
        >>> from funcnet import optim
        >>> optim.clip_grads({"g": np.array([3.0, 4.0])}, 1.0)["g"].round(6).tolist()
        [0.6, 0.8]
    """
    return _clip_grads(grads, _positive_norm("clip_grads", max_norm))


def _clip_grads(grads: Tree, max_norm: float) -> Tree:
    """`clip_grads` for a max_norm checked already (the transformations check it once, when built)."""
    leaves, spec = tree.flatten(grads)
    if not leaves:
        return grads
    xp = namespace(*leaves)
    rate = max_norm / (_global_norm(xp, leaves) + 1e-6)
    return tree.unflatten(spec, _scaled(xp, leaves, xp.minimum(rate, 1.0)))


def stateless(fn: Callable[[Tree], Tree]) -> GradientTransform:
    """A `GradientTransform` from a pure function ``grads -> grads``; its state is ``()``.

    Args:
        fn: the function.

    Returns:
        The transformation.

    Raises:
        TypeError: ``fn`` is not callable.

    Examples:
        >>> import numpy as np
        >>> from funcnet import optim
        >>> halve = optim.stateless(lambda grads: {k: g / 2 for k, g in grads.items()})
        >>> halve.update({"g": np.array([1.0])}, (), None)[0]["g"].tolist()
        [0.5]
    """
    if not callable(fn) or isinstance(fn, GradientTransform | Optimizer):
        raise TypeError(f"stateless: fn must be a function grads -> grads, got {type(fn).__name__}")
    return GradientTransform(lambda params: (), lambda grads, state, params=None: (fn(grads), state))


def _clip_standard(max_norm: float) -> Callable[[Tree], Tree]:
    def clip_fn(grads):
        leaves, spec = tree.flatten(grads)
        if not leaves:
            return grads
        xp = namespace(*leaves)
        norm = _global_norm(xp, leaves)

        def clip_leaf(g):
            wide = xp.astype(g, xp.float32) if _is_half(g.dtype) else g
            clipped = (wide / xp.astype(norm, wide.dtype)) * max_norm  # optax's order of operations
            return xp.astype(xp.where(norm < max_norm, wide, clipped), g.dtype)

        return tree.unflatten(spec, [clip_leaf(g) for g in leaves])

    return clip_fn


def clip_by_global_norm(max_norm: float, *, form: Literal["book", "standard"] = "book") -> GradientTransform:
    """Grads scaled down to global L2 norm ``max_norm``, stateless.

    ``form="book"``: the book's `clip_grads` (``g * max_norm / (norm + 1e-6)`` when that
    is below 1). ``form="standard"``: ``optax.clip_by_global_norm`` (``g / norm * max_norm`` when
    ``norm >= max_norm``).

    Args:
        max_norm: the largest global norm let through, > 0.
        form: ``"book"`` or ``"standard"``.

    Returns:
        The transformation (state ``()``).

    Raises:
        ValueError: a max_norm that is not a finite number > 0, an unknown form.

    Examples:
        >>> import numpy as np
        >>> from funcnet import optim
        >>> clip = optim.clip_by_global_norm(1.0, form="standard")
        >>> clip.update({"g": np.array([3.0, 4.0])}, (), None)[0]["g"].round(12).tolist()
        [0.6, 0.8]
    """
    name = "clip_by_global_norm"
    max_norm = _positive_norm(name, max_norm)
    if _form(name, form) == "book":
        return stateless(lambda grads: _clip_grads(grads, max_norm))
    return stateless(_clip_standard(max_norm))


def clip(max_delta: float) -> GradientTransform:
    """Each gradient entry clipped to ``[-max_delta, max_delta]`` (``optax.clip``), stateless.

    Args:
        max_delta: the largest magnitude let through, >= 0.

    Returns:
        The transformation (state ``()``).

    Raises:
        ValueError: a max_delta that is not a finite number >= 0.

    Examples:
        >>> import numpy as np
        >>> from funcnet import optim
        >>> optim.clip(1.0).update({"g": np.array([-3.0, 0.5])}, (), None)[0]["g"].tolist()
        [-1.0, 0.5]
    """
    max_delta = real_number("clip", "max_delta", max_delta)
    return stateless(lambda grads: tree.map(
        lambda g: namespace(g).clip(g, min=-max_delta, max=max_delta), grads))


def add_decayed_weights(weight_decay: float) -> GradientTransform:
    """``g + weight_decay * p`` (``optax.add_decayed_weights``), stateless.

    In front of an optimizer this is L2 regularisation (the decay goes through the optimizer's
    scaling); after an Adam scaling, as in `adamw`, it is decoupled weight decay.

    Args:
        weight_decay: the factor, >= 0; 0 passes grads through.

    Returns:
        The transformation (state ``()``); its ``update`` needs ``params``.

    Raises:
        ValueError: a weight_decay that is not a finite number >= 0; no params at update.

    Examples:
        >>> import numpy as np
        >>> from funcnet import optim
        >>> tx = optim.add_decayed_weights(0.5)
        >>> tx.update({"w": np.array([1.0])}, (), {"w": np.array([4.0])})[0]["w"].tolist()
        [3.0]
    """
    name = "add_decayed_weights"
    weight_decay = real_number(name, "weight_decay", weight_decay)

    def update(grads, state, params=None):
        if params is None:
            raise ValueError(f"{name}.update: params must be given (the decay is a multiple of them)")
        if weight_decay == 0.0:
            return grads, state
        return tree.map(lambda g, p: g + weight_decay * p, grads, params), state

    return GradientTransform(lambda params: (), update)


def _count_array(params: Tree) -> Any:
    xp = _namespace(tree.leaves(params))
    return xp.asarray(0, dtype=xp.int32)


def scale_by_schedule(schedule: Schedule) -> GradientTransform:
    """Grads times ``schedule(count)`` (``optax.scale_by_schedule``); the state counts the updates.

    Args:
        schedule: a function of the count (`funcnet.schedules`); its value may be negative.

    Returns:
        The transformation; its state is `ScaleByScheduleState`.

    Raises:
        TypeError: ``schedule`` is not callable.
        ValueError: at update, a host value that is not finite (naming the step).

    Examples:
        >>> import numpy as np
        >>> from funcnet import optim
        >>> tx = optim.scale_by_schedule(lambda count: 0.5 ** count)
        >>> p = {"g": np.ones(1)}
        >>> g, s = tx.update(p, tx.init(p), p)
        >>> g, s = tx.update(p, s, p)
        >>> g["g"].tolist(), int(s.count)
        ([0.5], 2)
    """
    name = "scale_by_schedule"
    if not callable(schedule):
        raise TypeError(f"{name}: schedule must be a function of the step count, got {type(schedule).__name__}")

    def update(grads, state, params=None):
        if type(state) is not ScaleByScheduleState:
            raise TypeError(f"{name}.update: state must be the ScaleByScheduleState that its init makes, "
                            f"got {type(state).__name__}")
        t, next_count = _host_count(state.count)
        leaves, spec = tree.flatten(grads)
        if leaves:
            xp = _namespace(leaves)
            value = schedule(t)
            if _is_host(value):
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError(f"{name}: the schedule gave {value} at step {t}; a scale must be finite")
                grads = tree.unflatten(spec, [g * value for g in leaves])
            else:
                grads = tree.unflatten(spec, _scaled(xp, leaves, value))
        return grads, ScaleByScheduleState(next_count)

    return GradientTransform(lambda params: ScaleByScheduleState(_count_array(params)), update)


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0) -> GradientTransform:
    """Grads replaced by Adam's standard direction ``m_hat / (sqrt(v_hat + eps_root) + eps)`` (``optax.scale_by_adam``).

    Args:
        b1: the first moment's decay, in ``[0, 1)``.
        b2: the second moment's decay, in ``[0, 1)``.
        eps: added to the root.
        eps_root: added inside the root.

    Returns:
        The transformation; its state is `ScaleByAdamState`.

    Raises:
        ValueError: a beta outside ``[0, 1)``, a bad eps.

    Examples:
        >>> import numpy as np
        >>> from funcnet import optim
        >>> tx = optim.scale_by_adam(eps=0.0)
        >>> p = {"w": np.zeros(2)}
        >>> tx.update({"w": np.array([-3.0, 2.0])}, tx.init(p), p)[0]["w"].tolist()
        [-1.0, 1.0]
    """
    name = "scale_by_adam"
    b1 = real_number(name, "b1", b1, 0.0, 1.0)
    b2 = real_number(name, "b2", b2, 0.0, 1.0)
    eps = real_number(name, "eps", eps)
    eps_root = real_number(name, "eps_root", eps_root)

    def rule(step: Step) -> LeafRule:
        direction = adam_direction(b1, b2, eps, eps_root, step)
        return lambda p, g, m, v: direction(g, m, v)

    return transform_from_rule(name, rule, slots={"first_moment": 0.0, "second_moment": 0.0},
                               state_name="ScaleByAdamState", check_outputs=False)


def chain(*transforms_then_optimizer: GradientTransform | Optimizer) -> Optimizer:
    """Gradient transformations applied in order, then an optimizer: ``chain(clip(1.0), adam(0.01))``.

    Every part keeps its own state: the chained optimizer's state is a `ChainState`
    (each transformation's state, then the optimizer's), checkpointable like any state. So a
    state made by the bare optimizer's ``init`` is refused (`with_clipping` keeps the
    optimizer's own state instead).

    Args:
        *transforms_then_optimizer: any number of `GradientTransform`, then
            one `Optimizer`.

    Returns:
        The chained optimizer.

    Raises:
        TypeError: the last argument is not an Optimizer, or another one is not a GradientTransform.

    Examples:
        >>> import numpy as np
        >>> from funcnet import optim
        >>> opt = optim.chain(optim.clip(1.0), optim.sgd(0.1))
        >>> p = {"w": np.array([1.0])}
        >>> p, state = opt.update(p, {"w": np.array([5.0])}, opt.init(p))
        >>> p["w"].tolist(), type(state).__name__, type(state.optimizer).__name__
        ([0.9], 'ChainState', 'SGDState')
    """
    name = "chain"
    if not transforms_then_optimizer or not isinstance(transforms_then_optimizer[-1], Optimizer):
        got = type(transforms_then_optimizer[-1]).__name__ if transforms_then_optimizer else "nothing"
        raise TypeError(f"{name}: the last argument must be an Optimizer, got {got}")
    *transforms, optimizer = transforms_then_optimizer
    for i, transform in enumerate(transforms):
        if not isinstance(transform, GradientTransform):
            hint = "; only the last argument is an Optimizer" if isinstance(transform, Optimizer) else \
                "; lift a function grads -> grads with optim.stateless"
            raise TypeError(f"{name}: argument {i} must be a gradient transformation (a GradientTransform), "
                            f"got {type(transform).__name__}{hint}")
    n = len(transforms)
    inits = [t.init for t in transforms]
    updates = [t.update for t in transforms]
    inner_init, inner_update = optimizer.init, optimizer.update

    def init(params):
        return ChainState(tuple(init_one(params) for init_one in inits), inner_init(params))

    def update(params, grads, state):
        if type(state) is not ChainState or not isinstance(state.transforms, tuple) or len(state.transforms) != n:
            got = type(state).__name__
            if type(state) is ChainState:
                got = f"a ChainState of {len(state.transforms)} transformations, expected {n}"
            raise TypeError(f"{name}.update: state must be the ChainState that the chain's init makes, got {got}"
                            + (" (the bare optimizer's state? chain's init makes its own)"
                               if isinstance(state, tuple) and type(state) is not ChainState else ""))
        states = []
        for update_one, s in zip(updates, state.transforms, strict=True):
            grads, s = update_one(grads, s, params)
            states.append(s)
        params, inner = inner_update(params, grads, state.optimizer)
        return params, ChainState(tuple(states), inner)

    return Optimizer(init, update)


def with_clipping(optimizer: Optimizer, max_norm: float) -> Optimizer:
    """``optimizer`` fed grads clipped to global norm ``max_norm`` by the book's `clip_grads`.

    Clipping keeps no state, so the result keeps ``optimizer``'s own state type: clipped and
    unclipped runs share states and checkpoints (the book's ``Trainer.fit(max_grad=...)``).

    Args:
        optimizer: the optimizer to feed.
        max_norm: the largest global norm let through, > 0.

    Returns:
        The optimizer, with ``optimizer.init`` as its init.

    Raises:
        ValueError: a max_norm that is not a finite number > 0.

    Examples:
        >>> import numpy as np
        >>> from funcnet import optim
        >>> opt = optim.with_clipping(optim.sgd(1.0), 1.0)
        >>> p = {"w": np.array([0.0])}
        >>> p, state = opt.update(p, {"w": np.array([4.0])}, opt.init(p))
        >>> p["w"].round(6).tolist(), type(state).__name__
        ([-1.0], 'SGDState')
    """
    max_norm = _positive_norm("clip_by_global_norm", max_norm)
    inner_update = optimizer.update

    def update(params, grads, state):
        return inner_update(params, _clip_grads(grads, max_norm), state)

    return Optimizer(optimizer.init, update)


def adamw(lr: LearningRate = 0.001, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0,
          weight_decay: float = 1e-4) -> Optimizer:
    """AdamW, decoupled weight decay: ``chain(scale_by_adam(...), add_decayed_weights(weight_decay), sgd(lr))``.

    ``p - lr * (m_hat / (sqrt(v_hat + eps_root) + eps) + weight_decay * p)``, as ``optax.adamw``
    (the same arguments and defaults, without its mask).

    Args:
        lr: the learning rate, a number or a schedule.
        b1: the first moment's decay.
        b2: the second moment's decay.
        eps: added to the root.
        eps_root: added inside the root.
        weight_decay: the decoupled decay factor.

    Returns:
        The chained optimizer (state `ChainState`).

    Raises:
        ValueError: a bad argument (named by the part that checks it).

    Examples:
        >>> import numpy as np
        >>> from funcnet import optim
        >>> opt = optim.adamw(0.1, eps=0.0, weight_decay=0.5)
        >>> p = {"w": np.array([2.0])}
        >>> [round(x, 12) for x in opt.update(p, {"w": np.array([3.0])}, opt.init(p))[0]["w"].tolist()]
        [1.8]
    """
    return chain(scale_by_adam(b1, b2, eps, eps_root), add_decayed_weights(weight_decay), sgd(lr))
