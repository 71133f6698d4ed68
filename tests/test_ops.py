"""funcnet.ops: every primitive's vjp against central differences and jax.vjp, on every backend."""

from __future__ import annotations

import warnings
from decimal import Decimal, localcontext
from typing import Any, NamedTuple

import chex
import jax
import numpy as np
import pytest
from conftest import readonly

from funcnet import backend, gradcheck, ops, tree


class Case(NamedTuple):
    id: str
    primitive: str
    shapes: tuple[tuple[int, ...], ...]
    kwargs: dict[str, Any]
    domain: str = "any"  # "positive" (log) or "off_kink" (relu: |x| >= 0.1)


CASES = [
    Case("add", "add", ((3, 4), (3, 4)), {}),
    Case("add_repeat_row", "add", ((3, 4), (4,)), {}),
    Case("add_repeat_both", "add", ((2, 1, 4), (3, 1)), {}),
    Case("subtract", "subtract", ((3, 4), (3, 4)), {}),
    Case("subtract_broadcast", "subtract", ((3, 1), (1, 4)), {}),
    Case("multiply", "multiply", ((3, 4), (3, 4)), {}),
    Case("multiply_broadcast", "multiply", ((2, 3, 4), (1, 4)), {}),
    Case("matmul", "matmul", ((3, 4), (4, 2)), {}),
    Case("branch", "branch", ((3, 2),), {"n": 3}),
    Case("repeat_axis0", "repeat", ((2, 3),), {"n": 2, "axis": 0}),
    Case("repeat_axis1", "repeat", ((2, 3),), {"n": 3, "axis": 1}),
    Case("repeat_last_axis", "repeat", ((2, 3, 2),), {"n": 2, "axis": -1}),
    Case("sum_all", "sum", ((3, 4),), {}),
    Case("sum_axis0", "sum", ((3, 4),), {"axis": 0}),
    Case("sum_axis1_keepdims", "sum", ((3, 4),), {"axis": 1, "keepdims": True}),
    Case("square", "square", ((3, 4),), {}),
    Case("exp", "exp", ((3, 4),), {}),
    Case("log", "log", ((3, 4),), {}, "positive"),
    Case("sigmoid", "sigmoid", ((3, 4),), {}),
    Case("tanh", "tanh", ((3, 4),), {}),
    Case("relu", "relu", ((3, 4),), {}, "off_kink"),
    Case("softmax", "softmax", ((3, 4),), {}),
    Case("softmax_axis0", "softmax", ((3, 4),), {"axis": 0}),
    Case("log_softmax", "log_softmax", ((3, 4),), {}),
    Case("log_softmax_axis0", "log_softmax", ((3, 4),), {"axis": 0}),
]
IDS = [c.id for c in CASES]


def test_every_primitive_has_a_case():
    assert {c.primitive for c in CASES} == set(ops.PRIMITIVES)


