"""Optimizers, schedules and gradient clipping.

Three oracles: the book's own in-place optimizer classes (copied below, run in float64), optax
where its formulas coincide with ours, and the variants compared with each other.
"""

from __future__ import annotations

import math

import chex
import numpy as np
import pytest
from conftest import readonly
from hypothesis import given, settings
from hypothesis import strategies as st

from funcnet import backend, optim, schedules, tree

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
optax = pytest.importorskip("optax")


# --- the book's optimizers (common/optimizer.py), in place, as the float64 oracle -----------------


class BookSGD:
    def __init__(self, lr=0.01):
        self.lr = lr

    def update(self, params, grads):
        for i in range(len(params)):
            params[i] -= self.lr * grads[i]


class BookMomentum:
    def __init__(self, lr=0.01, momentum=0.9):
        self.lr, self.momentum, self.v = lr, momentum, None

    def update(self, params, grads):
        if self.v is None:
            self.v = [np.zeros_like(p) for p in params]
        for i in range(len(params)):
            self.v[i] = self.momentum * self.v[i] - self.lr * grads[i]
            params[i] += self.v[i]


class BookNesterov:
    def __init__(self, lr=0.01, momentum=0.9):
        self.lr, self.momentum, self.v = lr, momentum, None

    def update(self, params, grads):
        if self.v is None:
            self.v = [np.zeros_like(p) for p in params]
        for i in range(len(params)):
            self.v[i] *= self.momentum
            self.v[i] -= self.lr * grads[i]
            params[i] += self.momentum * self.momentum * self.v[i]
            params[i] -= (1 + self.momentum) * self.lr * grads[i]


class BookAdaGrad:
    def __init__(self, lr=0.01):
        self.lr, self.h = lr, None

    def update(self, params, grads):
        if self.h is None:
            self.h = [np.zeros_like(p) for p in params]
        for i in range(len(params)):
            self.h[i] += grads[i] * grads[i]
            params[i] -= self.lr * grads[i] / (np.sqrt(self.h[i]) + 1e-7)


class BookRMSprop:
    def __init__(self, lr=0.01, decay_rate=0.99):
        self.lr, self.decay_rate, self.h = lr, decay_rate, None

    def update(self, params, grads):
        if self.h is None:
            self.h = [np.zeros_like(p) for p in params]
        for i in range(len(params)):
            self.h[i] *= self.decay_rate
            self.h[i] += (1 - self.decay_rate) * grads[i] * grads[i]
            params[i] -= self.lr * grads[i] / (np.sqrt(self.h[i]) + 1e-7)


class BookAdam:
    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self.lr, self.beta1, self.beta2 = lr, beta1, beta2
        self.iter, self.m, self.v = 0, None, None

    def update(self, params, grads):
        if self.m is None:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        self.iter += 1
        lr_t = self.lr * np.sqrt(1.0 - self.beta2**self.iter) / (1.0 - self.beta1**self.iter)
        for i in range(len(params)):
            self.m[i] += (1 - self.beta1) * (grads[i] - self.m[i])
            self.v[i] += (1 - self.beta2) * (grads[i] ** 2 - self.v[i])
            params[i] -= lr_t * self.m[i] / (np.sqrt(self.v[i]) + 1e-7)


def book_clip_grads(grads, max_norm):
    total_norm = 0
    for grad in grads:
        total_norm += np.sum(grad**2)
    total_norm = np.sqrt(total_norm)
    rate = max_norm / (total_norm + 1e-6)
    if rate < 1:
        for grad in grads:
            grad *= rate


# --- fixtures: one params tree with dicts, tuples and an empty node; a sequence of gradients ------

STEPS = 5


