"""Step plans (funcnet.train.plan): bit for bit the checked step, the same errors, guarded fallbacks."""

from __future__ import annotations

import re

import numpy as np
import pytest
import test_bad_input as bad
from conftest import OPTIMIZER_SETUPS, backend_or_skip

from funcnet import datasets, layers, losses, optim, random, train, tree
from funcnet.models import TwoLayerNet
from funcnet.train.plan import plan_runs

_ACTIVATIONS = (layers.Sigmoid, layers.ReLU, layers.Tanh)
STEPS = 6


def _model(depth: int, classes: int = 3, hidden: int = 7) -> layers.Layer:
    """``depth`` dense layers (Affine, every third a MatMul) with activations between them."""
    parts = []
    for i in range(depth - 1):
        parts.append(layers.MatMul(hidden + i) if i % 3 == 2 else layers.Affine(hidden + i))
        parts.append(_ACTIVATIONS[i % 3]())
    parts.append(layers.Affine(classes))
    return layers.serial(*parts)


def _batches(n: int, width: int, classes: int, dtype: str, one_hot: bool, count: int = STEPS, seed: int = 1):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        x = rng.standard_normal((n, width)).astype(dtype)
        t = rng.integers(0, classes, n)
        if one_hot:
            t = (t[:, None] == np.arange(classes)).astype(dtype)
        out.append((x, t))
    return out


def _same_bits(a, b) -> bool:
    la, lb = tree.leaves(a), tree.leaves(b)
    return len(la) == len(lb) and all(
        type(p) is type(q) and np.asarray(p).dtype == np.asarray(q).dtype and np.shape(p) == np.shape(q)
        and np.asarray(p).tobytes() == np.asarray(q).tobytes() for p, q in zip(la, lb, strict=True))


def _assert_plan_equals_checked(model, opt, dtype, batches, in_shape):
    step = train.make_train_step(model, losses.softmax_cross_entropy, opt)
    checked = train.make_train_step(model, losses.softmax_cross_entropy, opt)._checked
    planned = reference = train.init_state(model, opt, random.key(0), in_shape, dtype=dtype)
    for batch in batches:
        with np.errstate(all="ignore"):  # float16 may overflow: it must do so identically
            planned, m1 = step(planned, batch)
            reference, m2 = checked(reference, batch)
        assert _same_bits(m1["loss"], m2["loss"])
        assert _same_bits((planned.params, planned.opt_state), (reference.params, reference.opt_state))
        assert planned.step == reference.step
    assert plan_runs(step) == len(batches) - 1  # every call after the first ran the plan


@pytest.mark.parametrize("one_hot", [False, True], ids=["labels", "one-hot"])
@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("name", list(OPTIMIZER_SETUPS))
def test_plan_is_bit_identical_to_the_checked_step(name, dtype, depth, one_hot):
    batches = _batches(12, 4, 3, dtype, one_hot)
    _assert_plan_equals_checked(_model(depth), OPTIMIZER_SETUPS[name](), dtype, batches, (4,))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("name", ["sgd", "adam/book", "with_clipping(adam/schedule)"])
def test_plan_of_large_activations_uses_the_in_place_primitives(name, dtype):
    # 256 x 64 = IN_PLACE_MIN_SIZE elements: the activations take ops' in-place branches
    model = layers.serial(layers.Affine(64), layers.Sigmoid(), layers.Affine(64), layers.Tanh(),
                          layers.Affine(64), layers.ReLU(), layers.Affine(5))
    batches = _batches(256, 8, 5, dtype, False, count=3)
    _assert_plan_equals_checked(model, OPTIMIZER_SETUPS[name](), dtype, batches, (8,))


@pytest.mark.parametrize("name", ["sgd", "momentum", "with_clipping(sgd)"])
def test_large_params_updated_into_the_plans_own_grads_leave_every_given_array_alone(name):
    # a 128 x 128 weight has IN_PLACE_MIN_SIZE elements: sgd writes its new value into the grad
    # the plan computed (Step.grads_writable); nothing the caller holds may change
    model = layers.serial(layers.Affine(128), layers.Sigmoid(), layers.Affine(128), layers.Affine(5))
    batches = _batches(16, 8, 5, "float32", False, count=4)
    _assert_plan_equals_checked(model, OPTIMIZER_SETUPS[name](), "float32", batches, (8,))
    step = train.make_train_step(model, losses.softmax_cross_entropy, OPTIMIZER_SETUPS[name]())
    state = train.init_state(model, step.optimizer, random.key(1), (8,))
    for batch in batches:
        held = tree.map(lambda a: a.copy() if isinstance(a, np.ndarray) else a, (state, batch))
        new, _ = step(state, batch)
        assert _same_bits(held, (state, batch))
        state = new
    assert plan_runs(step) == len(batches) - 1


