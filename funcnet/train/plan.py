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

from typing import Any

import numpy as np

from funcnet import ops
from funcnet.backend import IN_PLACE_MIN_SIZE, largest_finite
from funcnet.layers import Layer, is_builtin
from funcnet.losses import softmax_cross_entropy
from funcnet.optim.base import Step, _host_count
from funcnet.optim.rules import leaf_output_fits
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


class Plan:
    """One batch signature's fused step: ``plan(state, x, t) -> (params, opt_state, loss)``, or None.

    Attributes:
        runs: how many calls the plan has answered (the guard admitted them); tests read it to
            see that a plan, not the checked path, produced a result.
    """

    __slots__ = ("_run", "runs")

    def __init__(self, run: Any):
        self._run = run
        self.runs = 0

    def __call__(self, state: Any, x: np.ndarray, t: np.ndarray) -> tuple[Any, Any] | None:
        out = self._run(state, x, t)
        if out is not None:
            self.runs += 1
        return out


def plan_key(x: Any, t: Any) -> tuple[Any, ...]:
    """The cache key of a batch of NumPy arrays: both shapes and dtypes."""
    return (x.shape, x.dtype, t.shape, t.dtype)


def plan_runs(step: Any) -> int:
    """How many calls of ``step`` its plans answered (0 when it has none).

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
    codes, shapes = [], []
    for layer, p in zip(layers, per_layer, strict=True):
        keys = _DENSE.get(layer.kind)
        if keys is None:
            if type(p) is not tuple or p:
                return None
            if width * n >= IN_PLACE_MIN_SIZE:
                codes.append((_BIG, _ACTIVATIONS[layer.kind]))
            else:
                codes.append((_ACTIVATION_CODES[layer.kind], None))
            shapes.append(None)
            continue
        if type(p) is not dict or tuple(p) != keys:
            return None
        leaves = [p[k] for k in keys]
        if any(type(a) is not np.ndarray or a.dtype != dt for a in leaves):
            return None
        codes.append((_AFFINE if len(keys) == 2 else _MATMUL, n * leaves[0].shape[1] >= IN_PLACE_MIN_SIZE))
        shapes.append(tuple(a.shape for a in leaves))
        width = leaves[0].shape[1]
    c = width
    if t.ndim == 1:
        labels = True
        if t.dtype.kind not in "iu":
            return None
    else:
        labels = False
        if t.shape != (n, c):
            return None
    dense_keys = tuple(_DENSE.get(layer.kind) for layer in layers)
    update = _flat_update(optimizer, state.opt_state, dense_keys, tuple(shapes), bare, dt)
    if update is None:
        update = _tree_update(optimizer.update, bare)
    run = _kernel(tuple(codes), dense_keys, tuple(shapes), bare, dt, n, c, labels, t.dtype,
                  type(state.opt_state), layers[0].skips_input_grad, update)
    return Plan(run)


def _layers_fit(per_layer: Any, dense_keys: Any, shapes: Any, dt: Any) -> bool:
    """Whether a tree (params, or an optimizer slot shaped like them) is exactly what the plan was
    built for: a tuple with one dict a dense layer holding just its keys, as exact ``np.ndarray``
    leaves of the recorded shapes and dtype, and ``()`` an activation."""
    if type(per_layer) is not tuple or len(per_layer) != len(dense_keys):
        return False
    for p, keys, shape in zip(per_layer, dense_keys, shapes, strict=True):
        if keys is None:
            if type(p) is not tuple or p:
                return False
            continue
        if type(p) is not dict or len(p) != len(keys):
            return False
        for k, sh in zip(keys, shape, strict=True):
            a = p.get(k)
            if type(a) is not np.ndarray or a.shape != sh or a.dtype != dt:
                return False
    return True


def _tree_update(update: Any, bare: bool) -> Any:
    """The optimizer's own ``update`` (all its checks), on the plan's per-layer grads."""

    def run(state, per_layer, grads):
        return update(state.params, grads[0] if bare else tuple(grads), state.opt_state)

    return run


def _flat_update(optimizer: Any, opt_state: Any, dense_keys: tuple, shapes: tuple, bare: bool, dt: Any) -> Any:
    """The update of an optimizer made by ``optim.from_rule``, run leaf by leaf on the plan's
    layers: the same rule, the same step scalars, the same leaf function as its ``update`` calls,
    so the same bits, without flattening and rebuilding three trees. None where that does not
    hold: no rule, an ``update`` replaced after the rule was lifted, float16 (mixed precision
    takes the checked update), another state type."""
    leafwise = getattr(optimizer, "leafwise", None)
    if (leafwise is None or optimizer.update is not leafwise.update or dt == np.float16
            or type(opt_state) is not leafwise.state_type):
        return None
    rule, lr_at, state_type, checked = leafwise.rule, leafwise.lr_at, leafwise.state_type, leafwise.check_outputs
    n_slots = len(state_type._fields) - 1

    def slots_fit(slot_layers):
        return all(_layers_fit(layers_, dense_keys, shapes, dt) for layers_ in slot_layers)

    def run(state, per_layer, grads):
        opt_state = state.opt_state
        slot_layers = tuple((tree_,) if bare else tree_ for tree_ in opt_state[1:])
        if not slots_fit(slot_layers):  # the optimizer's own update names what is wrong
            return _tree_update(optimizer.update, bare)(state, per_layer, grads)
        t, next_count = _host_count(opt_state.count)
        leaf = rule(Step(np, t, lr_at(t, np, dt), dt))
        new_params = []
        new_slots = [[] for _ in range(n_slots)]
        for i, keys in enumerate(dense_keys):
            if keys is None:
                new_params.append(())
                for column in new_slots:
                    column.append(())
                continue
            p, g = per_layer[i], grads[i]
            layer_params = {}
            layer_slots = [{} for _ in range(n_slots)]
            for k in keys:
                slots_k = [slot[i][k] for slot in slot_layers]
                out = leaf(p[k], g[k], *slots_k)
                if checked and not leaf_output_fits(out, (p[k], *slots_k)):
                    # not what a rule must return: the optimizer's own update names the fault
                    return _tree_update(optimizer.update, bare)(state, per_layer, grads)
                layer_params[k] = out[0]
                for j in range(n_slots):
                    layer_slots[j][k] = out[j + 1]
            new_params.append(layer_params)
            for column, layer_slot in zip(new_slots, layer_slots, strict=True):
                column.append(layer_slot)
        if bare:
            return new_params[0], state_type(next_count, *[column[0] for column in new_slots])
        return tuple(new_params), state_type(next_count, *[tuple(column) for column in new_slots])

    return run


def _kernel(codes, dense_keys, shapes, bare, dt, n, c, labels, t_dtype, opt_type, first_skips, update):
    """The fused step of one batch signature (see the module docstring)."""
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
    width = np.dtype(t_dtype.str.replace("i", "u")) if labels else None  # same width and byte order
    matmul, add, add_reduce, maximum, minimum = np.matmul, np.add, np.add.reduce, np.maximum, np.minimum
    multiply, subtract, divide, exp, log = np.multiply, np.subtract, np.divide, np.exp, np.log
    negative, tanh, where, greater, astype, equal = np.negative, np.tanh, np.where, np.greater, np.astype, np.equal
    max_reduce = np.maximum.reduce
    rev = range(depth - 1, -1, -1)
    big = [code in (_AFFINE, _MATMUL) and extra for code, extra in codes]  # Affine adds b in place

    def guard(state):
        if type(state) is not TrainState or type(state.opt_state) is not opt_type:
            return None
        params = state.params
        per_layer = (params,) if bare else params
        return per_layer if _layers_fit(per_layer, dense_keys, shapes, dt) else None

    def run(state, x, t):
        per_layer = guard(state)
        if per_layer is None:
            return None
        if labels and not int(max_reduce(t.view(width), axis=None)) < c:
            return None  # the checked path words the error
        # forward: each layer's input and (activations) output or pullback
        inputs = [None] * depth
        saved = [None] * depth
        h = x
        for i in range(depth):
            code, prim = codes[i]
            inputs[i] = h
            if code == _AFFINE:
                p = per_layer[i]
                y = matmul(h, p["W"])
                h = add(y, p["b"], out=y) if big[i] else y + p["b"]  # as layers._affine
            elif code == _MATMUL:
                h = matmul(h, per_layer[i]["W"])
            elif code == _SIGMOID:
                h = divide(one, add(one, exp(negative(minimum(maximum(h, neg_c), pos_c)))))
                saved[i] = h
            elif code == _RELU:
                h = maximum(h, zero)
            elif code == _TANH:
                h = tanh(h)
                saved[i] = h
            else:
                h, saved[i] = prim.vjp(h)
        # softmax cross-entropy, as losses._sce_vjp
        z = h - max_reduce(h, axis=1, keepdims=True)
        maximum(z, neg_largest, out=z)
        e = exp(z)
        s = add_reduce(e, axis=1, keepdims=True)
        tt = astype(equal(t[:, None], classes), dt) if labels else (t if t.dtype == dt else astype(t, dt))
        value = add_reduce(tt * (log(s) - z), axis=None, keepdims=False) / n
        dy = (e / s - tt) * scale
        del h, z, e, s, tt
        # backward
        grads = [None] * depth
        for i in rev:
            code = codes[i][0]
            x_i, y = inputs[i], saved[i]
            inputs[i] = saved[i] = None  # as the checked path's pullbacks: each activation dies once used
            last = i == 0
            if code == _AFFINE:
                p = per_layer[i]
                grads[i] = {"W": matmul(x_i.T, dy), "b": add_reduce(dy, axis=0)}
                dy = None if last and first_skips else matmul(dy, p["W"].T)
            elif code == _MATMUL:
                grads[i] = {"W": matmul(x_i.T, dy)}
                dy = None if last and first_skips else matmul(dy, per_layer[i]["W"].T)
            else:
                grads[i] = ()
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
        # the activations go before the update allocates the new params (the checked path's order)
        del x_i, y, dy, inputs, saved
        params, opt_state = update(state, per_layer, grads)
        return params, opt_state, value

    return run