def make_params(dtype=np.float64):
    rng = np.random.default_rng(1)
    params = {"layer": ({"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}, ()),
              "scale": rng.standard_normal(2)}
    return tree.map(lambda x: x.astype(dtype), params)


def make_grads(dtype=np.float64, steps=STEPS):
    rng = np.random.default_rng(2)
    shapes = make_params()
    return [tree.map(lambda x: rng.standard_normal(x.shape).astype(dtype), shapes) for _ in range(steps)]


def run(opt, params, grads_seq):
    state = opt.init(params)
    for grads in grads_seq:
        params, state = opt.update(params, grads, state)
    return params, state


def optimizer_state(state):
    """The optimizer's own state: a chain keeps it last, after its transformations' states."""
    return state.optimizer if isinstance(state, optim.ChainState) else state


def run_book(book, params, grads_seq, schedule=None, max_norm=None):
    leaves, spec = tree.flatten(backend.to_numpy(params))
    leaves = [np.array(x, dtype=np.float64) for x in leaves]
    for step, grads in enumerate(grads_seq):
        g = [np.array(x, dtype=np.float64) for x in tree.leaves(backend.to_numpy(grads))]
        if max_norm is not None:
            book_clip_grads(g, max_norm)
        if schedule is not None:
            book.lr = schedule(step)
        book.update(leaves, g)
    return tree.unflatten(spec, leaves)


EXP = schedules.exponential_decay(0.1, 0.5, 2)
COS = schedules.cosine_decay(0.05, 4, alpha=0.2)
STAIRS = schedules.step_decay(0.01, 0.5, 2)

# (id, funcnet optimizer, book oracle, schedule for the oracle's lr, max_norm for the oracle)
BOOK_CASES = [
    ("sgd", optim.sgd(0.1), BookSGD(0.1), None, None),
    ("momentum", optim.momentum(0.1, 0.8), BookMomentum(0.1, 0.8), None, None),
    ("nesterov", optim.nesterov(0.1, 0.8), BookNesterov(0.1, 0.8), None, None),
    ("adagrad", optim.adagrad(0.1), BookAdaGrad(0.1), None, None),
    ("rmsprop", optim.rmsprop(0.1, 0.9), BookRMSprop(0.1, 0.9), None, None),
    ("adam", optim.adam(0.01, 0.8, 0.99), BookAdam(0.01, 0.8, 0.99), None, None),
    ("SGD", optim.SGD(), BookSGD(), None, None),
    ("Momentum", optim.Momentum(), BookMomentum(), None, None),
    ("Nesterov", optim.Nesterov(), BookNesterov(), None, None),
    ("AdaGrad", optim.AdaGrad(), BookAdaGrad(), None, None),
    ("RMSprop", optim.RMSprop(), BookRMSprop(), None, None),
    ("Adam", optim.Adam(), BookAdam(), None, None),
    ("sgd-exp", optim.sgd(EXP), BookSGD(), EXP, None),
    ("momentum-cos", optim.momentum(COS), BookMomentum(), COS, None),
    ("nesterov-exp", optim.nesterov(EXP), BookNesterov(), EXP, None),
    ("adagrad-cos", optim.adagrad(COS), BookAdaGrad(), COS, None),
    ("rmsprop-stairs", optim.rmsprop(STAIRS), BookRMSprop(), STAIRS, None),
    ("adam-stairs", optim.adam(STAIRS), BookAdam(), STAIRS, None),
    ("adam-warmup", optim.adam(schedules.warmup(COS, 3, 0.01)), BookAdam(),
     schedules.warmup(COS, 3, 0.01), None),
    ("clipped-momentum", optim.with_clipping(optim.momentum(0.1), 2.0), BookMomentum(0.1), None, 2.0),
    ("clipped-adam", optim.chain(optim.clip_by_global_norm(1.0), optim.adam(0.01)), BookAdam(0.01), None, 1.0),
]
BOOK_IDS = [case[0] for case in BOOK_CASES]


def fresh_book(book):
    """A new oracle like ``book`` (the oracles keep state between updates)."""
    fields = {k: v for k, v in vars(book).items() if k in ("lr", "momentum", "decay_rate", "beta1", "beta2")}
    return type(book)(**fields)


@pytest.mark.parametrize(("name", "opt", "book", "schedule", "max_norm"), BOOK_CASES, ids=BOOK_IDS)
def test_float64_matches_the_books_update(name, opt, book, schedule, max_norm):
    params, grads = make_params(), make_grads()
    got, state = run(opt, readonly(params), [readonly(g) for g in grads])
    want = run_book(fresh_book(book), params, grads, schedule, max_norm)
    chex.assert_trees_all_close(got, want, rtol=1e-13, atol=1e-15)
    chex.assert_trees_all_equal_dtypes(got, params)
    assert int(optimizer_state(state).count) == STEPS


@pytest.mark.parametrize(("name", "opt", "book", "schedule", "max_norm"), BOOK_CASES, ids=BOOK_IDS)
def test_float32_in_float32_out_on_every_backend(xp, name, opt, book, schedule, max_norm):
    params32, grads32 = make_params(np.float32), make_grads(np.float32)
    params = backend.put(readonly(params32), xp)
    grads_seq = [backend.put(readonly(g), xp) for g in grads32]
    got, state = run(opt, params, grads_seq)
    state = optimizer_state(state)
    for leaf in tree.leaves((got, state[1:])):
        assert backend.namespace(leaf) is xp
        assert leaf.dtype == xp.float32
    assert state.count.shape == () and backend.is_integer(state.count.dtype)
    assert backend.namespace(state.count) is xp and int(state.count) == STEPS
    want = run_book(fresh_book(book), params32, grads32, schedule, max_norm)
    chex.assert_trees_all_close(backend.to_numpy(got), tree.map(lambda x: x.astype(np.float32), want),
                                rtol=2e-5, atol=2e-6)


# --- against optax, in float64, where the formulas coincide ----------------------------------------

OPTAX_CASES = [
    ("sgd", optim.sgd(0.1), optax.sgd(0.1)),
    ("sgd-cosine", optim.sgd(schedules.cosine_decay(0.1, 4, 0.3)),
     optax.sgd(optax.cosine_decay_schedule(0.1, 4, 0.3))),
    ("sgd-exp-staircase", optim.sgd(schedules.exponential_decay(0.1, 0.7, 2, staircase=True)),
     optax.sgd(optax.exponential_decay(0.1, 2, 0.7, staircase=True))),
    ("momentum", optim.momentum(0.1, 0.8), optax.sgd(0.1, momentum=0.8)),
    ("nesterov-standard", optim.nesterov(0.1, 0.8, form="standard"), optax.sgd(0.1, momentum=0.8, nesterov=True)),
    ("nesterov-standard-schedule", optim.nesterov(schedules.exponential_decay(0.1, 0.5, 3), 0.8, form="standard"),
     optax.sgd(optax.exponential_decay(0.1, 3, 0.5), momentum=0.8, nesterov=True)),
    ("adagrad-optax", optim.adagrad(0.1, eps_in_sqrt=True, initial_accumulator_value=0.1), optax.adagrad(0.1)),
    ("rmsprop-book", optim.rmsprop(0.1), optax.rmsprop(0.1, decay=0.99, eps=1e-7, eps_in_sqrt=False)),
    ("rmsprop-eps-in-sqrt", optim.rmsprop(0.1, 0.9, eps=1e-8, eps_in_sqrt=True), optax.rmsprop(0.1, decay=0.9)),
    ("adam-standard", optim.adam(0.01, form="standard"), optax.adam(0.01)),
    ("adam-standard-eps-root", optim.adam(0.01, 0.8, 0.99, eps=1e-6, eps_root=1e-9, form="standard"),
     optax.adam(0.01, 0.8, 0.99, eps=1e-6, eps_root=1e-9)),
    ("adam-standard-schedule", optim.adam(schedules.cosine_decay(0.01, 3), form="standard"),
     optax.adam(optax.cosine_decay_schedule(0.01, 3))),
]


@pytest.mark.parametrize(("name", "opt", "reference"), OPTAX_CASES, ids=[c[0] for c in OPTAX_CASES])
def test_matches_optax_where_the_formulas_coincide(name, opt, reference):
    # optax.exponential_decay computes in float32 on an int32 count, even under x64
    rtol = 1e-6 if "exp" in name or name == "nesterov-standard-schedule" else 1e-12
    params, grads_seq = make_params(), make_grads()
    got, _ = run(opt, params, grads_seq)
    want = backend.put(params, "jax")
    state = reference.init(want)
    for grads in grads_seq:
        updates, state = reference.update(backend.put(grads, "jax"), state, want)
        want = optax.apply_updates(want, updates)
    chex.assert_trees_all_close(got, backend.to_numpy(want), rtol=rtol, atol=rtol * 1e-2)


# --- the variants against each other ----------------------------------------------------------------


@pytest.mark.parametrize("opt", [optim.momentum(0.1, 0.0), optim.nesterov(0.1, 0.0),
                                 optim.nesterov(0.1, 0.0, form="standard")], ids=["momentum", "nesterov", "standard"])
def test_zero_momentum_is_sgd(opt):
    params, grads_seq = make_params(), make_grads()
    chex.assert_trees_all_close(run(opt, params, grads_seq)[0], run(optim.sgd(0.1), params, grads_seq)[0],
                                rtol=1e-15)


def test_book_and_standard_adam_differ_only_in_eps():
    params, grads_seq = make_params(), make_grads()
    book = run(optim.adam(0.01, eps=0.0), params, grads_seq)[0]
    standard = run(optim.adam(0.01, eps=0.0, form="standard"), params, grads_seq)[0]
    chex.assert_trees_all_close(book, standard, rtol=1e-13)
    with_eps = run(optim.adam(0.01, eps=1e-2), params, grads_seq)[0]
    assert not np.allclose(tree.leaves(with_eps)[0], tree.leaves(book)[0], rtol=1e-6)


def test_book_nesterov_is_not_the_standard_one():
    params, grads_seq = make_params(), make_grads()
    book = run(optim.nesterov(0.1, 0.8), params, grads_seq)[0]
    standard = run(optim.nesterov(0.1, 0.8, form="standard"), params, grads_seq)[0]
    assert not np.allclose(tree.leaves(book)[0], tree.leaves(standard)[0], rtol=1e-3)


def test_momentum_under_a_schedule_keeps_the_books_velocity():
    """The book's v carries each step's lr; optax's trace is scaled by the current lr only."""
    params, grads_seq = make_params(), make_grads()
    ours = run(optim.momentum(EXP, 0.8), params, grads_seq)[0]
    want = run_book(BookMomentum(momentum=0.8), params, grads_seq, EXP)
    chex.assert_trees_all_close(ours, want, rtol=1e-13)


def test_chain_of_a_clip_that_never_triggers_is_the_optimizer():
    params, grads_seq = make_params(), make_grads()
    plain = run(optim.adam(0.01), params, grads_seq)
    clipped = run(optim.with_clipping(optim.adam(0.01), 1e6), params, grads_seq)
    chex.assert_trees_all_equal(plain[0], clipped[0])
    assert type(clipped[1]) is optim.AdamState


# --- jax.jit ----------------------------------------------------------------------------------------

JIT_CASES = [case[:2] for case in BOOK_CASES[:6] + BOOK_CASES[12:]] + [
    ("nesterov-standard", optim.nesterov(EXP, form="standard")),
    ("adam-standard", optim.adam(COS, form="standard")),
    ("adagrad-in-sqrt", optim.adagrad(0.1, eps_in_sqrt=True, initial_accumulator_value=0.1)),
]


def assert_jit_equals_eager(opt, params, grads_seq, rtol=2e-6):
    """``opt.update`` under ``jax.jit`` gives the eager params and state, in the same dtypes."""
    eager, eager_state = run(opt, params, grads_seq)
    update = jax.jit(opt.update)
    jitted, state = params, opt.init(params)
    for grads in grads_seq:
        jitted, state = update(jitted, grads, state)
    chex.assert_trees_all_close(jitted, eager, rtol=rtol, atol=rtol / 20)
    chex.assert_trees_all_close(state, eager_state, rtol=rtol, atol=rtol / 20)
    chex.assert_trees_all_equal_dtypes(jitted, params)  # x64 is on: a float64 scalar would show
    chex.assert_trees_all_equal_dtypes(state, opt.init(params))


@pytest.mark.parametrize(("name", "opt"), JIT_CASES, ids=[c[0] for c in JIT_CASES])
def test_jit_equals_eager(name, opt):
    params = backend.put(make_params(np.float32), "jax")
    assert_jit_equals_eager(opt, params, [backend.put(g, "jax") for g in make_grads(np.float32)])


# --- convergence: the book's parabola (vol. 1, ch. 6) and Rosenbrock's valley ----------------------


def parabola(p):
    x, y = p["x"], p["y"]
    return x**2 / 20 + y**2, {"x": x / 10, "y": 2 * y}


def rosenbrock(p):
    x, y = p["x"], p["y"]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2, {"x": -2 * (1 - x) - 400 * x * (y - x**2), "y": 200 * (y - x**2)}


def descend(opt, f, start, steps):
    p = {"x": np.array([start[0]]), "y": np.array([start[1]])}
    state = opt.init(p)
    for _ in range(steps):
        p, state = opt.update(p, f(p)[1], state)
    return np.array([p["x"][0], p["y"][0]])


# the book's learning rates for its figure 6-8
PARABOLA = [optim.SGD(0.95), optim.Momentum(0.1), optim.Nesterov(0.1), optim.nesterov(0.1, form="standard"),
            optim.AdaGrad(1.5), optim.RMSprop(0.1), optim.Adam(0.3), optim.adam(0.3, form="standard")]
PARABOLA_IDS = ["sgd", "momentum", "nesterov", "nesterov-standard", "adagrad", "rmsprop", "adam", "adam-standard"]


@pytest.mark.parametrize("opt", PARABOLA, ids=PARABOLA_IDS)
def test_reaches_the_minimum_of_the_books_parabola(opt):
    np.testing.assert_allclose(descend(opt, parabola, (-7.0, 2.0), 300), [0.0, 0.0], atol=1e-5)


ROSENBROCK = [(optim.sgd(0.002), 10000), (optim.momentum(0.002), 2000), (optim.nesterov(0.0005, 0.98), 5000),
              (optim.nesterov(0.001, form="standard"), 2000), (optim.adagrad(1.0), 5000),
              (optim.rmsprop(0.002), 5000), (optim.adam(0.05), 2000), (optim.adam(0.05, form="standard"), 2000)]


@pytest.mark.parametrize(("opt", "steps"), ROSENBROCK, ids=PARABOLA_IDS)
def test_reaches_the_minimum_of_rosenbrock(opt, steps):
    np.testing.assert_allclose(descend(opt, rosenbrock, (-1.2, 1.0), steps), [1.0, 1.0], atol=0.02)


# --- state and purity -------------------------------------------------------------------------------


def test_state_holds_a_count_and_trees_shaped_like_params():
    params = make_params(np.float32)
    state = optim.adam().init(params)
    assert isinstance(state, optim.AdamState) and state._fields == ("count", "first_moment", "second_moment")
    assert isinstance(state.count, np.ndarray) and state.count.dtype == np.int32 and int(state.count) == 0
    chex.assert_trees_all_equal_shapes_and_dtypes(state.first_moment, params)
    chex.assert_trees_all_equal(state.second_moment, tree.zeros_like(params))
    h = optim.adagrad(0.1, initial_accumulator_value=0.1).init(params).sum_of_squares
    chex.assert_trees_all_close(h, tree.map(lambda x: np.full_like(x, 0.1), params))
    # a NamedTuple of two functions, and what the built-ins are: one rule applied leaf by leaf
    assert optim.Optimizer._fields == ("init", "update", "leafwise")
    opt = optim.adam()
    assert opt.leafwise.update is opt.update and opt.leafwise.state_type is optim.AdamState
    assert optim.chain(optim.clip(1.0), opt).leafwise is None and optim.with_clipping(opt, 1.0).leafwise is None


def test_update_writes_nothing():
    params, grads = make_params(), make_grads()[0]
    before = tree.map(np.copy, (params, grads))
    opt = optim.with_clipping(optim.adam(0.1), 0.5)
    state = opt.init(params)
    state_before = tree.map(np.copy, state)
    opt.update(params, grads, state)
    chex.assert_trees_all_equal((params, grads, state), (*before, state_before))


def test_empty_params():
    opt = optim.adam(0.1)
    params, state = opt.update((), (), opt.init(()))
    assert params == () and int(state.count) == 1


def test_zero_dimensional_params():
    opt = optim.momentum(0.1)
    p = {"t": np.asarray(1.0, np.float32)}
    state = opt.init(p)
    for _ in range(3):  # NumPy turns 0-d results into scalars; they stay float32
        p, state = opt.update(p, {"t": np.asarray(1.0, np.float32)}, state)
    assert p["t"].dtype == np.float32 and int(state.count) == 3


# --- schedules ----------------------------------------------------------------------------------------


CONSTANT = schedules.constant(0.1)


@pytest.mark.parametrize(("schedule", "values"), [
    (CONSTANT, {0: 0.1, 7: 0.1}),
    (schedules.exponential_decay(1.0, 0.5, 10), {0: 1.0, 5: 0.5**0.5, 10: 0.5, 20: 0.25}),
    (schedules.exponential_decay(1.0, 0.5, 10, staircase=True), {0: 1.0, 9: 1.0, 10: 0.5, 29: 0.25}),
    (schedules.step_decay(2.0, 0.1, 3), {0: 2.0, 2: 2.0, 3: 0.2, 6: 0.02}),
    (schedules.cosine_decay(1.0, 10, alpha=0.1), {0: 1.0, 5: 0.55, 10: 0.1, 50: 0.1}),
    (schedules.cosine_decay(0.2, 4), {0: 0.2, 2: 0.1, 4: 0.0, 9: 0.0}),
    (schedules.warmup(schedules.constant(0.1), 10), {0: 0.0, 5: 0.05, 10: 0.1, 100: 0.1}),
    (schedules.warmup(schedules.cosine_decay(1.0, 10), 5, 0.5), {0: 0.5, 1: 0.6, 5: 1.0, 10: 0.5, 15: 0.0}),
], ids=["constant", "exponential", "staircase", "step", "cosine-alpha", "cosine", "warmup", "warmup-cosine"])
def test_schedule_values(xp, schedule, values):
    for count, want in values.items():
        got = schedule(count)
        assert type(got) is float and got == pytest.approx(want, rel=1e-12, abs=1e-15)
        got = schedule(xp.asarray(count, dtype=xp.int32))
        assert type(got) is float if schedule is CONSTANT else got.dtype == xp.float32
        assert float(got) == pytest.approx(want, rel=1e-6, abs=1e-7)


def test_schedules_match_optax_and_trace_under_jit():
    pairs = [(schedules.exponential_decay(0.3, 0.9, 7), optax.exponential_decay(0.3, 7, 0.9)),
             (schedules.step_decay(0.3, 0.9, 7), optax.exponential_decay(0.3, 7, 0.9, staircase=True)),
             (schedules.cosine_decay(0.3, 20, 0.05), optax.cosine_decay_schedule(0.3, 20, 0.05))]
    counts = jnp.arange(30, dtype=jnp.int32)
    for ours, theirs in pairs:
        want = np.array([float(theirs(i)) for i in range(30)])
        np.testing.assert_allclose([ours(i) for i in range(30)], want, rtol=1e-12)
        traced = jax.jit(jax.vmap(ours))(counts)
        assert traced.dtype == jnp.float32
        np.testing.assert_allclose(traced, want, rtol=2e-6)


def test_bad_schedule_arguments():
    for make in [lambda: schedules.constant(-0.1), lambda: schedules.exponential_decay(0.1, 0.0, 10),
                 lambda: schedules.exponential_decay(0.1, 0.5, 0), lambda: schedules.cosine_decay(0.1, 10, 1.5),
                 lambda: schedules.warmup(schedules.constant(0.1), 0),
                 lambda: schedules.warmup(lambda count: -1.0, 5)]:
        with pytest.raises(ValueError, match="must be"):
            make()


def test_negative_learning_rate_from_a_schedule():
    opt = optim.sgd(lambda count: 0.1 - 0.1 * count)
    params, grads = make_params(np.float32), make_grads(np.float32)
    state = opt.init(params)
    params, state = opt.update(params, grads[0], state)
    params, state = opt.update(params, grads[1], state)  # lr 0 at step 1 is fine
    with pytest.raises(ValueError, match=r"schedule gave -0.1.* at step 2; a learning rate must be >= 0"):
        opt.update(params, grads[2], state)
    jp = backend.put(params, "jax")
    update = jax.jit(opt.update)  # traced: unchecked, as documented
    jp, _ = update(jp, backend.put(grads[2], "jax"), optim.SGDState(jnp.asarray(2, jnp.int32)))
    chex.assert_trees_all_equal_dtypes(jp, params)  # the schedule's float64 (x64 is on) was cast


# --- clipping -------------------------------------------------------------------------------------------


def test_clip_below_max_norm_is_unchanged():
    grads = readonly(make_grads()[0])
    norm = float(tree.global_norm(grads))
    clipped = optim.clip_grads(grads, norm * 1.01)
    chex.assert_trees_all_equal(clipped, grads)
    assert tree.leaves(clipped)[0] is not tree.leaves(grads)[0]  # a new tree, nothing aliased


def test_clip_above_max_norm_scales_as_the_book():
    grads = readonly(make_grads()[0])
    norm = float(tree.global_norm(grads))
    clipped = optim.clip_grads(grads, 1.0)
    chex.assert_trees_all_close(clipped, tree.scale(grads, 1.0 / (norm + 1e-6)), rtol=1e-15)
    book = [np.array(g) for g in tree.leaves(grads)]
    book_clip_grads(book, 1.0)
    chex.assert_trees_all_close(tree.leaves(clipped), book, rtol=1e-15)


def test_clip_on_every_backend_and_under_jit(xp):
    grads = backend.put(readonly(make_grads(np.float32)[0]), xp)
    for max_norm in (0.5, 100.0):
        clipped = optim.clip_grads(grads, max_norm)
        chex.assert_trees_all_equal_dtypes(backend.to_numpy(clipped), backend.to_numpy(grads))
        if backend.name_of(xp) == "jax":
            jitted = jax.jit(optim.clip_grads, static_argnums=1)(grads, max_norm)
            chex.assert_trees_all_close(jitted, clipped, rtol=1e-6)
    assert optim.clip_grads((), 1.0) == ()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=8), st.floats(1e-3, 1e3))