@pytest.mark.parametrize("kind", ["Affine", "MatMul"])
def test_a_bare_dense_layer_is_planned(kind):
    model = getattr(layers, kind)(3)
    _assert_plan_equals_checked(model, optim.adam(0.01), "float32", _batches(10, 4, 3, "float32", False), (4,))


def test_chained_optimizers_and_the_seed_net():
    opt = optim.chain(optim.clip(0.5), optim.momentum(0.1))
    _assert_plan_equals_checked(TwoLayerNet(4, 10, 3), opt, "float32", _batches(30, 4, 3, "float32", False), (4,))


@pytest.mark.parametrize("name", ["sgd", "adam/book"])
def test_fit_through_plans_equals_fit_through_the_checked_step(name):
    x, t = _batches(60, 2, 3, "float32", False, count=1)[0]
    opt = OPTIMIZER_SETUPS[name]()
    step = train.make_train_step(TwoLayerNet(2, 10, 3), losses.softmax_cross_entropy, opt)
    state = train.init_state(step.model, opt, random.key(0), (2,))
    kw = {"epochs": 4, "batch_size": 20, "eval_interval": 3, "progress": False}
    got, history = train.fit(step, state, x, t, **kw)
    want, want_history = train.fit(step._checked, state, x, t, **kw)
    assert _same_bits((got.params, got.opt_state), (want.params, want.opt_state))
    assert history["loss"] == want_history["loss"]
    assert plan_runs(step) == 4 * 3 - 1


def test_models_a_plan_cannot_run_take_the_checked_path():
    x, t = _batches(8, 4, 3, "float32", False, count=1)[0]
    own = layers.layer_from_vjp(lambda key, s, dtype="float32": (tuple(s), ()),
                                lambda p, x, rng=None: (2 * x, lambda dy: ((), 2 * dy)), stochastic=False)
    for model in (layers.serial(layers.Affine(5), layers.Dropout(0.5), layers.Affine(3)),
                  layers.serial(layers.Affine(5), own, layers.Affine(3)),
                  layers.serial(layers.Affine(5), layers.Softmax(), layers.Affine(3))):
        step = train.make_train_step(model, losses.softmax_cross_entropy, optim.sgd(0.1))
        state = train.init_state(model, step.optimizer, random.key(0), (4,))
        for _ in range(3):
            state, _ = step(state, (x, t))
        assert plan_runs(step) == 0 and not any(step._plans.values())
    step = train.make_train_step(_model(2), losses.mean_squared_error, optim.sgd(0.1))
    state = train.init_state(step.model, step.optimizer, random.key(0), (4,))
    for _ in range(3):
        state, _ = step(state, (x, np.zeros((8, 3), np.float32)))
    assert plan_runs(step) == 0


# --- the errors are the same after a plan is cached ----------------------------------------------

_TRAIN_ROWS = [p for p in bad.RAISES if p.id.startswith(("step ", "fit "))]


@pytest.fixture(scope="module")
def warm_step():
    """test_bad_input's STEP with plans cached for its step batch and its fit batches."""
    for _ in range(2):
        bad.STEP(bad.STATE, (bad.X, bad.LABELS))
    train.fit(bad.STEP, bad.STATE, bad.DATA_X, bad.DATA_T, **bad.FIT)
    assert plan_runs(bad.STEP) >= 5
    return bad.STEP