def _args(case: Case, dtype=np.float64, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    out = []
    for shape in case.shapes:
        x = rng.standard_normal(shape)
        if case.domain == "positive":
            x = rng.uniform(0.5, 2.0, shape)
        elif case.domain == "off_kink":
            x = np.where(x >= 0, 1.0, -1.0) * rng.uniform(0.1, 1.0, shape)
        out.append(x.astype(dtype))
    return tuple(out)


def _run(case: Case, args, dy=None):
    """``(out, cotangents)`` of the primitive; cotangents always a tuple, one per argument."""
    prim = ops.PRIMITIVES[case.primitive]
    out, pullback = prim.vjp(*args, **case.kwargs)
    if dy is None:
        return out, None
    grads = pullback(dy)
    return out, (grads if len(args) > 1 else (grads,))


def _cotangent(out, seed: int = 1):
    rng = np.random.default_rng(seed)
    return tree.map(lambda o: rng.standard_normal(tuple(o.shape)).astype(np.float32), out)


# --- against central differences, float64 ---------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vjp_matches_central_differences(case):
    prim = ops.PRIMITIVES[case.primitive]
    worst = gradcheck.check_primitive(prim, *_args(case), **case.kwargs)
    assert worst < 1e-6


# --- against jax.vjp of the same apply, float32 ---------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vjp_matches_jax_vjp(case):
    prim = ops.PRIMITIVES[case.primitive]
    host = _args(case, np.float32)
    on_jax = backend.put(host, "jax")
    out_jax, jax_pullback = jax.vjp(lambda *a: prim.apply(*a, **case.kwargs), *on_jax)
    dy = _cotangent(backend.to_numpy(out_jax))
    want = backend.to_numpy(jax_pullback(backend.put(dy, "jax")))

    out, got = _run(case, on_jax, backend.put(dy, "jax"))
    out_np, got_np = _run(case, host, dy)
    for outs, grads in ((out, got), (out_np, got_np)):
        outs, grads = backend.to_numpy(outs), backend.to_numpy(grads)
        chex.assert_trees_all_close(outs, backend.to_numpy(out_jax), rtol=1e-5, atol=1e-6)
        chex.assert_trees_all_close(grads, want, rtol=1e-5, atol=1e-6)
        chex.assert_trees_all_equal_dtypes(grads, want)
        chex.assert_trees_all_equal_shapes(grads, host)


# --- every backend agrees with numpy, float32 stays float32 ---------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_backend_agrees_with_numpy_in_float32(xp, case):
    host = _args(case, np.float32)
    dy = _cotangent(_run(case, host)[0])
    out_np, grads_np = _run(case, host, dy)

    args = backend.put(host, xp)
    applied = ops.PRIMITIVES[case.primitive].apply(*args, **case.kwargs)
    out, grads = _run(case, args, backend.put(dy, xp))
    for leaf in tree.leaves((applied, out, grads)):
        assert backend.namespace(leaf) is xp
        assert leaf.dtype == xp.float32, f"{case.id}: {leaf.dtype}"
    chex.assert_trees_all_close(backend.to_numpy(applied), out_np, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(backend.to_numpy(out), out_np, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(backend.to_numpy(grads), grads_np, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_read_only_inputs_and_cotangents_work(case):
    args = readonly(_args(case))
    out, _ = _run(case, args)
    dy = readonly(tree.map(lambda d: d.astype(np.float64), _cotangent(out)))
    out, grads = _run(case, args, dy)
    chex.assert_trees_all_equal_shapes(grads, args)
    chex.assert_tree_all_finite((out, grads))


# --- broadcasting is the Repeat node; its backward is a Sum ---------------------------------


def test_unbroadcast_sums_the_repeated_axes():
    g = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(ops.unbroadcast(g, (4,)), g.sum(axis=(0, 1)))
    np.testing.assert_array_equal(ops.unbroadcast(g, (3, 1)), g.sum(axis=(0, 2))[:, None])
    np.testing.assert_array_equal(ops.unbroadcast(g, (1, 1, 4)), g.sum(axis=(0, 1), keepdims=True))
    assert ops.unbroadcast(g, (2, 3, 4)) is g


def test_scalar_operand_gets_the_total_gradient():
    x = np.arange(6.0).reshape(2, 3)
    _, pullback = ops.multiply.vjp(x, np.asarray(2.0))
    dx, ds = pullback(np.ones((2, 3)))
    np.testing.assert_array_equal(dx, np.full((2, 3), 2.0))
    assert ds.shape == () and ds == x.sum()


def test_branch_gradients_add_up():
    (a, b), pullback = ops.branch.vjp(np.ones(2), 2)
    np.testing.assert_array_equal(pullback((np.full(2, 3.0), np.full(2, 4.0))), [7.0, 7.0])
    with pytest.raises(ValueError, match=r"ops\.branch: expected 2 cotangents, got 3"):
        pullback((a, b, a))


@pytest.mark.parametrize("name", ["add", "subtract", "multiply"])
def test_broadcast_error_names_the_primitive_and_shapes(name):
    with pytest.raises(ValueError, match=rf"ops\.{name}: .*\(3, 4\) \(3,\)"):
        ops.PRIMITIVES[name].apply(np.ones((3, 4)), np.ones(3))


def test_matmul_shape_error_names_both_shapes():
    with pytest.raises(ValueError, match=r"ops\.matmul: expected shapes \(N, D\) and \(D, H\), got \(3, 4\) and \(3, 2\)"):
        ops.matmul.vjp(np.ones((3, 4)), np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"got \(4,\) and \(4, 2\)"):
        ops.matmul.apply(np.ones(4), np.ones((4, 2)))


# --- numerics -------------------------------------------------------------------------------


def _sigmoid_exact(x: float) -> float:
    """sigmoid(x) correctly rounded to float64, from 50-digit decimal arithmetic."""
    with localcontext() as ctx:
        ctx.prec = 50
        d = Decimal(float(x))
        return float(1 / (1 + (-d).exp()))


def _ulps(got, exact, dtype):
    exact = np.asarray(exact, np.float64)
    return np.abs(got.astype(np.float64) - exact) / np.spacing(exact.astype(dtype)).astype(np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_raises_no_floating_point_warning(xp, dtype):
    host = np.sort(np.concatenate([np.linspace(-1e4, 1e4, 2001),
                                   [-745.2, -709.0, -104.0, -88.0, -80.0, -1e-30, 1e-30, 37.0, 89.0, 710.0]]
                                  ).astype(dtype))
    x = backend.put(host, xp)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        y, pullback = ops.sigmoid.vjp(x)
        dx = pullback(xp.ones_like(x))
        applied = ops.sigmoid.apply(x)
    y, dx = backend.to_numpy(y), backend.to_numpy(dx)
    assert y.dtype == dtype and dx.dtype == dtype
    chex.assert_tree_all_finite((y, dx))
    np.testing.assert_array_equal(backend.to_numpy(applied), y)
    assert np.all((y >= 0) & (y <= 1)) and np.all(np.diff(y) >= 0)


def test_sigmoid_float64_is_accurate_to_a_few_ulp_where_normal():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-708.0, 40.0, 300), rng.uniform(-40.0, 40.0, 300),
                        [-708.39, -700.0, -80.0, -36.7, -1e-300, 0.0, 1e-300, 5.0, 36.7]])
    exact = np.array([_sigmoid_exact(v) for v in x])
    normal = exact >= np.finfo(np.float64).tiny
    assert normal.sum() == x.size
    y = ops.sigmoid.apply(x)
    assert _ulps(y, exact, np.float64).max() <= 4
    assert ops.sigmoid.apply(np.asarray(-80.0)) == pytest.approx(1.8048513878454153e-35, rel=1e-15)


def test_sigmoid_float32_is_accurate_to_a_few_ulp_where_normal():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(-87.3, 17.0, 1500), rng.uniform(-10.0, 10.0, 500),
                        [-87.33, -80.0, -20.0, -1e-30, 0.0, 1e-30, 16.0]]).astype(np.float32)
    exact = np.array([_sigmoid_exact(v) for v in x])
    tiny = np.finfo(np.float32).tiny
    assert (exact >= tiny).all()
    y = ops.sigmoid.apply(x)
    assert y.dtype == np.float32
    assert _ulps(y, exact, np.float32).max() <= 4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_below_the_normal_range_is_at_most_the_smallest_normal(dtype):
    # where the exact value is below the normal range, |x| is clamped: the result is 0 or
    # the smallest normal number to within a few ulp, never anything larger
    tiny = np.finfo(dtype).tiny
    x = np.array([-88.0, -104.0, -800.0, -1e4] if dtype == np.float32 else [-709.0, -745.2, -800.0, -1e4], dtype)
    assert all(_sigmoid_exact(v) < tiny for v in x)
    y = ops.sigmoid.apply(x)
    assert y.dtype == dtype
    assert np.all((y >= 0) & (y <= tiny * (1 + 1e-3)))
    np.testing.assert_array_equal(ops.sigmoid.apply(-x), np.ones_like(x))