def test_clipped_norm_never_exceeds_max_norm(values, max_norm):
    grads = {"g": np.array(values)}
    norm = float(tree.global_norm(grads))
    clipped_norm = float(tree.global_norm(optim.clip_grads(grads, max_norm)))
    assert clipped_norm <= max_norm * (1 + 1e-12)
    assert clipped_norm == pytest.approx(norm if max_norm >= norm + 1e-6 else max_norm * norm / (norm + 1e-6))


# --- bad input -------------------------------------------------------------------------------------------


def test_grads_of_another_structure_name_the_leaf():
    opt = optim.momentum(0.1)
    params = make_params()
    state = opt.init(params)
    grads = make_grads()[0]
    del grads["scale"]
    with pytest.raises(ValueError, match=r"momentum.update: grads .*missing leaves \['scale'\]"):
        opt.update(params, grads, state)
    other = {"layer": ({"W": params["layer"][0]["W"]}, ()), "scale": params["scale"]}
    with pytest.raises(ValueError, match=r"state.velocity .*unexpected leaves \['layer/0/b'\]"):
        opt.update(other, tree.zeros_like(other), state)


def test_grads_of_another_shape_or_dtype_name_the_leaf():
    opt = optim.sgd(0.1)
    params = make_params(np.float32)
    state = opt.init(params)
    grads = tree.zeros_like(params)
    bad_shape = {**grads, "scale": np.zeros((1, 2), np.float32)}
    with pytest.raises(ValueError, match=r"grads leaf 'scale' has shape \(1, 2\), expected .* \(2,\)"):
        opt.update(params, bad_shape, state)
    bad_dtype = tree.map(lambda g: g.astype(np.float64), grads)
    with pytest.raises(TypeError, match=r"grads leaf 'layer/0/W' has dtype float64, expected .* float32"):
        opt.update(params, bad_dtype, state)