@pytest.mark.parametrize("call, error, match", [p.values for p in _TRAIN_ROWS], ids=[p.id for p in _TRAIN_ROWS])
def test_every_bad_step_and_fit_row_raises_the_same_error_after_a_plan(warm_step, call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_the_train_rows_were_found():
    assert len(_TRAIN_ROWS) >= 20


@pytest.mark.parametrize("labels, message", [
    (np.array([0, 1, 3, 0]), "softmax_cross_entropy: labels must be in [0, 3), got values in [0, 3]"),
    (np.array([0, -1, 2, 0]), "softmax_cross_entropy: labels must be in [0, 3), got values in [-1, 2]"),
])
def test_labels_out_of_range_raise_through_a_planned_signature(warm_step, labels, message):
    before = plan_runs(warm_step)
    with pytest.raises(ValueError, match=re.escape(message)):
        warm_step(bad.STATE, (bad.X, labels))
    assert plan_runs(warm_step) == before


# --- the guard -------------------------------------------------------------------------------------


def _planned():
    """A step with a plan cached for batches of (10, 4) float32 and int64 labels, and a batch."""
    model = _model(3)
    step = train.make_train_step(model, losses.softmax_cross_entropy, optim.adam(0.01))
    state = train.init_state(model, step.optimizer, random.key(0), (4,))
    batch = _batches(10, 4, 3, "float32", False, count=1)[0]
    step(state, batch)
    step(state, batch)
    assert plan_runs(step) == 1
    return step, state, batch


def _outcome(fn, state, batch):
    try:
        with np.errstate(all="ignore"):
            new, metrics = fn(state, batch)
    except (TypeError, ValueError) as err:
        return type(err), str(err)
    return new, metrics


def _same_outcome(a, b) -> bool:
    if isinstance(a[0], type):
        return a == b
    return _same_bits((a[0].params, a[0].opt_state, a[1]["loss"]), (b[0].params, b[0].opt_state, b[1]["loss"]))


def _gain_a_key(state):
    params = list(state.params)
    params[0] = {**params[0], "extra": np.zeros(2, np.float32)}
    return state._replace(params=tuple(params))


def _float64(state):
    return state._replace(params=tree.map(lambda a: a.astype(np.float64), state.params),
                          opt_state=tree.map(lambda a: a.astype(np.float64) if a.dtype.kind == "f" else a,
                                             state.opt_state))


@pytest.mark.parametrize("change", [
    pytest.param(_gain_a_key, id="a params dict gaining a key"),
    pytest.param(lambda s: s._replace(params=(*s.params[:2], {"W": s.params[2]["W"]}, *s.params[3:])),
                 id="a params dict losing a key"),
    pytest.param(lambda s: s._replace(params=list(s.params)), id="params a list"),
    pytest.param(_float64, id="params of another dtype"),
    pytest.param(lambda s: s._replace(opt_state=optim.sgd(0.1).init(s.params)), id="another optimizer's state"),
    pytest.param(lambda s: s._replace(params=tree.map(lambda a: a[:, :-1] if a.ndim == 2 else a, s.params)),
                 id="params of other shapes"),
])
def test_states_the_guard_does_not_know_take_the_checked_path(change):
    step, state, batch = _planned()
    state = change(state)
    got = _outcome(step, state, batch)
    want = _outcome(train.make_train_step(step.model, step.loss, step.optimizer)._checked, state, batch)
    assert _same_outcome(got, want)
    assert plan_runs(step) == 1  # the plan did not answer


def _read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("change", [
    pytest.param(lambda x, t, s: ((np.asfortranarray(x), t), s), id="Fortran-order x"),
    pytest.param(lambda x, t, s: ((_read_only(x), _read_only(t)), s), id="read-only batch"),
    pytest.param(lambda x, t, s: ((x, t), s._replace(params=tree.map(_read_only, s.params))), id="read-only params"),
    pytest.param(lambda x, t, s: ((x, t), s._replace(params=tree.map(np.asfortranarray, s.params))),
                 id="Fortran-order params"),
    pytest.param(lambda x, t, s: ((np.ascontiguousarray(np.repeat(x, 2, axis=1)[:, ::2]), t), s),
                 id="a copied strided x"),
])
def test_layouts_and_read_only_arrays_give_the_checked_result(change):
    # the plan runs the checked path's operations on the arrays it is given and writes only
    # into its own buffers, so layouts and write flags cannot change its result: it answers them
    step, state, (x, t) = _planned()
    batch, state = change(x, t, state)
    got = _outcome(step, state, batch)
    want = _outcome(train.make_train_step(step.model, step.loss, step.optimizer)._checked, state, batch)
    assert _same_outcome(got, want)
    assert plan_runs(step) == 2


@pytest.mark.parametrize("change", [
    pytest.param(lambda x, t: (x.astype(np.float64), t), id="x of another dtype"),
    pytest.param(lambda x, t: (x, t.astype(np.int32)), id="labels of another dtype"),
    pytest.param(lambda x, t: (x[:7], t[:7]), id="another batch size"),
    pytest.param(lambda x, t: [x, t], id="a list batch"),
    pytest.param(lambda x, t: (x.tolist(), t), id="x a list"),
    pytest.param(lambda x, t: (np.asmatrix(x), t), id="an ndarray subclass"),
])
def test_batches_of_another_signature_take_the_checked_path(change):
    step, state, (x, t) = _planned()
    batch = change(x, t)
    got = _outcome(step, state, batch)
    want = _outcome(train.make_train_step(step.model, step.loss, step.optimizer)._checked, state, batch)
    assert _same_outcome(got, want)
    assert plan_runs(step) == 1


def test_a_jax_batch_takes_the_checked_path():
    backend_or_skip("jax")
    import jax.numpy as jnp

    step, state, (x, t) = _planned()
    got = _outcome(step, state, (jnp.asarray(x), jnp.asarray(t)))
    want = _outcome(train.make_train_step(step.model, step.loss, step.optimizer)._checked, state,
                    (jnp.asarray(x), jnp.asarray(t)))
    assert got == want and got[0] is TypeError  # arrays of two backends, named
    on_jax = train.init_state(step.model, step.optimizer, random.key(0), (4,), backend="jax")
    new, _ = step(on_jax, (jnp.asarray(x), jnp.asarray(t)))
    want, _ = train.make_train_step(step.model, step.loss, step.optimizer)._checked(
        on_jax, (jnp.asarray(x), jnp.asarray(t)))
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
               zip(tree.leaves(new.params), tree.leaves(want.params), strict=True))
    assert plan_runs(step) == 1


