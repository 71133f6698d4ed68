"""Optimizers and gradient transformations lifted from a per-leaf rule.

A rule is written for one array at a time, in two levels: ``rule(step)`` runs once per
update (the place for this step's scalars) and returns ``leaf(p, g, *slots) -> (out, *slots)``,
run for every leaf of the params tree. ``out`` is the new param (`from_rule`) or the new
gradient (`transform_from_rule`); the slots are the rule's named state trees, shaped like
params, each starting at a constant. The lifter does the rest once for every rule: the state
type, the step count, the learning rate and its checks, the tree walking and its checks, and
mixed precision.

Mixed precision: a float16 leaf is computed in float32 (its slots are kept in float32 too) and
the new value is cast back to float16, so a large gradient cannot overflow the state.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from funcnet import tree
from funcnet.backend import is_floating, namespace, numpy_dtype
from funcnet.optim.base import (
    GradientTransform,
    Leafwise,
    LearningRate,
    Optimizer,
    Step,
    _host_count,
    _learning_rate,
)

__all__ = ["from_rule", "is_builtin", "state_type", "transform_from_rule"]

Tree = Any
LeafRule = Callable[..., tuple[Any, ...]]
Rule = Callable[[Step], LeafRule]

_STATE_TYPES: dict[tuple[str, tuple[str, ...]], type] = {}


def state_type(name: str, slots: tuple[str, ...] | list[str], doc: str | None = None) -> type:
    """The NamedTuple ``name(count, *slots)``: one class per name and slots, made once and reused.

    `from_rule` calls it, so every optimizer built from one rule shares one state type
    (and a state of another optimizer is refused by type).

    Args:
        name: the class name, e.g. ``"LionState"``.
        slots: the names of the state trees after ``count``.
        doc: the class docstring (the first call's is kept).

    Returns:
        The NamedTuple class.

    Raises:
        ValueError: a slot name that is not an identifier, repeated, or ``count``.

    Examples:
        >>> from funcnet import optim
        >>> LionState = optim.state_type("LionState", ("momentum",))
        >>> LionState._fields, LionState is optim.state_type("LionState", ["momentum"])
        (('count', 'momentum'), True)
    """
    slots = tuple(slots)
    key = (name, slots)
    cls = _STATE_TYPES.get(key)
    if cls is None:
        for slot in slots:
            if not slot.isidentifier() or slot.startswith("_") or slot == "count" or slots.count(slot) > 1:
                raise ValueError(f"{name}: slot names must be distinct identifiers other than 'count' "
                                 f"and not starting with '_', got {slot!r}")
        base = NamedTuple(name, [("count", Any), *[(slot, Any) for slot in slots]])
        text = doc or f"The state of an optimizer made by `from_rule`: the step count and {', '.join(slots) or 'nothing else'}."
        # named after the module that asked first (the built-ins bind it there), so pickle finds it
        module = sys._getframe(1).f_globals.get("__name__", __name__)
        cls = _STATE_TYPES[key] = type(name, (base,), {"__slots__": (), "__doc__": text, "__module__": module})
    return cls


# every update from_rule lifted -> the parts lifted with it (rule, lr, state type, check_outputs);
# the update itself is no part of the value, or no entry would ever be dropped
_LIFTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_BUILTIN: weakref.WeakSet = weakref.WeakSet()  # the lifted updates of funcnet's own optimizers


def _builtin(optimizer: Optimizer) -> Optimizer:
    """Mark ``optimizer``, made by `from_rule` in funcnet's own constructors, as built-in."""
    _BUILTIN.add(optimizer.update)
    return optimizer


def _leafwise_of(optimizer: Any) -> Leafwise | None:
    """The optimizer's `Leafwise` when it describes the optimizer's update exactly: the update is
    the one `from_rule` lifted, and every part (rule, lr, state type) is the one lifted with it;
    None otherwise (no rule, or a ``_replace``'d update or part: the update is then all there is)."""
    leafwise = getattr(optimizer, "leafwise", None)
    if not isinstance(leafwise, Leafwise) or getattr(optimizer, "update", None) is not leafwise.update:
        return None
    try:
        made = _LIFTED.get(leafwise.update)
    except TypeError:  # an update that cannot be weakly referenced is none that from_rule made
        return None
    parts = (leafwise.rule, leafwise.lr_at, leafwise.state_type, leafwise.check_outputs)
    return leafwise if made is not None and all(a is b for a, b in zip(made, parts, strict=True)) else None


def is_builtin(optimizer: Any) -> bool:
    """Whether ``optimizer`` is a funcnet optimizer as its constructor made it: its rule is known to
    return leaves of its inputs' shapes and dtypes, so a step plan keeps them unchecked.

    Args:
        optimizer: anything.

    Returns:
        True for ``optim.sgd(0.1)`` and the other built-ins, False for a user's `from_rule`
        optimizer, one whose ``update`` or ``leafwise`` (rule, lr, ...) was ``_replace``'d, a
        `chain` or anything else.

    Examples:
        >>> from funcnet import optim
        >>> optim.is_builtin(optim.sgd(0.1)), optim.is_builtin(optim.chain(optim.sgd(0.1)))
        (True, False)
    """
    return _leafwise_of(optimizer) is not None and optimizer.update in _BUILTIN


def from_rule(name: str, rule: Rule, *, lr: LearningRate, slots: Mapping[str, float] | None = None,
              state_name: str | None = None, state_doc: str | None = None,
              check_outputs: bool = True) -> Optimizer:
    """An `Optimizer` from a per-leaf rule (see the module docstring for the two levels).

    Args:
        name: the optimizer's name, used in every error message.
        rule: ``rule(step) -> leaf``; ``leaf(p, g, *slots) -> (new_p, *new_slots)``, the slots
            in the order of ``slots``.
        lr: a number or a schedule (a function of the count), handed to ``rule`` as
            ``step.lr``; checked to be finite and >= 0 (a schedule at every host step).
        slots: slot name -> initial value, e.g. ``{"velocity": 0.0}``.
        state_name: the state type's name; defaults to ``name`` in CamelCase plus ``State``.
        state_doc: the state type's docstring.
        check_outputs: check at every step that the leaf function returned ``(new_p, *new_slots)``
            in the params' and slots' shapes and dtypes (the built-ins, known to, turn it off).

    Returns:
        The optimizer; its state is ``state_type(state_name, slots)(count, *slot_trees)``.

    Raises:
        TypeError, ValueError: a bad lr or slot value.

    Examples:
        >>> import numpy as np
        >>> from funcnet import optim
        >>> def sign_sgd_rule(step):
        ...     xp, lr = step.xp, step.lr
        ...     return lambda p, g: (p - lr * xp.sign(g),)
        >>> opt = optim.from_rule("sign_sgd", sign_sgd_rule, lr=0.1)
        >>> p = {"w": np.array([1.0, 1.0])}
        >>> p, state = opt.update(p, {"w": np.array([3.0, -0.5])}, opt.init(p))
        >>> p["w"].tolist(), type(state).__name__
        ([0.9, 1.1], 'SignSgdState')
    """
    lr_at = _learning_rate(name, lr)
    init, update, state_cls = _lift(name, rule, lr_at, slots, state_name, state_doc, check_outputs)
    _LIFTED[update] = (rule, lr_at, state_cls, check_outputs)
    return Optimizer(init, update, Leafwise(rule, lr_at, state_cls, update, check_outputs))


def transform_from_rule(name: str, rule: Rule, *, slots: Mapping[str, float] | None = None,
                        state_name: str | None = None, state_doc: str | None = None,
                        check_outputs: bool = True) -> GradientTransform:
    """A `GradientTransform` from a per-leaf rule: ``leaf(p, g, *slots) -> (new_g, *new_slots)``.

    The same lifter as `from_rule`, without an lr (``step.lr`` is None); ``params`` must
    be given to ``update`` (`chain` always gives them).

    Args:
        name: the transformation's name, used in every error message.
        rule: ``rule(step) -> leaf``.
        slots: slot name -> initial value.
        state_name: the state type's name; defaults to ``name`` in CamelCase plus ``State``.
        state_doc: the state type's docstring.
        check_outputs: as `from_rule`'s.

    Returns:
        The gradient transformation.

    Examples:
        >>> import numpy as np
        >>> from funcnet import optim
        >>> def scale_by_count(step):  # grads times 1, 2, 3, ...
        ...     return lambda p, g: (g * float(step.count + 1),)
        >>> tx = optim.transform_from_rule("scale_by_count", scale_by_count)
        >>> p = {"w": np.zeros(1)}
        >>> g, state = tx.update({"w": np.ones(1)}, tx.init(p), p)
        >>> g, state = tx.update({"w": np.ones(1)}, state, p)
        >>> g["w"].tolist(), int(state.count)
        ([2.0], 2)
    """
    init, update, _ = _lift(name, rule, lambda count, xp, dtype: None, slots, state_name, state_doc,
                           check_outputs)

    def transform_update(grads, state, params):
        if params is None:
            raise ValueError(f"{name}.update: params must be given (the rule sees each param)")
        return update(params, grads, state)

    return GradientTransform(init, transform_update)


# --- the one update loop every rule shares --------------------------------------------------------


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


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def _is_half(dtype: Any) -> bool:
    # NumPy, jax and CuPy hand out these dtype singletons: the common case costs two identity tests
    return dtype is not _F32 and dtype is not _F64 and numpy_dtype(dtype) == np.float16


def _check_params(name: str, params: Tree) -> list[Any]:
    leaves = []
    for path, leaf in tree.leaves_with_paths(params):
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or not hasattr(leaf, "shape"):
            raise TypeError(f"{name}.init: params leaf {path!r} must be an array, got {type(leaf).__name__}")
        if not is_floating(dtype):
            raise TypeError(f"{name}.init: params leaf {path!r} has dtype {dtype}; only floating-point "
                            "params can be optimized")
        leaves.append(leaf)
    return leaves


def _mixed(xp: Any, leaf: LeafRule, p: Any, g: Any, *slots: Any) -> tuple[Any, ...]:
    """``leaf`` on a float16 param in float32; the new value back in float16, the slots in float32."""
    out, *new_slots = leaf(xp.astype(p, xp.float32), xp.astype(g, xp.float32), *slots)
    return (xp.astype(out, p.dtype), *new_slots)


def _fits(new: Any, old: Any) -> bool:
    # dtypes: `is` first spares NumPy's slow ==
    return new.shape == old.shape and (new.dtype is old.dtype or new.dtype == old.dtype)


def _check_outputs(name: str, new: list[Any], p_leaves: list[Any], slot_leaves: list[list[Any]],
                   params: Any) -> None:
    """Refuse what a rule's leaf function returned unless it is ``(new_value, *new_slots)`` of the
    params' and slots' shapes and dtypes: a rule returning a bare array (``p - lr * g`` without
    the comma), a wider dtype or another shape would otherwise change the params silently.

    Raises:
        TypeError, ValueError: naming the optimizer, the leaf's path and what came.
    """
    # one pass of cheap comparisons on good output; `_diagnose_outputs` names a fault
    if all(leaf_output_fits(out, olds) for out, *olds in zip(new, p_leaves, *slot_leaves, strict=True)):
        return
    _diagnose_outputs(name, new, p_leaves, slot_leaves, params)


def leaf_output_fits(out: Any, olds: Any) -> bool:
    """Whether a rule's leaf function returned ``(new_value, *new_slots)`` of the shapes and dtypes
    of ``olds`` (the param, then its slots); the one test of the lifter and of the step plans."""
    try:
        return type(out) is tuple and len(out) == len(olds) and all(map(_fits, out, olds))
    except AttributeError:  # not an array
        return False


def _diagnose_outputs(name: str, new: list[Any], p_leaves: list[Any], slot_leaves: list[list[Any]],
                      params: Any) -> None:
    n = 1 + len(slot_leaves)
    for i, (out, p) in enumerate(zip(new, p_leaves, strict=True)):
        if type(out) is not tuple or len(out) != n:
            got = f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__
            raise TypeError(f"{name}: the rule's leaf function must return a tuple of {n} (the new value"
                            f"{', then each slot' if n > 1 else ''}), got {got} (a missing comma in "
                            "`(p - lr * g,)`?)")
        expected = [(p.shape, p.dtype)] + [(column[i].shape, column[i].dtype) for column in slot_leaves]
        for k, (value, (shape, dtype)) in enumerate(zip(out, expected, strict=True)):
            if getattr(value, "shape", None) != shape or getattr(value, "dtype", None) != dtype:
                what = "new value" if k == 0 else f"slot {k}"
                raise ValueError(f"{name}: the rule's {what} for leaf {tree.paths(params)[i]!r} has shape "
                                 f"{getattr(value, 'shape', None)} and dtype {getattr(value, 'dtype', None)}, "
                                 f"expected {tuple(shape)} and {dtype}")


def _lift(name: str, rule: Rule, lr_at: Callable[[Any, Any, Any], Any], slots: Mapping[str, float] | None,
          state_name: str | None, state_doc: str | None, checked: bool) -> tuple[Callable, Callable, type]:
    if slots is not None and not isinstance(slots, Mapping):
        raise TypeError(f"{name}: slots must map each slot's name to its initial value, e.g. {{'velocity': 0.0}}, "
                        f"got {type(slots).__name__}")
    slots = dict(slots or {})
    for k, v in slots.items():
        if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating) or not np.isfinite(v):
            raise TypeError(f"{name}: the initial value of slot {k!r} must be a finite number, got {v!r}")
    slot_inits = tuple(float(v) for v in slots.values())
    camel = "".join(part[:1].upper() + part[1:] for part in name.split("_"))
    state_cls = state_type(state_name or f"{camel}State", tuple(slots), state_doc)
    fields = state_cls._fields[1:]
    n_slots = len(fields)

    def init(params):
        leaves = _check_params(name, params)
        spec = tree.structure(params)
        xp = _namespace(leaves)

        def slot(x, value):
            dtype = xp.float32 if _is_half(x.dtype) else x.dtype
            return xp.zeros_like(x, dtype=dtype) if value == 0.0 else xp.full_like(x, value, dtype=dtype)

        trees = [tree.unflatten(spec, [slot(x, v) for x in leaves]) for v in slot_inits]
        return state_cls(xp.asarray(0, dtype=xp.int32), *trees)

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
        half = False
        try:
            for p, g in zip(p_leaves, g_leaves, strict=True):
                dtype = p.dtype
                if p.shape != g.shape or dtype != g.dtype:
                    raise _leaf_error(name, params, p_leaves, g_leaves)
                half = half or _is_half(dtype)
        except AttributeError:  # a leaf that is not an array
            raise _leaf_error(name, params, p_leaves, g_leaves) from None

        t, next_count = _host_count(state.count)
        if not p_leaves:
            return params, state_cls(next_count, *state[1:])
        xp = _namespace(p_leaves)
        dtype = xp.float32 if half else p_leaves[0].dtype
        leaf = rule(Step(xp, t, lr_at(t, xp, dtype), dtype))
        rows = zip(p_leaves, g_leaves, *slot_leaves, strict=True)
        if half:
            new = [_mixed(xp, leaf, *row) if _is_half(row[0].dtype) else leaf(*row) for row in rows]
        else:
            new = [leaf(*row) for row in rows]
        if checked:
            _check_outputs(name, new, p_leaves, slot_leaves, params)
        if not n_slots:  # no state trees to regroup
            return tree.unflatten(spec, [row[0] for row in new]), state_cls(next_count)
        columns = [tree.unflatten(spec, list(column)) for column in zip(*new, strict=True)]
        return columns[0], state_cls(next_count, *columns[1:])

    return init, update, state_cls