def test_state_of_another_optimizer_is_a_type_error():
    params = make_params()
    with pytest.raises(TypeError, match=r"adam.update: state must be the AdamState that adam's init makes, got SGDState"):
        optim.adam().update(params, params, optim.sgd(0.1).init(params))
    with pytest.raises(TypeError, match="got NesterovTraceState"):
        optim.nesterov(0.1).update(params, params, optim.nesterov(0.1, form="standard").init(params))
    with pytest.raises(TypeError, match="got dict"):
        optim.sgd(0.1).update(params, params, {"count": 0})


@pytest.mark.parametrize(("make", "error", "match"), [
    (lambda: optim.sgd(-0.1), ValueError, "lr must be"),
    (lambda: optim.sgd(math.inf), ValueError, "lr must be"),
    (lambda: optim.sgd(True), TypeError, "lr must be a number or a schedule"),
    (lambda: optim.sgd("0.1"), TypeError, "lr must be a number or a schedule"),
    (lambda: optim.momentum(0.1, 1.0), ValueError, r"momentum must be in \[0.0, 1.0\)"),
    (lambda: optim.rmsprop(0.1, decay_rate=-0.5), ValueError, "decay_rate"),
    (lambda: optim.adam(beta2=1.0), ValueError, "beta2"),
    (lambda: optim.adagrad(0.1, eps=-1.0), ValueError, "eps"),
    (lambda: optim.nesterov(0.1, form="torch"), ValueError, "form must be 'book' or 'standard'"),
    (lambda: optim.adam(form="optax"), ValueError, "form must be"),
    (lambda: optim.clip_by_global_norm(0.0), ValueError, "max_norm"),
    (lambda: optim.chain(optim.sgd(0.1), optim.clip_by_global_norm(1.0)), TypeError, "last argument"),
    (lambda: optim.chain(optim.sgd(0.1), optim.sgd(0.1)), TypeError, "argument 0 must be a gradient"),
    (lambda: optim.sgd(0.1).init({"W": np.zeros(3, np.int64)}), TypeError, "leaf 'W' has dtype int64"),
    (lambda: optim.sgd(0.1).init({"W": 1.0}), TypeError, "leaf 'W' must be an array"),
])
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_book_aliases_have_the_books_defaults():
    import inspect

    books = {optim.SGD: BookSGD, optim.Momentum: BookMomentum, optim.Nesterov: BookNesterov,
             optim.AdaGrad: BookAdaGrad, optim.RMSprop: BookRMSprop, optim.Adam: BookAdam}
    for ours, book in books.items():
        theirs = inspect.signature(book.__init__).parameters
        mine = inspect.signature(ours).parameters
        assert [(p.name, p.default) for p in mine.values()] == \
            [(p.name, p.default) for p in theirs.values() if p.name != "self"]


def test_one_optimizer_serves_params_of_other_structures_in_turn():
    # update remembers the last params structure to flatten faster: a new one must still work
    opt = optim.momentum(0.1)
    a = {"W": np.ones((2, 2), np.float32)}
    b = ({"W": np.ones(3, np.float32)}, (), {"b": np.zeros(1, np.float32)})
    c = {"W": np.ones((2, 2), np.float32), "b": np.ones(2, np.float32)}  # a with one more leaf
    for params in (a, b, a, c, b):
        grads = tree.map(np.ones_like, params)
        new, _ = opt.update(params, grads, opt.init(params))
        chex.assert_trees_all_equal_structs(new, params)
        chex.assert_trees_all_close(new, tree.map(lambda p: p - 0.1, params))
        with pytest.raises(ValueError, match="grads does not match"):
            opt.update(params, {"other": np.ones(1, np.float32)}, opt.init(params))
