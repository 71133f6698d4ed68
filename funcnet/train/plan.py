"""Step plans: a NumPy training step checked once, then run as one fused function behind a guard.

A :class:`~funcnet.train.TrainStep` keeps a few plans, keyed by its batch's shapes and dtypes.
The first call with a new key runs the fully checked step; if that succeeds and the model is
built from layers a plan knows (``serial`` of Affine/MatMul and Sigmoid/ReLU/Tanh, or one
Affine/MatMul, trained on :data:`~funcnet.losses.softmax_cross_entropy`), a plan is built from
the ``Layer`` type's declared ``kind`` and ``sublayers`` and the params it was given. Later calls
with the same key go through the plan's guard (exact ``np.ndarray`` types, the params' structure,
shapes and dtypes, the optimizer state's type, the labels' range); anything it does not
recognise returns None, and the step takes the checked path, which raises exactly the errors it
always did.

A plan performs the checked path's NumPy operations, in the same order, on the same operands:
only the per-call checks and the per-layer dispatch are gone, and Python-float operands are
0-d arrays of the params' dtype (the same value after the same rounding). Activations of
``IN_PLACE_MIN_SIZE`` elements or more go through the public primitives themselves
(:mod:`funcnet.ops`), so their in-place variants are the checked path's own. The results are
therefore bit for bit the checked path's; the tests compare them for every built-in optimizer.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from funcnet import ops
from funcnet.backend import IN_PLACE_MIN_SIZE, largest_finite
from funcnet.layers import Layer, is_builtin
from funcnet.losses import _one_maximum_checks_labels, softmax_cross_entropy
from funcnet.optim.base import Step, _host_count
from funcnet.optim.rules import _leafwise_of, leaf_output_fits
from funcnet.optim.rules import is_builtin as is_builtin_optimizer
from funcnet.train.state import TrainState

__all__ = ["MAX_PLANS", "plan_runs"]  # the rest is TrainStep's machinery

MAX_PLANS = 8
"""At most this many batch signatures get a plan per step (one a batch shape; fit needs one)."""


_DENSE = {"affine": ("W", "b"), "matmul": ("W",)}
_ACTIVATIONS = {"sigmoid": ops.sigmoid, "relu": ops.relu, "tanh": ops.tanh}
_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))

# the codes of a plan's layers
_AFFINE, _MATMUL, _SIGMOID, _RELU, _TANH, _BIG = 0, 1, 2, 3, 4, 5  # _BIG: an activation via ops
_ACTIVATION_CODES = {"sigmoid": _SIGMOID, "relu": _RELU, "tanh": _TANH}


class Flat(NamedTuple):
    """A training state as a plan holds it: what the fused step reads and writes, without trees.

    Attributes:
        leaves: the dense layers' params in the plan's order (each layer's ``W``, then ``b``).
        count: the optimizer's step count (a flat update) or None (the optimizer's own update,
            which takes the state's ``opt_state`` as it is).
        slots: one list of leaves per slot of the optimizer's state, in the params' order (a flat
            update); () otherwise.
    """

    leaves: list
    count: Any
    slots: tuple


class Plan:
    """One batch signature's fused step: ``plan(state, x, t) -> (params, opt_state, loss)``, or None.

    Its parts serve `fit`'s epoch runner too, which keeps the state flat between steps:
    ``flatten(state) -> Flat | None`` (the guard), ``core(leaves, x, t) -> (grads, loss) | None``,
    ``update(flat, grads) -> Flat | None`` (None: a rule returned what the plan cannot keep, and the
    checked path must run the step; the attribute is None itself where the optimizer's update runs
    as it is) and ``assemble(flat) -> (params, opt_state)``.

    Attributes:
        runs: how many steps the plan has answered; tests read it to see that a plan, not the
            checked path, produced a result.
    """

    __slots__ = ("assemble", "core", "flatten", "params_tree", "runs", "tree_update", "update")

    def __init__(self, flatten: Any, core: Any, update: Any, assemble: Any, params_tree: Any, tree_update: Any):
        self.flatten, self.core, self.update, self.assemble = flatten, core, update, assemble
        self.params_tree, self.tree_update = params_tree, tree_update
        self.runs = 0

    def __call__(self, state: Any, x: np.ndarray, t: np.ndarray) -> tuple[Any, Any, Any] | None:
        flat = self.flatten(state)
        if flat is None:
            return None
        out = self.core(flat.leaves, x, t)
        if out is None:
            return None
        grads, value = out
        if self.update is None:  # the optimizer's own update, with every check it makes
            params, opt_state = self.tree_update(state.params, self.params_tree(grads), state.opt_state)
        else:
            new = self.update(flat, grads)
            if new is None:  # a rule's output the plan cannot take: the checked path runs the step
                return None
            params, opt_state = self.assemble(new)
        self.runs += 1
        return params, opt_state, value

    def advance(self, flat: Flat, x: np.ndarray, t: np.ndarray) -> tuple[Flat, Any] | None:
        """One step on a flat state (a flat update only): ``(new flat state, loss)``, or None where the
        plan declines the batch (the checked path then runs it and words any error)."""
        out = self.core(flat.leaves, x, t)
        if out is None:
            return None
        new = self.update(flat, out[0])
        return None if new is None else (new, out[1])


def plan_key(x: Any, t: Any) -> tuple[Any, ...]:
    """The cache key of a batch of NumPy arrays: both shapes and dtypes."""
    return (x.shape, x.dtype, t.shape, t.dtype)


def plan_runs(step: Any) -> int:
    """How many steps of ``step`` its plans ran: calls they answered and `fit`'s epoch-runner steps.

    Example:
        >>> import numpy as np
        >>> import funcnet as fn
        >>> net = fn.TwoLayerNet(2, 4, 3)
        >>> step = fn.TrainStep(net, fn.softmax_cross_entropy, fn.optim.sgd(0.1))
        >>> state = fn.init_state(step.model, step.optimizer, fn.random.key(0), (2,))
        >>> batch = (np.ones((5, 2), np.float32), np.array([0, 1, 2, 0, 1]))
        >>> state, _ = step(state, batch)  # checked, then planned
        >>> state, _ = step(state, batch)  # the plan
        >>> plan_runs(step)
        1
    """
    return sum(p.runs for p in step._plans.values() if p is not None)


def plannable(model: Layer, loss: Any) -> tuple[tuple[Layer, ...], bool] | None:
    """``(layers, bare)``: the model's layers when a plan can run it with ``loss`` (``bare``: the
    model is one dense layer, not a serial); None when it cannot (the checked path always runs)."""
    if loss is not softmax_cross_entropy or model.stochastic or not is_builtin(model):  # a kind is trusted only on an unchanged built-in
        return None
    if model.kind in _DENSE:
        return (model,), True
    if model.kind != "serial" or not model.sublayers:
        return None
    for layer in model.sublayers:
        if not isinstance(layer, Layer) or layer.stochastic or (layer.kind not in _DENSE
                                                                  and layer.kind not in _ACTIVATIONS):
            return None
    return tuple(model.sublayers), False


def build_plan(found: tuple[tuple[Layer, ...], bool], optimizer: Any, state: Any, x: Any, t: Any) -> Plan | None:
    """A plan for ``(state, (x, t))``, a batch the checked step has just run, or None.

    Args:
        found: what `plannable` found in the step's model and loss.
        optimizer: the step's optimizer (its per-leaf rule is run in place of its update where it
            has one; otherwise its update is called as it is).
        state: the state the checked step was given.
        x: the batch's inputs (NumPy).
        t: the batch's targets (NumPy).

    Returns:
        The plan, or None when the step is not one a plan can run.
    """
    if type(x) is not np.ndarray or type(t) is not np.ndarray or type(state) is not TrainState:
        return None
    layers, bare = found
    params = state.params
    per_layer = (params,) if bare else params
    if type(per_layer) is not tuple or len(per_layer) != len(layers):
        return None
    dt = x.dtype
    if dt not in _FLOATS or x.ndim != 2:
        return None
    n, width = x.shape
    codes, dense = [], []  # dense: (layer index, keys, shapes, index of its first leaf)
    for i, (layer, p) in enumerate(zip(layers, per_layer, strict=True)):
        keys = _DENSE.get(layer.kind)
        if keys is None:
            if type(p) is not tuple or p:
                return None
            big = width * n >= IN_PLACE_MIN_SIZE
            codes.append((_BIG, _ACTIVATIONS[layer.kind], True) if big else (_ACTIVATION_CODES[layer.kind], None, False))
            continue
        if type(p) is not dict or tuple(p) != keys:
            return None
        leaves = [p[k] for k in keys]
        if any(type(a) is not np.ndarray or a.dtype != dt for a in leaves):
            return None
        first = dense[-1][3] + len(dense[-1][1]) if dense else 0
        codes.append((_AFFINE if len(keys) == 2 else _MATMUL, first, n * leaves[0].shape[1] >= IN_PLACE_MIN_SIZE))
        dense.append((i, keys, tuple(a.shape for a in leaves), first))
        width = leaves[0].shape[1]
    if not dense:  # no params: nothing for a plan to update
        return None
    if t.ndim == 1:
        if t.dtype.kind not in "iu" or not _one_maximum_checks_labels(t.dtype, width):
            return None  # the checked path's two reductions check such labels
    elif t.shape != (n, width):
        return None
    update, state_type = _flat_update(optimizer, state.opt_state, dt)
    tree_of = _tree_builder(tuple(dense), len(layers), bare)
    flatten = _flattener(tuple(dense), len(layers), bare, dt, type(state.opt_state), update is not None)
    core = _core(tuple(codes), dt, n, width, t.ndim == 1, t.dtype, layers[0].skips_input_grad,
                 sum(len(d[1]) for d in dense))

    def assemble(flat: Flat) -> tuple[Any, Any]:
        return tree_of(flat.leaves), state_type(flat.count, *map(tree_of, flat.slots))

    return Plan(flatten, core, update, assemble, tree_of, optimizer.update)


def _tree_builder(dense: tuple, depth: int, bare: bool) -> Any:
    """``tree_of(leaves)``: the params tree (a tuple of per-layer dicts, or one dict) of flat leaves."""

    def tree_of(leaves: list) -> Any:
        out = [()] * depth
        for i, keys, _, j in dense:
            out[i] = {"W": leaves[j], "b": leaves[j + 1]} if len(keys) == 2 else {"W": leaves[j]}
        return out[0] if bare else tuple(out)

    return tree_of


def _flattener(dense: tuple, depth: int, bare: bool, dt: Any, opt_type: type, with_slots: bool) -> Any:
    """``flatten(state) -> Flat | None``, the guard: the state's leaves when the state is exactly what
    the plan was built for (a ``TrainState``; the optimizer state's type; a tuple of one dict per
    dense layer holding just its keys as exact ``np.ndarray`` leaves of the recorded shapes and
    dtype, ``()`` per activation; the same for every slot of a flat update), else None."""
    activations = tuple(i for i in range(depth) if all(d[0] != i for d in dense))
    sizes = tuple((i, len(keys)) for i, keys, _, _ in dense)
    leaves_at = tuple((i, k, shape) for i, keys, shapes, _ in dense for k, shape in zip(keys, shapes, strict=True))

    def leaves_of(tree_: Any) -> list | None:
        per_layer = (tree_,) if bare else tree_
        if type(per_layer) is not tuple or len(per_layer) != depth:
            return None
        for i in activations:
            p = per_layer[i]
            if type(p) is not tuple or p:
                return None
        for i, size in sizes:
            p = per_layer[i]
            if type(p) is not dict or len(p) != size:
                return None
        out = []
        for i, k, shape in leaves_at:
            a = per_layer[i].get(k)
            # NumPy's dtypes of a kind are one object: `is` spares the slower ==
            if type(a) is not np.ndarray or a.shape != shape or (a.dtype is not dt and a.dtype != dt):
                return None
            out.append(a)
        return out

    def flatten(state: Any) -> Flat | None:
        if type(state) is not TrainState:
            return None
        opt_state = state.opt_state
        if type(opt_state) is not opt_type:
            return None
        leaves = leaves_of(state.params)
        if leaves is None:
            return None
        if not with_slots:  # the optimizer's own update takes its state as it is
            return Flat(leaves, None, ())
        slots = tuple(map(leaves_of, opt_state[1:]))
        if None in slots:  # the optimizer's own update names what is wrong
            return None
        return Flat(leaves, opt_state.count, slots)

    return flatten


def _flat_update(optimizer: Any, opt_state: Any, dt: Any) -> tuple[Any, type | None]:
    """``(update, state_type)``: for an optimizer made by ``optim.from_rule``, its rule run
    on the plan's flat leaves (the same rule, step scalars and leaf function as its ``update``
    calls, so the same bits, without walking three trees); ``(None, None)`` where that does
    not hold: no rule, an ``update`` or a part of ``leafwise`` replaced after the rule was lifted,
    float16 (mixed precision takes the checked update), another state type."""
    leafwise = _leafwise_of(optimizer)
    if leafwise is None or dt == np.float16 or type(opt_state) is not leafwise.state_type:
        return None, None
    rule, lr_at = leafwise.rule, leafwise.lr_at
    # funcnet's own rules are known to return the leaves' shapes and dtypes; any other rule's
    # outputs are compared with its inputs (with check_outputs=False too: what the plan keeps
    # must be what its guard would admit)
    trusted = is_builtin_optimizer(optimizer)

    def update(flat: Flat, grads: list) -> Flat | None:
        t, next_count = _host_count(flat.count)
        # the grads are the core's own fresh buffers: a rule may write into them
        leaf = rule(Step(np, t, lr_at(t, np, dt), dt, True))
        slots = flat.slots
        outs = list(map(leaf, flat.leaves, grads, *slots))
        if not trusted and not all(map(leaf_output_fits, outs, zip(flat.leaves, *slots, strict=True))):
            return None  # not what the plan can keep: the checked path runs the step (and names a fault)
        if not slots:
            return Flat([out[0] for out in outs], next_count, ())
        columns = tuple(map(list, zip(*outs, strict=True)))
        return Flat(columns[0], next_count, columns[1:])

    return update, leafwise.state_type


def _core(codes: tuple, dt: Any, n: int, c: int, labels: bool, t_dtype: Any, first_skips: bool, n_leaves: int) -> Any:
    """``core(leaves, x, t) -> (grads, loss) | None``: forward, loss and backward of one batch
    signature on flat leaves (see the module docstring); None when a label is out of range (the
    checked path words the error)."""
    depth = len(codes)
    scalar = np.dtype(dt).type

    def zero_d(v: float) -> np.ndarray:
        return np.asarray(scalar(v))

    one = zero_d(1.0)
    zero = zero_d(0.0)
    clip = ops.sigmoid_clip(np, dt)  # the checked sigmoid's own bound
    pos_c, neg_c = zero_d(clip), zero_d(-clip)
    neg_largest = zero_d(-largest_finite(dt))  # ops.shifted_by_max's floor
    scale = zero_d(1.0 / n)  # the pullback's _scale(1.0, n): 1.0 / n
    classes = np.arange(c)
    label_view = np.dtype(t_dtype.str.replace("i", "u")) if labels else None  # same width and byte order
    matmul, add, add_reduce, maximum, minimum = np.matmul, np.add, np.add.reduce, np.maximum, np.minimum
    multiply, subtract, divide, exp, log = np.multiply, np.subtract, np.divide, np.exp, np.log
    negative, tanh, where, greater, equal = np.negative, np.tanh, np.where, np.greater, np.equal
    max_reduce = np.maximum.reduce
    rev = range(depth - 1, -1, -1)

    def core(leaves: list, x: np.ndarray, t: np.ndarray) -> tuple[list, Any] | None:
        if labels and not int(max_reduce(t.view(label_view), axis=None)) < c:
            return None
        # forward: what each layer's backward reads, as the checked path's pullbacks keep it (a
        # dense layer's input, ReLU's input, Sigmoid's and Tanh's output, a primitive's pullback)
        inputs = [None] * depth
        saved = [None] * depth
        h = x
        for i in range(depth):
            code, arg, big = codes[i]
            if code == _AFFINE:
                inputs[i] = h
                y = matmul(h, leaves[arg])
                h = add(y, leaves[arg + 1], out=y) if big else y + leaves[arg + 1]  # as layers._affine
            elif code == _MATMUL:
                inputs[i] = h
                h = matmul(h, leaves[arg])
            elif code == _SIGMOID:
                h = divide(one, add(one, exp(negative(minimum(maximum(h, neg_c), pos_c)))))
                saved[i] = h
            elif code == _RELU:
                inputs[i] = h
                h = maximum(h, zero)
            elif code == _TANH:
                h = tanh(h)
                saved[i] = h
            else:
                h, saved[i] = arg.vjp(h)
        # softmax cross-entropy, as losses._sce_vjp
        z = h - max_reduce(h, axis=1, keepdims=True)
        maximum(z, neg_largest, out=z)
        e = exp(z)
        s = add_reduce(e, axis=1, keepdims=True)
        tt = equal(t[:, None], classes).astype(dt) if labels else (t if t.dtype == dt else t.astype(dt))
        value = add_reduce(tt * (log(s) - z), axis=None, keepdims=False) / n
        dy = (e / s - tt) * scale
        del h, z, e, s, tt
        # backward, the gradients in the leaves' order
        grads = [None] * n_leaves
        for i in rev:
            code, arg, _ = codes[i]
            x_i, y = inputs[i], saved[i]
            inputs[i] = saved[i] = None  # as the checked path's pullbacks: each activation dies once used
            last = i == 0
            if code in (_AFFINE, _MATMUL):
                grads[arg] = matmul(x_i.T, dy)
                if code == _AFFINE:
                    grads[arg + 1] = add_reduce(dy, axis=0)
                dy = None if last and first_skips else matmul(dy, leaves[arg].T)
            else:
                if last:
                    break  # the data's gradient is never used
                if code == _SIGMOID:
                    dy = multiply(dy, multiply(y, subtract(one, y)))
                elif code == _RELU:
                    dy = where(greater(x_i, 0), dy, zero)
                elif code == _TANH:
                    dy = multiply(dy, subtract(one, multiply(y, y)))
                else:
                    dy = y(dy)
        return grads, value

    return core
