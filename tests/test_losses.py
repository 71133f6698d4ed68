"""funcnet.losses: vjps against central differences and jax.vjp, values against hand references,
every backend, and errors that name the loss and the shapes."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import readonly

from funcnet import backend, gradcheck, losses
from funcnet.losses import (
    SoftmaxWithLoss,
    book_softmax_cross_entropy,
    mean_squared_error,
    sigmoid_binary_cross_entropy,
    softmax_cross_entropy,
)

N, C = 5, 3


def _labels(rng, dtype="int64"):
    return np.array([0, 2, 1, 2, 0], dtype)


def _one_hot(rng):
    return np.eye(C, dtype=np.float32)[_labels(rng)]


def _soft(rng):
    p = rng.uniform(0.1, 1.0, (N, C))
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


class Case(NamedTuple):
    id: str
    loss: losses.Loss
    targets: Callable[[Any], np.ndarray]


CASES = [
    Case("sce_int64_labels", softmax_cross_entropy, _labels),
    Case("sce_int32_labels", softmax_cross_entropy, lambda rng: _labels(rng, "int32")),
    Case("sce_one_hot", softmax_cross_entropy, _one_hot),
    Case("sce_soft_targets", softmax_cross_entropy, _soft),
    Case("book_labels", book_softmax_cross_entropy, _labels),
    Case("book_one_hot", book_softmax_cross_entropy, _one_hot),
    Case("bce_hard", sigmoid_binary_cross_entropy, lambda rng: (rng.random((N, C)) < 0.5).astype(np.float32)),
    Case("bce_soft", sigmoid_binary_cross_entropy, lambda rng: rng.random((N, C)).astype(np.float32)),
    Case("mse", mean_squared_error, lambda rng: rng.standard_normal((N, C)).astype(np.float32)),
]
IDS = [c.id for c in CASES]


def _setup(case: Case, dtype="float32", seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = (2.0 * rng.standard_normal((N, C))).astype(dtype)
    return logits, case.targets(rng)


def _exact_value(case: Case) -> losses.Loss:
    """The loss whose gradient the case's vjp is: the book's backward is that of the exact loss."""
    return softmax_cross_entropy if case.loss is book_softmax_cross_entropy else case.loss


def test_softmax_with_loss_is_the_book_name():
    assert SoftmaxWithLoss is softmax_cross_entropy


# --- against central differences, float64 ---------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vjp_matches_central_differences(case):
    logits, targets = _setup(case, "float64")
    if case.loss is book_softmax_cross_entropy:
        # the book's backward ignores its 1e-7, so it is checked against the exact loss's value
        errors = gradcheck.check_vjp(lambda z: softmax_cross_entropy.value(z, targets),
                                     lambda z: case.loss.vjp(z, targets), (logits,))
        assert max(errors.values()) < 1e-6
    else:
        assert gradcheck.check_loss(case.loss, logits, targets) < 1e-6


# --- against jax.vjp of the same value, float32 ---------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vjp_matches_jax_vjp(case):
    logits, targets = _setup(case)
    jlogits, jtargets = backend.put((logits, targets), "jax")
    value_jax, jax_pullback = jax.vjp(lambda z: _exact_value(case).value(z, jtargets), jlogits)
    dloss = np.float32(0.7)
    (want,) = jax_pullback(jnp.asarray(dloss))
    assert want.dtype == jnp.float32

    for z, t, d in ((jlogits, jtargets, jnp.asarray(dloss)), (logits, targets, dloss)):
        value, pullback = case.loss.vjp(z, t)
        got = backend.to_numpy(pullback(d))
        if case.loss is not book_softmax_cross_entropy:
            np.testing.assert_allclose(float(value), float(value_jax), rtol=1e-6)
        chex.assert_trees_all_close(got, np.asarray(want), rtol=1e-5, atol=1e-6)
        chex.assert_trees_all_equal_dtypes(got, np.asarray(want))


# --- every backend agrees with numpy; float32 stays float32 ---------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_backend_agrees_with_numpy_in_float32(xp, case):
    logits, targets = _setup(case)
    want_value = case.loss.value(logits, targets)
    _, pullback = case.loss.vjp(logits, targets)
    want_grad = pullback()

    z, t = backend.put((logits, targets), xp)
    value = case.loss.value(z, t)
    vjp_value, pullback = case.loss.vjp(z, t)
    grad = pullback()
    for leaf in (value, vjp_value, grad):
        assert backend.namespace(leaf) is xp
        assert leaf.dtype == xp.float32, f"{case.id}: {leaf.dtype} from float32 logits"
    chex.assert_shape((value, vjp_value), ())
    chex.assert_shape(grad, (N, C))
    np.testing.assert_allclose(float(value), float(want_value), rtol=1e-6)
    np.testing.assert_allclose(float(vjp_value), float(want_value), rtol=1e-6)
    np.testing.assert_allclose(backend.to_numpy(grad), want_grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_pullback_scales_with_the_incoming_cotangent(case):
    logits, targets = _setup(case, "float64")
    value, pullback = case.loss.vjp(logits, targets)
    assert float(value) == pytest.approx(float(case.loss.value(logits, targets)), rel=1e-15)
    np.testing.assert_allclose(pullback(2.5), 2.5 * pullback(), rtol=1e-15)
    np.testing.assert_allclose(pullback(1.0), pullback(), rtol=0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_read_only_inputs_and_fresh_gradients(case):
    logits, targets = readonly(_setup(case))
    value = case.loss.value(logits, targets)
    _, pullback = case.loss.vjp(logits, targets)
    grad = pullback()
    chex.assert_tree_all_finite((value, grad))
    assert not np.shares_memory(grad, logits) and not np.shares_memory(grad, targets)


# --- values against hand references ---------------------------------------------------------


def _lse_reference(logits, labels) -> float:
    """mean(logsumexp(z) - z[label]) in Python floats, with the row maximum taken out."""
    total = 0.0
    for row, label in zip(np.asarray(logits, np.float64).tolist(), labels, strict=True):
        m = max(row)
        total += m + math.log(math.fsum(math.exp(v - m) for v in row)) - row[label]
    return total / len(labels)


HUGE = np.array([[1e3, -1e3, 0.0], [-1e3, 1e3, 999.0], [500.0, 1e3, 1e3], [-1e3, -1e3, -1e3]])
HUGE_LABELS = np.array([1, 2, 0, 2])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("scale", [1.0, 1e3], ids=["moderate", "huge"])
def test_softmax_cross_entropy_against_log_sum_exp(dtype, scale):
    logits = (HUGE * (scale / 1e3)).astype(dtype)
    want = _lse_reference(logits, HUGE_LABELS.tolist())
    one_hot = np.eye(3, dtype=dtype)[HUGE_LABELS]
    for targets in (HUGE_LABELS, one_hot):
        value = softmax_cross_entropy.value(logits, targets)
        vjp_value, pullback = softmax_cross_entropy.vjp(logits, targets)
        grad = pullback()
        assert value.dtype == np.dtype(dtype) and grad.dtype == np.dtype(dtype)
        chex.assert_tree_all_finite((value, vjp_value, grad))
        rtol = 1e-6 if dtype == "float32" else 1e-13
        np.testing.assert_allclose(float(value), want, rtol=rtol)
        np.testing.assert_allclose(float(vjp_value), want, rtol=rtol)
        probs = np.exp(HUGE * (scale / 1e3) - _row_lse(HUGE * (scale / 1e3)))
        np.testing.assert_allclose(grad, (probs - np.eye(3)[HUGE_LABELS]) / 4, rtol=1e-5, atol=1e-7)


def _row_lse(z):
    m = z.max(axis=1, keepdims=True)
    return m + np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def _book_formula(logits, labels):
    """The book's SoftmaxWithLoss forward, verbatim in NumPy."""
    x = logits - logits.max(axis=1, keepdims=True)
    y = np.exp(x) / np.sum(np.exp(x), axis=1, keepdims=True)
    return -np.sum(np.log(y[np.arange(len(labels)), labels] + 1e-7)) / len(labels)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_book_softmax_cross_entropy_is_the_book_formula(dtype):
    logits = (2.0 * np.random.default_rng(3).standard_normal((N, C))).astype(dtype)
    labels = _labels(None)
    want = _book_formula(logits.astype(np.float64), labels)
    for targets in (labels, np.eye(C, dtype=dtype)[labels]):
        value = book_softmax_cross_entropy.value(logits, targets)
        assert value.dtype == np.dtype(dtype)
        np.testing.assert_allclose(float(value), want, rtol=1e-6 if dtype == "float32" else 1e-13)