def test_the_cache_is_bounded_and_not_part_of_the_value():
    step, state, _ = _planned()
    for n in range(2, 30):
        step(state, _batches(n, 4, 3, "float32", False, count=1)[0])
    assert len(step._plans) <= 10
    assert "_plans" not in repr(step)


def test_a_replaced_update_is_used_by_the_plan_not_the_lifted_rule():
    # Optimizer.leafwise describes from_rule's own update; after _replace(update=...) the plan
    # must call the new update (here: one that never moves the params)
    x, t = datasets.spiral.load_data()
    x = x.astype(np.float32)
    opt = optim.sgd(1.0)
    frozen = opt._replace(update=lambda params, grads, state: (params, state._replace(count=state.count + 1)))
    model = TwoLayerNet(2, 10, 3)
    step = train.TrainStep(model, losses.softmax_cross_entropy, frozen)
    state = train.init_state(model, frozen, random.key(0), (2,))
    start = state.params
    for _ in range(3):
        state, _ = step(state, (x[:30], t[:30]))
    assert plan_runs(step) == 2
    for a, b in zip(tree.leaves(state.params), tree.leaves(start), strict=True):
        assert np.array_equal(a, b)


def test_at_most_max_plans_signatures_get_a_plan():
    from funcnet.train.plan import MAX_PLANS

    model, opt = TwoLayerNet(2, 4, 3), optim.sgd(0.1)
    step = train.TrainStep(model, losses.softmax_cross_entropy, opt)
    state = train.init_state(model, opt, random.key(0), (2,))
    for n in range(1, MAX_PLANS + 2):  # one signature more than plans are kept for
        batch = (np.ones((n, 2), np.float32), np.arange(n) % 3)
        state, _ = step(state, batch)  # checked, plan built
        state, _ = step(state, batch)  # planned, where a plan was kept
    assert plan_runs(step) == MAX_PLANS


def test_a_builtin_layer_with_its_vjp_replaced_is_not_planned_as_the_builtin():
    # a layer keeps its kind through _replace(vjp=...): the plan must not take it for the stock one
    x, t = datasets.spiral.load_data()
    x = x.astype(np.float32)
    affine = layers.Affine(3)

    def frozen_vjp(params, x_, *, rng=None):
        y, pullback = affine.vjp(params, x_, rng=rng)
        return y, lambda dy, input_grad=True: (tree.map(lambda a: a * 0, pullback(dy, input_grad)[0]),
                                               pullback(dy, input_grad)[1])

    frozen = affine._replace(vjp=frozen_vjp)
    assert frozen.kind == "affine" and not layers.is_builtin(frozen)
    for model in (layers.serial(layers.Affine(10), layers.Sigmoid(), frozen), frozen):
        opt = optim.sgd(1.0)
        step = train.TrainStep(model, losses.softmax_cross_entropy, opt)
        state = train.init_state(model, opt, random.key(0), (2,))
        last = state.params if model is frozen else state.params[2]
        state, _ = train.fit(step, state, x, t, epochs=2, batch_size=30, progress=False)
        now = state.params if model is frozen else state.params[2]
        assert plan_runs(step) == 0
        assert all(np.array_equal(a, b) for a, b in zip(tree.leaves(now), tree.leaves(last), strict=True))
    # a serial whose sublayers field was replaced runs its original layers: no plan either
    net = layers.serial(layers.Affine(10), layers.Sigmoid(), layers.Affine(3))
    assert not layers.is_builtin(net._replace(sublayers=(layers.Affine(10), layers.Tanh(), layers.Affine(3))))
    assert layers.is_builtin(net) and layers.is_builtin(TwoLayerNet(2, 10, 3))
