"""funcnet.layers: every layer's vjp against central differences and jax.vjp, on every backend,
with read-only inputs, fresh outputs and errors that name the layer and the shapes."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import readonly

from funcnet import backend, gradcheck, random, tree
from funcnet.layers import (
    Affine,
    Dropout,
    Flatten,
    Layer,
    MatMul,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
    serial,
)

BATCH = 5
DROPOUT_KEY = random.key(7)  # a host key: the same mask on every backend


class Case(NamedTuple):
    id: str
    make: Callable[[], Layer]
    in_shape: tuple[int, ...]
    rng: bool = False  # run with DROPOUT_KEY (training randomness)
    off_kink: bool = False  # inputs with |x| >= 0.1, for ReLU


CASES = [
    Case("MatMul", lambda: MatMul(3), (4,)),
    Case("Affine", lambda: Affine(3), (4,)),
    Case("Affine_book_init", lambda: Affine(2, w_init="book"), (3,)),
    Case("Sigmoid", Sigmoid, (4,)),
    Case("ReLU", ReLU, (4,), off_kink=True),
    Case("Tanh", Tanh, (4,)),
    Case("Softmax", Softmax, (4,)),
    Case("Dropout_train", lambda: Dropout(0.5), (4,), rng=True),
    Case("Dropout_eval", lambda: Dropout(0.5), (4,)),
    Case("Flatten", Flatten, (2, 3)),
    Case("serial_two_layer_net", lambda: serial(Affine(5), Sigmoid(), Affine(3)), (4,)),
    Case("serial_everything", lambda: serial(Flatten(), ReLU(), Affine(5), Tanh(), Dropout(0.3),
                                             MatMul(4), Softmax()), (2, 3), rng=True, off_kink=True),
    Case("serial_nested", lambda: serial(serial(Affine(4), Sigmoid()), Affine(2)), (3,)),
]
IDS = [c.id for c in CASES]


def _setup(case: Case, dtype="float32", seed: int = 0):
    """``(layer, params, x, rng)`` on the host."""
    layer = case.make()
    _, params = layer.init(random.key(seed), case.in_shape, dtype)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((BATCH, *case.in_shape))
    if case.off_kink:
        x = np.where(x >= 0, 1.0, -1.0) * rng.uniform(0.1, 1.0, x.shape)
    return layer, params, x.astype(dtype), (DROPOUT_KEY if case.rng else None)


def _cotangent(y, seed: int = 2):
    return np.random.default_rng(seed).standard_normal(tuple(y.shape)).astype(np.float32)


def _forward_backward(layer, params, x, rng, dy=None):
    y, pullback = layer.vjp(params, x, rng=rng)
    if dy is None:
        dy = _cotangent(backend.to_numpy(y))
        dy = backend.put(dy, backend.namespace(x))
    dparams, dx = pullback(dy)
    return y, dparams, dx


# --- init -----------------------------------------------------------------------------------


def test_affine_init_follows_the_contract():
    out_shape, params = Affine(3).init(random.key(0), (2,))
    assert out_shape == (3,)
    assert set(params) == {"W", "b"}
    chex.assert_shape(params["W"], (2, 3))
    chex.assert_shape(params["b"], (3,))
    assert params["W"].dtype == np.float32 and isinstance(params["W"], np.ndarray)
    np.testing.assert_array_equal(params["b"], np.zeros(3, np.float32))


def test_serial_init_chains_the_shapes():
    net = serial(Flatten(), Affine(5), ReLU(), MatMul(3))
    out_shape, params = net.init(random.key(0), (2, 3))
    assert out_shape == (3,)
    assert isinstance(params, tuple) and len(params) == 4
    assert params[0] == () and params[2] == ()
    chex.assert_shape([params[1]["W"], params[1]["b"], params[3]["W"]], [(6, 5), (5,), (5, 3)])


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_init_is_deterministic_and_keeps_dtype(case, dtype):
    layer = case.make()
    shape_a, a = layer.init(random.key(3), case.in_shape, dtype)
    shape_b, b = layer.init(random.key(3), case.in_shape, dtype)
    assert shape_a == shape_b
    chex.assert_trees_all_equal(a, b)
    assert all(leaf.dtype == np.dtype(dtype) for leaf in tree.leaves(a))
    _, c = layer.init(random.key(4), case.in_shape, dtype)
    if any(np.any(leaf) for leaf in tree.leaves(a)):
        assert not all(np.array_equal(p, q) for p, q in zip(tree.leaves(a), tree.leaves(c), strict=True))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_init_out_shape_matches_apply(case):
    layer, params, x, rng = _setup(case)
    out_shape, _ = layer.init(random.key(0), case.in_shape)
    chex.assert_shape(layer.apply(params, x, rng=rng), (BATCH, *out_shape))


# --- against central differences, float64 ---------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vjp_matches_central_differences(case):
    layer, params, x, rng = _setup(case, "float64")
    assert gradcheck.check_layer(layer, params, x, rng=rng) < 1e-6


# --- against jax.vjp of the same apply, float32 ---------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vjp_matches_jax_vjp(case):
    layer, params, x, rng = _setup(case)
    jparams, jx = backend.put((params, x), "jax")
    y_jax, jax_pullback = jax.vjp(lambda p, x_: layer.apply(p, x_, rng=rng), jparams, jx)
    dy = _cotangent(y_jax)
    want = backend.to_numpy(jax_pullback(jnp.asarray(dy)))

    on_jax = _forward_backward(layer, jparams, jx, rng, jnp.asarray(dy))
    on_numpy = _forward_backward(layer, params, x, rng, dy)
    for y, dparams, dx in (on_jax, on_numpy):
        got = backend.to_numpy((dparams, dx))
        chex.assert_trees_all_close(backend.to_numpy(y), np.asarray(y_jax), rtol=1e-5, atol=1e-6)
        chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)
        chex.assert_trees_all_equal_dtypes(got, want)


# --- every backend agrees with numpy; float32 stays float32 ---------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_backend_agrees_with_numpy_in_float32(xp, case):
    layer, params, x, rng = _setup(case)
    dy = _cotangent(layer.apply(params, x, rng=rng))
    want = _forward_backward(layer, params, x, rng, dy)

    p, x_, dy_ = backend.put((params, x, dy), xp)
    applied = layer.apply(p, x_, rng=rng)
    got = _forward_backward(layer, p, x_, rng, dy_)
    for leaf in tree.leaves((applied, got)):
        assert backend.namespace(leaf) is xp
        assert leaf.dtype == xp.float32, f"{case.id}: a {leaf.dtype} leaf from float32 in"
    assert tree.structure(backend.to_numpy(got[1])) == tree.structure(params)
    chex.assert_trees_all_close(backend.to_numpy(applied), want[0], rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(backend.to_numpy(got), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_float64_stays_float64(case):
    layer, params, x, rng = _setup(case, "float64")
    dy = np.ones(layer.apply(params, x, rng=rng).shape)
    y, dparams, dx = _forward_backward(layer, params, x, rng, dy)
    assert all(leaf.dtype == np.float64 for leaf in tree.leaves((y, dparams, dx)))


# --- immutability ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_read_only_inputs_and_fresh_outputs(case):
    layer, params, x, rng = _setup(case)
    params, x = readonly(params), readonly(x)
    dy = readonly(_cotangent(layer.apply(params, x, rng=rng)))
    y_apply = layer.apply(params, x, rng=rng)
    y, dparams, dx = _forward_backward(layer, params, x, rng, dy)
    np.testing.assert_array_equal(y_apply, y)
    chex.assert_trees_all_equal_shapes(dparams, params)
    chex.assert_shape(dx, x.shape)
    inputs = [x, dy, *tree.leaves(params)]
    for out in [y_apply, y, dx, *tree.leaves(dparams)]:
        for given in inputs:
            assert not np.shares_memory(out, given), f"{case.id}: an output shares memory with an input"


# --- Dropout --------------------------------------------------------------------------------


def test_dropout_without_a_key_is_the_identity():
    x = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    y = Dropout(0.5).apply((), x)
    np.testing.assert_array_equal(y, x)
    assert y is not x


def test_dropout_rate_is_the_probability_of_dropping():
    x = np.ones((200, 100), np.float32)
    layer = Dropout(0.3)
    y = layer.apply((), x, rng=random.key(1))
    dropped = np.mean(y == 0.0)
    assert abs(dropped - 0.3) < 0.02
    np.testing.assert_allclose(y[y != 0.0], 1.0 / 0.7, rtol=1e-6)  # inverted dropout
    assert y.dtype == np.float32


def test_dropout_same_key_same_mask_and_the_backward_uses_it():
    layer = Dropout(0.5)
    x = np.random.default_rng(0).standard_normal((8, 6)).astype(np.float32)
    key = random.key(11)
    y = layer.apply((), x, rng=key)
    np.testing.assert_array_equal(y, layer.apply((), x, rng=key))
    assert not np.array_equal(y, layer.apply((), x, rng=random.key(12)))
    y2, pullback = layer.vjp((), x, rng=key)
    np.testing.assert_array_equal(y, y2)
    _, dx = pullback(np.ones_like(x))
    np.testing.assert_array_equal(dx == 0.0, y == 0.0)


def test_dropout_rate_zero_with_a_key_is_the_identity():
    x = np.ones((3, 3), np.float32)
    np.testing.assert_array_equal(Dropout(0.0).apply((), x, rng=random.key(0)), x)


def test_dropout_with_a_jax_key_traces_under_jit():
    layer = serial(Affine(6), Dropout(0.5), Affine(2))
    _, params = layer.init(random.key(0), (3,))
    params, x = backend.put((params, np.ones((4, 3), np.float32)), "jax")
    key = jnp.asarray(random.key(5))

    @jax.jit
    def grads(params, x, key):
        y, pullback = layer.vjp(params, x, rng=key)
        return y, pullback(jnp.ones_like(y))

    y, (dparams, dx) = grads(params, x, key)
    y_eager, (dparams_eager, dx_eager) = grads.__wrapped__(params, x, key)
    chex.assert_trees_all_close((y, dparams, dx), (y_eager, dparams_eager, dx_eager), rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_equal_dtypes((y, dparams, dx), (y_eager, dparams_eager, dx_eager))
    assert not np.allclose(np.asarray(y), np.asarray(layer.apply(params, x)))  # a mask was applied

    mask = jax.jit(lambda x, key: Dropout(0.5).apply((), x, rng=key))(jnp.ones((100, 100), jnp.float32), key)
    assert mask.dtype == jnp.float32
    assert abs(float(jnp.mean(mask == 0.0)) - 0.5) < 0.03
    assert set(np.unique(np.asarray(mask)).tolist()) == {0.0, 2.0}


# --- Flatten --------------------------------------------------------------------------------


def test_flatten_shapes():
    x = np.arange(30.0).reshape(5, 2, 3)
    y, pullback = Flatten().vjp((), x)
    np.testing.assert_array_equal(y, x.reshape(5, 6))
    _, dx = pullback(np.ones((5, 6)))
    chex.assert_shape(dx, (5, 2, 3))
    assert Flatten().init(random.key(0), (2, 3)) == ((6,), ())


# --- errors name the layer and the shapes ---------------------------------------------------


def _affine_params(in_dim=4, out_dim=3):
    return Affine(out_dim).init(random.key(0), (in_dim,))[1]


@pytest.mark.parametrize("method", ["apply", "vjp"])
@pytest.mark.parametrize(("make", "x_shape", "match"), [
    (lambda: Affine(3), (5, 2), r"Affine\(3\): expected input of shape \(N, 4\), got \(5, 2\)"),
    (lambda: MatMul(3), (5, 2), r"MatMul\(3\): expected input of shape \(N, 4\), got \(5, 2\)"),
    (lambda: Affine(3), (5, 2, 2), r"Affine\(3\): expected input of shape \(N, 4\), got \(5, 2, 2\)"),
    (lambda: Affine(3), (4,), r"Affine\(3\): expected input of shape \(N, 4\), got \(4,\)"),
    (lambda: Affine(3), (0, 4), r"Affine\(3\): empty batch, input shape \(0, 4\)"),
    (lambda: MatMul(3), (0, 4), r"MatMul\(3\): empty batch, input shape \(0, 4\)"),
])
def test_bad_input_shapes(method, make, x_shape, match):
    layer = make()
    params = layer.init(random.key(0), (4,))[1]
    with pytest.raises(ValueError, match=match):
        getattr(layer, method)(params, np.ones(x_shape, np.float32))


def test_input_that_is_not_an_array():
    with pytest.raises(TypeError, match=r"Affine\(3\): input must be an array, got list"):
        Affine(3).apply(_affine_params(), [[1.0, 2.0, 3.0, 4.0]])


@pytest.mark.parametrize(("in_shape", "error", "match"), [
    ((2, 2), ValueError, r"Affine\(3\)\.init: expects per-example input shape of rank 1 \(no batch axis\), got \(2, 2\)"),
    (4, TypeError, r"Affine\(3\)\.init: in_shape must be a tuple of ints, got 4"),
])
def test_bad_in_shape_at_init(in_shape, error, match):
    with pytest.raises(error, match=match):
        Affine(3).init(random.key(0), in_shape)


@pytest.mark.parametrize(("make", "match"), [
    (lambda: Affine(0), r"Affine\(0\): out_dim must be a positive int, got 0"),
    (lambda: MatMul(2.5), r"MatMul\(2\.5\): out_dim must be a positive int, got 2\.5"),
    (lambda: Dropout(1.0), r"Dropout: rate \(probability of dropping\) must be in \[0, 1\), got 1\.0"),
    (lambda: Dropout(-0.1), r"Dropout: rate .* got -0\.1"),
    (lambda: Dropout(True), r"Dropout: rate .* got True"),
    (lambda: Affine(3, w_init="uniformish"), r"unknown initialiser 'uniformish'"),
    (lambda: serial(), r"serial: needs at least one layer"),
])
def test_bad_constructor_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_serial_params_of_the_wrong_length():
    net = serial(Affine(3), Sigmoid())
    _, params = net.init(random.key(0), (4,))
    x = np.ones((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"serial: params must be a tuple of 2 entries \(one per layer\), "
                                         r"got tuple of length 3"):
        net.apply((*params, ()), x)
    with pytest.raises(ValueError, match=r"got tuple of length 1"):
        net.vjp(params[:1], x)
    with pytest.raises(ValueError, match=r"got dict"):
        net.apply(params[0], x)


def test_serial_given_a_constructor_instead_of_a_layer():
    with pytest.raises(TypeError, match=r"serial: argument 1 is not a Layer, got function "
                                        r"\(did you pass the constructor instead of calling it\?\)"):
        serial(Affine(3), Sigmoid)
    with pytest.raises(TypeError, match=r"serial: argument 0 is not a Layer, got int$"):
        serial(3)


@pytest.mark.parametrize("method", ["apply", "vjp"])
def test_serial_errors_name_the_failing_position(method):
    net = serial(Affine(4), Sigmoid(), Affine(2))
    _, params = net.init(random.key(0), (3,))
    with pytest.raises(ValueError, match=r"serial layer 0: Affine\(4\): expected input of shape \(N, 3\), "
                                         r"got \(5, 6\)"):
        getattr(net, method)(params, np.ones((5, 6), np.float32))
    swapped = (params[0], params[1], _affine_params(in_dim=7, out_dim=2))
    with pytest.raises(ValueError, match=r"serial layer 2: Affine\(2\): expected input of shape \(N, 7\), "
                                         r"got \(5, 4\)"):
        getattr(net, method)(swapped, np.ones((5, 3), np.float32))


def test_serial_init_errors_name_the_failing_position():
    with pytest.raises(ValueError, match=r"serial layer 1: Affine\(2\)\.init: expects per-example input "
                                         r"shape of rank 1"):
        serial(Sigmoid(), Affine(2)).init(random.key(0), (2, 3))