def test_book_loss_caps_where_the_exact_one_does_not():
    logits = np.array([[0.0, 1e3]])
    labels = np.array([0])
    assert float(book_softmax_cross_entropy.value(logits, labels)) == pytest.approx(-math.log(1e-7))
    assert float(softmax_cross_entropy.value(logits, labels)) == pytest.approx(1e3)


@pytest.mark.parametrize("scale", [1.0, 1e3], ids=["moderate", "huge"])
def test_sigmoid_binary_cross_entropy_against_the_formula(scale):
    rng = np.random.default_rng(4)
    logits = scale * rng.standard_normal((N, C))
    targets = rng.random((N, C))
    # log sigmoid(x) = -softplus(-x), log(1 - sigmoid(x)) = -softplus(x), softplus in Python floats
    softplus = np.vectorize(lambda v: max(v, 0.0) + math.log1p(math.exp(-abs(v))))
    want = np.mean(targets * softplus(-logits) + (1 - targets) * softplus(logits))
    for dtype, rtol in (("float32", 1e-6), ("float64", 1e-13)):
        value = sigmoid_binary_cross_entropy.value(logits.astype(dtype), targets.astype(dtype))
        assert value.dtype == np.dtype(dtype)
        chex.assert_tree_all_finite(value)
        np.testing.assert_allclose(float(value), want, rtol=rtol)
    if scale == 1.0:  # the textbook form agrees where it is still accurate
        s = 1 / (1 + np.exp(-logits))
        textbook = -np.mean(targets * np.log(s) + (1 - targets) * np.log(1 - s))
        np.testing.assert_allclose(want, textbook, rtol=1e-12)