def test_sigmoid_keeps_nan():
    y = ops.sigmoid.apply(np.array([np.nan, 0.0, -np.nan], np.float32))
    assert np.isnan(y[0]) and y[1] == 0.5 and np.isnan(y[2])


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_of_huge_logits_is_finite(name):
    x = np.array([[1e3, -1e3, 0.0], [-1e3, -1e3, -1e3]], np.float32)
    y, pullback = ops.PRIMITIVES[name].vjp(x)
    chex.assert_tree_all_finite((y, pullback(np.ones_like(x))))
    probs = np.exp(y) if name == "log_softmax" else y
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(probs[1], 1.0 / 3.0, rtol=1e-6)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize(("dtype", "big"), [("float16", 40000.0), ("float32", 3e38), ("float64", 1.7e308)])
def test_log_softmax_of_a_row_wider_than_the_range_is_finite(dtype, big):
    # x - max overflowed to -inf; the shift is floored at minus the largest finite number
    x = np.array([[big, -big, 0.0]], dtype)
    y, pullback = ops.log_softmax.vjp(x)
    largest = float(np.finfo(dtype).max)
    np.testing.assert_array_equal(y, np.array([[0.0, -largest, -big]], dtype))
    np.testing.assert_array_equal(ops.log_softmax.apply(x), y)
    dx = pullback(np.ones_like(x))
    np.testing.assert_array_equal(dx, np.array([[-2.0, 1.0, 1.0]], dtype))
    np.testing.assert_array_equal(ops.softmax.apply(x), np.array([[1.0, 0.0, 0.0]], dtype))


def test_shifted_by_max_is_x_minus_max_bit_for_bit_on_ordinary_inputs(xp):
    x = np.random.default_rng(4).standard_normal((16, 7)).astype(np.float32) * 50
    for axis in (0, 1, -1):
        want = x - x.max(axis=axis, keepdims=True)
        got = backend.to_numpy(ops.shifted_by_max(xp, backend.put(x, xp), axis))
        assert got.dtype == np.float32 and got.tobytes() == want.tobytes()
    ints = np.array([[1, 5, 3]])
    np.testing.assert_array_equal(ops.shifted_by_max(np, ints), [[-4, 0, -2]])