def test_mean_squared_error_against_the_formula():
    rng = np.random.default_rng(5)
    y, t = rng.standard_normal((N, C)), rng.standard_normal((N, C))
    assert float(mean_squared_error.value(y, t)) == pytest.approx(np.mean((y - t) ** 2), rel=1e-14)
    _, pullback = mean_squared_error.vjp(y, t)
    np.testing.assert_allclose(pullback(), 2 * (y - t) / y.size, rtol=1e-14)


def test_labels_are_checked_eagerly_and_skipped_under_jit():
    logits = jnp.zeros((2, 3), jnp.float32)
    value = jax.jit(softmax_cross_entropy.value)(logits, jnp.asarray([0, 2]))
    assert float(value) == pytest.approx(math.log(3), rel=1e-6)


# --- errors name the loss and the shapes ----------------------------------------------------

LOGITS = np.zeros((N, C), np.float32)
CLASS_LOSSES = [("softmax_cross_entropy", softmax_cross_entropy),
                ("book_softmax_cross_entropy", book_softmax_cross_entropy)]


@pytest.mark.parametrize(("name", "loss"), CLASS_LOSSES)
@pytest.mark.parametrize(("labels", "got"), [([0, 1, 2, 3, 0], r"\[0, 3\]"), ([0, -1, 2, 1, 0], r"\[-1, 2\]")])
def test_label_out_of_range(name, loss, labels, got):
    labels = np.array(labels)
    match = rf"{name}: labels must be in \[0, 3\), got values in {got}"
    with pytest.raises(ValueError, match=match):
        loss.value(LOGITS, labels)
    with pytest.raises(ValueError, match=match):
        losses.validate_targets(loss, labels, (C,))
    losses.validate_targets(loss, np.array([0, 1, 2]), (C,))  # in range: silent


def test_validate_targets_on_another_backend(xp):
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\), got values in \[0, 7\]"):
        losses.validate_targets(softmax_cross_entropy, backend.put(np.array([0, 7, 1]), xp), (C,))


@pytest.mark.parametrize(("name", "loss"), CLASS_LOSSES)
@pytest.mark.parametrize("method", ["value", "vjp"])
def test_class_target_shape_and_dtype_errors(name, loss, method):
    call = getattr(loss, method)
    with pytest.raises(TypeError, match=rf"{name}: labels of shape \(5,\) must be integers, got float32"):
        call(LOGITS, np.zeros(N, np.float32))
    with pytest.raises(ValueError, match=rf"{name}: one-hot targets have 4 classes but logits have 3 "
                                         r"\(targets \(5, 4\), logits \(5, 3\)\)"):
        call(LOGITS, np.zeros((N, 4), np.float32))
    with pytest.raises(ValueError, match=rf"{name}: targets must be labels of shape \(5,\) or one-hot of "
                                         r"shape \(5, 3\), got \(4,\)"):
        call(LOGITS, np.zeros(4, np.int64))
    with pytest.raises(ValueError, match=rf"{name}: logits must have shape \(N, C\), got \(5, 3, 1\)"):
        call(np.zeros((N, C, 1), np.float32), np.zeros(N, np.int64))
    with pytest.raises(TypeError, match=rf"{name}: logits must be floating point, got int64"):
        call(np.zeros((N, C), np.int64), np.zeros(N, np.int64))


ALL_LOSSES = [*CLASS_LOSSES, ("sigmoid_binary_cross_entropy", sigmoid_binary_cross_entropy),
              ("mean_squared_error", mean_squared_error)]


@pytest.mark.parametrize(("name", "loss"), ALL_LOSSES)
@pytest.mark.parametrize("method", ["value", "vjp"])
def test_empty_batch(name, loss, method):
    targets = np.zeros((0, C), np.float32)
    with pytest.raises(ValueError, match=rf"{name}: empty batch, logits of shape \(0, 3\)"):
        getattr(loss, method)(np.zeros((0, C), np.float32), targets)


def test_validate_targets_of_an_empty_batch():
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: empty batch, logits of shape \(0, 3\)"):
        losses.validate_targets(softmax_cross_entropy, np.zeros(0, np.int64), (C,))


@pytest.mark.parametrize(("name", "loss"), ALL_LOSSES[2:])
@pytest.mark.parametrize("method", ["value", "vjp"])
def test_elementwise_losses_want_targets_of_the_predictions_shape(name, loss, method):
    with pytest.raises(ValueError, match=rf"{name}: targets must have the shape of the predictions "
                                         r"\(5, 3\), got \(5,\)"):
        getattr(loss, method)(LOGITS, np.zeros(N, np.float32))


@pytest.mark.parametrize("bad", [-0.5, 1.5])
def test_binary_targets_outside_zero_one(bad):
    targets = np.full((N, C), bad, np.float32)
    with pytest.raises(ValueError, match=r"sigmoid_binary_cross_entropy: targets must lie in \[0, 1\]"):
        sigmoid_binary_cross_entropy.value(LOGITS, targets)


# --- targets are probabilities; labels in range in vjp too; extreme logits --------------------


def test_sigmoid_with_loss_is_the_book_name():
    assert losses.SigmoidWithLoss is sigmoid_binary_cross_entropy


NOT_DISTRIBUTIONS = [
    pytest.param([[2.0, -1.0, 0.0], [1.0, 0.0, 0.0]], r"must lie in \[0, 1\], got values in \[-1, 2\]",
                 id="negative_entries_summing_to_1"),
    pytest.param([[1.5, 0.0, 0.0], [1.0, 0.0, 0.0]], r"must lie in \[0, 1\], got values in \[0, 1.5\]",
                 id="entry_above_1"),
    pytest.param([[np.nan, np.nan, np.nan], [1.0, 0.0, 0.0]], r"must lie in \[0, 1\], got NaN", id="nan_row"),
    pytest.param([[np.nan, 0.0, 1.0], [1.0, 0.0, 0.0]], r"must lie in \[0, 1\], got NaN", id="one_nan_entry"),
    pytest.param([[0.5, 0.0, 0.0], [1.0, 0.0, 0.0]], r"must sum to 1; a row is off by 0.5", id="row_sum_half"),
]


@pytest.mark.parametrize(("name", "loss"), CLASS_LOSSES)
@pytest.mark.parametrize(("rows", "match"), NOT_DISTRIBUTIONS)
def test_targets_that_are_not_distributions_are_refused(xp, name, loss, rows, match):
    targets = backend.put(np.array(rows, np.float32), xp)
    logits = backend.put(np.zeros((2, C), np.float32), xp)
    with pytest.raises(ValueError, match=rf"{name}: (each row of )?one-hot or probability targets {match}"):
        loss.value(logits, targets)
    with pytest.raises(ValueError, match=rf"{name}: (each row of )?one-hot or probability targets {match}"):
        losses.validate_targets(loss, targets, (C,))


@pytest.mark.parametrize("bad", [np.nan, -0.5, 1.5])
def test_binary_targets_with_nan_or_outside_zero_one(bad):
    targets = np.zeros((N, C), np.float32)
    targets[2, 1] = bad
    with pytest.raises(ValueError, match=r"sigmoid_binary_cross_entropy: targets must lie in \[0, 1\]"):
        sigmoid_binary_cross_entropy.value(LOGITS, targets)
    with pytest.raises(ValueError, match=r"sigmoid_binary_cross_entropy: targets must lie in \[0, 1\]"):
        losses.validate_targets(sigmoid_binary_cross_entropy, targets, (C,))


OUT_OF_RANGE = [
    pytest.param([0, 1, 2, 3, 0], "int64", r"\[0, 3\]", id="3"),
    pytest.param([0, -1, 2, 1, 0], "int64", r"\[-1, 2\]", id="-1"),
    pytest.param([7, 7, 7, 7, 7], "int64", r"\[7, 7\]", id="all_7"),
    pytest.param([0, -1, 2, 1, 0], "int8", r"\[-1, 2\]", id="int8_-1"),
    pytest.param([0, 1, 2, 255, 0], "uint8", r"\[0, 255\]", id="uint8_255"),
    pytest.param([0, 1, -(2**31), 1, 0], "int32", r"\[-2147483648, 1\]", id="int32_min"),
]


@pytest.mark.parametrize(("name", "loss"), CLASS_LOSSES)
@pytest.mark.parametrize(("labels", "dtype", "got"), OUT_OF_RANGE)
def test_vjp_refuses_labels_out_of_range(name, loss, labels, dtype, got):
    match = rf"{name}: labels must be in \[0, 3\), got values in {got}"
    labels = np.array(labels, dtype)
    with pytest.raises(ValueError, match=match):
        loss.vjp(LOGITS, labels)
    with pytest.raises(ValueError, match=match):
        loss.value(LOGITS, labels)


@pytest.mark.parametrize(("name", "loss"), CLASS_LOSSES)
@pytest.mark.parametrize("labels", [[0, 1, 2, 3, 0], [0, -1, 2, 1, 0]], ids=["3", "-1"])
def test_vjp_refuses_labels_out_of_range_on_every_concrete_backend(xp, name, loss, labels):
    logits, labels = backend.put((LOGITS, np.array(labels)), xp)
    with pytest.raises(ValueError, match=rf"{name}: labels must be in \[0, 3\)"):
        loss.vjp(logits, labels)


def test_labels_in_range_pass_the_vjp_check_at_the_edges():
    for dtype in ("int8", "uint8", "int32", "int64", "uint64"):
        labels = np.array([0, 2, 1, 2, 0], dtype)
        loss, pullback = softmax_cross_entropy.vjp(LOGITS, labels)
        assert float(loss) == pytest.approx(math.log(3), rel=1e-6)
        chex.assert_tree_all_finite(pullback())


def test_vjp_under_jit_cannot_check_labels():
    # documented: a traced value cannot raise, an out-of-range label is an all-zero row there
    logits = jnp.zeros((2, 3), jnp.float32)
    value = jax.jit(lambda z, t: softmax_cross_entropy.vjp(z, t)[0])(logits, jnp.asarray([0, 7]))
    assert float(value) == pytest.approx(math.log(3) / 2, rel=1e-6)


EXTREME = [
    pytest.param("float16", 40000.0, id="float16_4e4"),
    pytest.param("float16", 65504.0, id="float16_max"),
    pytest.param("float32", 3e38, id="float32_3e38"),
    pytest.param("float64", 1.7e308, id="float64_1.7e308"),
]


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize(("dtype", "big"), EXTREME)
@pytest.mark.parametrize("label", [0, 1, 2])
def test_extreme_finite_logits_give_a_finite_gradient_and_no_nan(dtype, big, label):
    # the row spans 2 * big, beyond the dtype's range: x - max overflowed to -inf, and the
    # loss's 0 * inf (or t * -inf in log_softmax) was NaN
    logits = np.array([[big, -big, 0.0]], dtype)
    want_grad = np.eye(3)[[0]] - np.eye(3)[[label]]  # softmax is (1, 0, 0) to within rounding
    for targets in (np.array([label]), np.eye(3, dtype=dtype)[[label]]):
        value = softmax_cross_entropy.value(logits, targets)
        vjp_value, pullback = softmax_cross_entropy.vjp(logits, targets)
        grad = pullback()
        assert grad.dtype == np.dtype(dtype)
        chex.assert_tree_all_finite((value, vjp_value, grad))
        np.testing.assert_array_equal(grad, want_grad.astype(dtype))
        assert float(value) == float(vjp_value)
        if label == 0:
            assert float(value) == 0.0
        elif label == 2:
            assert float(value) == float(np.asarray(big, dtype))
        else:  # the true loss 2 * big is beyond the range: the largest finite number
            assert float(value) == float(np.finfo(dtype).max)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_extreme_logits_on_every_backend(xp):
    logits = np.array([[3e38, -3e38, 0.0], [1.0, 2.0, 3.0]], np.float32)
    for targets in (np.array([2, 0]), np.eye(3, dtype=np.float32)[[2, 0]]):
        z, t = backend.put((logits, targets), xp)
        value, pullback = softmax_cross_entropy.vjp(z, t)
        chex.assert_tree_all_finite(backend.to_numpy((softmax_cross_entropy.value(z, t), value, pullback())))


def test_ordinary_logits_give_the_same_bits_as_the_unfloored_shift():
    # the floor only touches entries that overflowed: ordinary inputs keep every bit
    rng = np.random.default_rng(11)
    for dtype in ("float32", "float64"):
        logits = (30 * rng.standard_normal((64, 10))).astype(dtype)
        labels = rng.integers(0, 10, 64)
        z = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        t = np.eye(10, dtype=dtype)[labels]
        loss, pullback = softmax_cross_entropy.vjp(logits, labels)
        assert loss.tobytes() == (np.add.reduce(t * (np.log(s) - z), axis=None) / 64).tobytes()
        assert pullback().tobytes() == ((e / s - t) * (1.0 / 64)).tobytes()
