"""Bad input at every public entry point, tried on purpose: one table, one row a case.

Each row of ``RAISES`` is ``(id, call, error, regex)``: ``call()`` must raise ``error`` with a
message matching ``regex``, which names the function or layer, what was expected and what came.
Each row of ``HANDLED`` is ``(id, call)``: ``call()`` runs its own asserts (read-only and
non-contiguous arrays, odd but valid dtypes: these must simply work, with the right results).
A row that fails today because of a bug in the library is marked ``bug(...)`` (a strict
xfail saying what is wrong); the fix removes the mark. Add a row to grow the list.

Some cases live beside their module and are not repeated here: fit's batch size 0/301/2.5,
different lengths, NaN in x, labels 5 of 3 and one-hot of width 4 (test_train.py); broken and
foreign checkpoint files (test_checkpoint.py); options of the demo (test_examples.py).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from typing import Any

import chex
import numpy as np
import pytest
from conftest import readonly

from funcnet import (
    backend,
    checkpoint,
    datasets,
    gradcheck,
    layers,
    losses,
    optim,
    random,
    schedules,
    train,
    tree,
)
from funcnet.models import TwoLayerNet

# --- the material the cases are made of (small, built once at import) -----------------------

KEY = random.key(0)
RNG = np.random.default_rng(0)
X = RNG.standard_normal((4, 2)).astype(np.float32)  # 4 examples of width 2
LABELS = np.array([0, 1, 2, 0])
LOGITS = RNG.standard_normal((4, 3)).astype(np.float32)
ONE_HOT = (LABELS[:, None] == np.arange(3)).astype(np.float32)

AFFINE = layers.Affine(3)
_, AFFINE_P = AFFINE.init(KEY, (2,))
MATMUL = layers.MatMul(3)
_, MATMUL_P = MATMUL.init(KEY, (2,))
NET = layers.serial(layers.Affine(4), layers.ReLU(), layers.Affine(3))
_, NET_P = NET.init(KEY, (2,))

MODEL = TwoLayerNet(2, 4, 3)
SGD = optim.sgd(0.1)
STEP = train.make_train_step(MODEL, losses.softmax_cross_entropy, SGD)
STATE = train.init_state(MODEL, SGD, KEY, (2,))
DATA_X = RNG.standard_normal((40, 2)).astype(np.float32)
DATA_T = np.arange(40) % 3
FIT = {"epochs": 1, "batch_size": 8, "progress": False}

PARAMS = {"W": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)}
GRADS = {"W": np.full((2, 3), 0.5, np.float32), "b": np.ones(3, np.float32)}


def strict(a: Any) -> Any:
    """The same values on the array_api_strict backend (a second backend, to mix with NumPy)."""
    return backend.put(a, "array_api_strict")


def bug(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=reason)


def case(id_: str, call: Callable[[], Any], error: Any, match: str, *, marks: Any = ()) -> Any:
    return pytest.param(call, error, match, id=id_, marks=marks)


_TMP = tempfile.TemporaryDirectory(prefix="funcnet-bad-input-")


@pytest.fixture(scope="module", autouse=True)
def _remove_temporary_files():
    yield
    _TMP.cleanup()


def _folder() -> str:
    """A fresh empty folder, removed with the others when the module's tests are done."""
    return tempfile.mkdtemp(dir=_TMP.name)


def _one_update(leaf: Callable[..., Any]) -> Any:
    opt = optim.from_rule("rule", lambda step: leaf, lr=0.1)
    return opt.update(PARAMS, GRADS, opt.init(PARAMS))


def _optax() -> Any:
    return pytest.importorskip("optax")


def _fitted_trainer() -> Any:
    from funcnet import Trainer

    trainer = Trainer(MODEL, SGD)
    trainer.fit(DATA_X, DATA_T, 1, 8, log=False, progress=False)
    return trainer


def _save(tree_: Any) -> str:
    path = os.path.join(_folder(), "c.safetensors")
    checkpoint.save(path, tree_)
    return path


# --- cases that must raise ---------------------------------------------------------------------

RAISES = [
    # layers: apply and vjp
    case("Affine.apply rank-1 input", lambda: AFFINE.apply(AFFINE_P, X[0]),
         ValueError, r"Affine\(3\): expected input of shape \(N, 2\), got \(2,\)"),
    case("Affine.vjp rank-3 input", lambda: AFFINE.vjp(AFFINE_P, X[:, :, None]),
         ValueError, r"Affine\(3\): expected input of shape \(N, 2\), got \(4, 2, 1\)"),
    case("Affine.apply wrong width", lambda: AFFINE.apply(AFFINE_P, np.ones((4, 5), np.float32)),
         ValueError, r"Affine\(3\): expected input of shape \(N, 2\), got \(4, 5\)"),
    case("MatMul.vjp wrong width", lambda: MATMUL.vjp(MATMUL_P, np.ones((4, 3), np.float32)),
         ValueError, r"MatMul\(3\): expected input of shape \(N, 2\), got \(4, 3\)"),
    case("Affine.apply empty batch", lambda: AFFINE.apply(AFFINE_P, X[:0]),
         ValueError, r"Affine\(3\): empty batch, input shape \(0, 2\)"),
    case("Affine.vjp a list, not an array", lambda: AFFINE.vjp(AFFINE_P, X.tolist()),
         TypeError, r"Affine\(3\): input must be an array, got list"),
    case("Affine.apply complex input", lambda: AFFINE.apply(AFFINE_P, X.astype(np.complex64)),
         TypeError, r"Affine\(3\).*complex64"),
    case("Affine.apply params missing 'b'", lambda: AFFINE.apply({"W": AFFINE_P["W"]}, X),
         ValueError, r"Affine\(3\): params .*'b'"),
    case("Affine.apply params of a layer without params", lambda: AFFINE.apply((), X),
         TypeError, r"Affine\(3\): params must be a dict .*got tuple"),
    case("Affine.apply W of another width", lambda: AFFINE.apply({"W": np.ones((2, 4), np.float32),
                                                                  "b": AFFINE_P["b"]}, X),
         ValueError, r"Affine\(3\): params\['W'\] .*\(2, 3\).*\(2, 4\)"),
    case("Affine.vjp b of another shape", lambda: AFFINE.vjp({"W": AFFINE_P["W"], "b": np.ones(5, np.float32)}, X),
         ValueError, r"Affine\(3\): params\['b'\] .*\(3,\).*\(5,\)"),
    case("Affine pullback dy of the wrong shape", lambda: AFFINE.vjp(AFFINE_P, X)[1](np.ones((4, 7), np.float32)),
         ValueError, r"Affine\(3\).*\(4, 3\).*\(4, 7\)"),
    case("serial pullback dy of the wrong shape", lambda: NET.vjp(NET_P, X)[1](np.ones((4, 5), np.float32)),
         ValueError, r"Affine\(3\).*\(4, 3\).*\(4, 5\)"),
    case("Affine.apply input on array_api_strict, params on NumPy", lambda: AFFINE.apply(AFFINE_P, strict(X)),
         TypeError, r"Affine\(3\).*two backends"),
    case("Sigmoid.apply a list", lambda: layers.Sigmoid().apply((), [1.0, 2.0]),
         TypeError, r"Sigmoid: input must be an array, got list"),
    case("ReLU.vjp complex input", lambda: layers.ReLU().vjp((), X.astype(np.complex64)),
         TypeError, r"ReLU.*complex64"),
    case("Dropout.apply with an int as rng", lambda: layers.Dropout(0.5).apply((), X, rng=3),
         TypeError, r"a key is a uint32 array of shape \(2,\), got int64 \(\)"),
    case("Dropout rate 1", lambda: layers.Dropout(1.0),
         ValueError, r"Dropout: rate \(probability of dropping\) must be in \[0, 1\), got 1.0"),
    case("Dropout rate as a string", lambda: layers.Dropout("0.5"),
         ValueError, r"Dropout: rate .* got '0.5'"),
    case("Affine(0)", lambda: layers.Affine(0), ValueError, r"Affine\(0\): out_dim must be a positive int, got 0"),
    case("MatMul(2.5)", lambda: layers.MatMul(2.5), ValueError, r"out_dim must be a positive int, got 2.5"),
    case("Affine.init with a batch axis", lambda: AFFINE.init(KEY, (4, 2)),
         ValueError, r"Affine\(3\).init: expects per-example input shape of rank 1 .* got \(4, 2\)"),
    case("Affine.init in_shape a string", lambda: AFFINE.init(KEY, "ab"),
         TypeError, r"Affine\(3\).init: in_shape must be a tuple of ints, got 'ab'"),
    case("Affine.init with an int as key", lambda: AFFINE.init(0, (2,)),
         TypeError, r"a key is a uint32 array of shape \(2,\), got int64 \(\)"),
    case("Affine.init integer dtype", lambda: AFFINE.init(KEY, (2,), "int32"),
         TypeError, r"Affine\(3\).*float.*int32"),
    case("serial params of another depth", lambda: NET.apply(NET_P[:2], X),
         ValueError, r"serial: params must be a tuple of 3 entries \(one per layer\), got tuple of length 2"),
    case("serial params of another architecture", lambda: NET.apply((NET_P[0], (), NET_P[0]), X),
         ValueError, r"serial layer 2: Affine\(3\): "),
    case("serial of a constructor", lambda: layers.serial(layers.ReLU),
         TypeError, r"serial: argument 0 is not a Layer, got function \(did you pass the constructor"),
    case("serial of nothing", lambda: layers.serial(), ValueError, r"serial: needs at least one layer"),
    case("serial wrong width names the layer", lambda: NET.vjp(NET_P, np.ones((4, 5), np.float32)),
         ValueError, r"serial layer 0: Affine\(4\): expected input of shape \(N, 2\), got \(4, 5\)"),
    # losses: value and vjp
    case("sce.value float labels", lambda: losses.softmax_cross_entropy.value(LOGITS, LABELS.astype(np.float32)),
         TypeError, r"softmax_cross_entropy: labels of shape \(4,\) must be integers, got float32"),
    case("sce.vjp float labels", lambda: losses.softmax_cross_entropy.vjp(LOGITS, LABELS.astype(np.float64)),
         TypeError, r"softmax_cross_entropy: labels of shape \(4,\) must be integers, got float64"),
    case("sce.value bool labels", lambda: losses.softmax_cross_entropy.value(LOGITS, LABELS > 0),
         TypeError, r"softmax_cross_entropy: labels of shape \(4,\) must be integers, got bool"),
    case("sce.value label 3 of 3 classes", lambda: losses.softmax_cross_entropy.value(LOGITS, LABELS + 1),
         ValueError, r"softmax_cross_entropy: labels must be in \[0, 3\), got values in \[1, 3\]"),
    case("sce.value negative label", lambda: losses.softmax_cross_entropy.value(LOGITS, LABELS - 1),
         ValueError, r"softmax_cross_entropy: labels must be in \[0, 3\), got values in \[-1, 1\]"),
    case("sce.value int8 label -1 of 300 classes",
         lambda: losses.softmax_cross_entropy.value(np.zeros((2, 300), np.float32), np.array([-1, 5], np.int8)),
         ValueError, r"softmax_cross_entropy: labels must be in \[0, 300\), got values in \[-1, 5\]"),
    case("sce.vjp int8 label -1 of 300 classes",
         lambda: losses.softmax_cross_entropy.vjp(np.zeros((2, 300), np.float32), np.array([-1, 5], np.int8)),
         ValueError, r"softmax_cross_entropy: labels must be in \[0, 300\), got values in \[-1, 5\]"),
    case("book sce.value label out of range", lambda: losses.book_softmax_cross_entropy.value(LOGITS, LABELS + 1),
         ValueError, r"book_softmax_cross_entropy: labels must be in \[0, 3\), got values in \[1, 3\]"),
    case("sce.vjp one-hot of width 2", lambda: losses.softmax_cross_entropy.vjp(LOGITS, ONE_HOT[:, :2]),
         ValueError, r"one-hot targets have 2 classes but logits have 3 \(targets \(4, 2\), logits \(4, 3\)\)"),
    case("sce.value integer logits", lambda: losses.softmax_cross_entropy.value(LABELS[:, None] * np.ones(3, int),
                                                                                 LABELS),
         TypeError, r"softmax_cross_entropy: logits must be floating point, got int64"),
    case("sce.vjp complex logits", lambda: losses.softmax_cross_entropy.vjp(LOGITS.astype(np.complex64), LABELS),
         TypeError, r"softmax_cross_entropy: logits must be floating point, got complex64"),
    case("sce.value empty batch", lambda: losses.softmax_cross_entropy.value(LOGITS[:0], LABELS[:0]),
         ValueError, r"softmax_cross_entropy: empty batch, logits of shape \(0, 3\)"),
    case("sce.value rank-1 logits", lambda: losses.softmax_cross_entropy.value(LOGITS[0], LABELS[:3]),
         ValueError, r"softmax_cross_entropy: logits must have shape \(N, C\), got \(3,\)"),
    case("sce.vjp labels of another length", lambda: losses.softmax_cross_entropy.vjp(LOGITS, LABELS[:3]),
         ValueError, r"targets must be labels of shape \(4,\) or one-hot of shape \(4, 3\), got \(3,\)"),
    case("sce.value targets a list", lambda: losses.softmax_cross_entropy.value(LOGITS, LABELS.tolist()),
         TypeError, r"softmax_cross_entropy: targets must be an array, got list"),
    case("sce.value complex one-hot", lambda: losses.softmax_cross_entropy.value(LOGITS, ONE_HOT.astype(np.complex64)),
         TypeError, r"softmax_cross_entropy: .*targets.*complex64"),
    case("sce.value logits on NumPy, labels on array_api_strict",
         lambda: losses.softmax_cross_entropy.value(LOGITS, strict(LABELS)),
         TypeError, r"arrays of two backends mixed in one call: numpy and array_api_strict"),
    case("mse.vjp targets of another shape", lambda: losses.mean_squared_error.vjp(LOGITS, LOGITS[:, :2]),
         ValueError, r"mean_squared_error: targets must have the shape of the predictions \(4, 3\), got \(4, 2\)"),
    case("mse.value integer predictions", lambda: losses.mean_squared_error.value(LABELS[:, None], LABELS[:, None]),
         TypeError, r"mean_squared_error: .* must be floating point, got int64"),
    case("bce.value targets outside [0, 1]", lambda: losses.sigmoid_binary_cross_entropy.value(LOGITS, 2 * ONE_HOT),
         ValueError, r"sigmoid_binary_cross_entropy: targets must lie in \[0, 1\]"),
    # optim: init and update
    case("sgd.init integer params", lambda: SGD.init({"W": np.ones((2, 3), np.int64)}),
         TypeError, r"sgd.init: params leaf 'W' has dtype int64; only floating-point params can be optimized"),
    case("adam.init a list of floats as a leaf", lambda: optim.adam().init({"W": [1.0, 2.0]}),
         TypeError, r"adam.init: params leaf 'W/0' must be an array, got float"),
    case("momentum.update grads of another shape",
         lambda: optim.momentum(0.1).update(PARAMS, {**GRADS, "W": GRADS["W"].T}, optim.momentum(0.1).init(PARAMS)),
         ValueError, r"momentum.update: grads leaf 'W' has shape \(3, 2\), expected the param's shape \(2, 3\)"),
    case("adam.update grads missing a leaf",
         lambda: optim.adam().update(PARAMS, {"W": GRADS["W"]}, optim.adam().init(PARAMS)),
         ValueError, r"adam.update: grads does not match the expected structure: missing leaves \['b'\]"),
    case("sgd.update float64 grads for float32 params",
         lambda: SGD.update(PARAMS, tree.map(lambda g: g.astype(np.float64), GRADS), SGD.init(PARAMS)),
         TypeError, r"sgd.update: grads leaf 'W' has dtype float64, expected the param's dtype float32"),
    case("momentum.update integer grads",
         lambda: optim.momentum(0.1).update(PARAMS, tree.map(lambda g: g.astype(np.int64), GRADS),
                                            optim.momentum(0.1).init(PARAMS)),
         TypeError, r"momentum.update: grads leaf 'W' has dtype int64, expected the param's dtype float32"),
    case("sgd.update the state of adam", lambda: SGD.update(PARAMS, GRADS, optim.adam().init(PARAMS)),
         TypeError, r"sgd.update: state must be the SGDState that sgd's init makes, got AdamState"),
    case("adam.update the state of sgd", lambda: optim.adam().update(PARAMS, GRADS, SGD.init(PARAMS)),
         TypeError, r"adam.update: state must be the AdamState that adam's init makes, got SGDState"),
    case("nesterov standard.update the state of nesterov book",
         lambda: optim.nesterov(0.1, form="standard").update(PARAMS, GRADS, optim.Nesterov().init(PARAMS)),
         TypeError, r"nesterov.update: state must be the NesterovTraceState .* got NesterovState"),
    case("momentum.update the state of nesterov",
         lambda: optim.momentum(0.1).update(PARAMS, GRADS, optim.Nesterov().init(PARAMS)),
         TypeError, r"momentum.update: state must be the MomentumState .* got NesterovState"),
    case("rmsprop.update no state", lambda: optim.rmsprop(0.1).update(PARAMS, GRADS, None),
         TypeError, r"rmsprop.update: state must be the RMSpropState .* got NoneType"),
    case("adam.update the state of other params",
         lambda: optim.adam().update(PARAMS, GRADS, optim.adam().init({"W": PARAMS["W"]})),
         ValueError, r"adam.update: state.first_moment does not match the expected structure: missing leaves \['b'\]"),
    case("adagrad.update grads on array_api_strict, params on NumPy",
         lambda: optim.adagrad(0.1).update(PARAMS, strict(GRADS), optim.adagrad(0.1).init(PARAMS)),
         TypeError, r"adagrad.update: .*two backends"),
    case("clip_grads max_norm 0", lambda: optim.clip_grads(GRADS, 0.0),
         ValueError, r"clip_grads: max_norm must be > 0, got 0"),
    case("sgd negative lr", lambda: optim.sgd(-0.1), ValueError, r"sgd: lr must be a finite number >= 0.0, got -0.1"),
    case("adam NaN lr", lambda: optim.adam(float("nan")), ValueError, r"adam: lr must be .* got nan"),
    case("rmsprop lr a string", lambda: optim.rmsprop("0.1"),
         TypeError, r"rmsprop: lr must be a number or a schedule .* got str"),
    case("sgd schedule that goes negative", lambda: optim.sgd(lambda count: -0.5).update(PARAMS, GRADS,
                                                                                          SGD.init(PARAMS)),
         ValueError, r"sgd: the lr schedule gave -0.5 at step 0; a learning rate must be >= 0"),
    case("adam schedule that gives NaN", lambda: optim.adam(lambda count: float("nan")).update(
        PARAMS, GRADS, optim.adam().init(PARAMS)),
         ValueError, r"adam: the lr schedule gave nan at step 0"),
    case("momentum 1.0", lambda: optim.momentum(0.1, 1.0), ValueError, r"momentum: momentum must be in \[0.0, 1.0\), got 1.0"),
    case("adam beta2 1.0", lambda: optim.adam(beta2=1.0), ValueError, r"adam: beta2 must be in \[0.0, 1.0\), got 1.0"),
    case("adam unknown form", lambda: optim.adam(form="pytorch"), ValueError, r"adam: form must be 'book' or 'standard', got 'pytorch'"),
    case("with_clipping negative max_norm", lambda: optim.with_clipping(SGD, -1.0),
         ValueError, r"clip_by_global_norm: max_norm must be a finite number >= 0.0, got -1.0"),
    case("chain with the optimizer first", lambda: optim.chain(SGD, optim.clip_by_global_norm(1.0)),
         TypeError, r"chain: the last argument must be an Optimizer, got GradientTransform"),
    case("schedule with a negative initial value", lambda: schedules.exponential_decay(-1.0, 0.5, 10),
         ValueError, r"exponential_decay: init_value must be a finite number >= 0.0, got -1.0"),
    # train: init_state, the step, fit, predict, evaluate
    case("init_state an int as key", lambda: train.init_state(MODEL, SGD, 0, (2,)),
         TypeError, r"a key is a uint32 array of shape \(2,\), got int64 \(\)"),
    case("init_state in_shape of another model", lambda: train.init_state(MODEL, SGD, KEY, (3,)),
         ValueError, r"TwoLayerNet: built for inputs of shape \(2,\), got \(3,\)"),
    case("init_state unknown backend", lambda: train.init_state(MODEL, SGD, KEY, (2,), backend="tensorflow"),
         ValueError, r"unknown backend 'tensorflow'; expected one of numpy, cupy, jax, array_api_strict"),
    case("init_state integer dtype", lambda: train.init_state(MODEL, SGD, KEY, (2,), dtype="int32"),
         TypeError, r"serial layer 0: Affine\(4\).init: params dtype must be a float type .* got int32"),
    case("init_state unknown dtype", lambda: train.init_state(MODEL, SGD, KEY, (2,), dtype="floatx"),
         TypeError, r"data type 'floatx' not understood"),
    case("step input of another width", lambda: STEP(STATE, (np.ones((4, 3), np.float32), LABELS)),
         ValueError, r"serial layer 0: Affine\(4\): expected input of shape \(N, 2\), got \(4, 3\)"),
    case("step float labels", lambda: STEP(STATE, (X, LABELS.astype(np.float32))),
         TypeError, r"softmax_cross_entropy: labels of shape \(4,\) must be integers, got float32"),
    case("step empty batch", lambda: STEP(STATE, (X[:0], LABELS[:0])),
         ValueError, r"Affine\(4\): empty batch, input shape \(0, 2\)"),
    case("step the optimizer state of adam", lambda: STEP(STATE._replace(opt_state=optim.adam().init(STATE.params)),
                                                          (X, LABELS)),
         TypeError, r"sgd.update: state must be the SGDState that sgd's init makes, got AdamState"),
    case("step params of another model", lambda: STEP(STATE._replace(params=NET_P[:2]), (X, LABELS)),
         ValueError, r"serial: params must be a tuple of 3 entries \(one per layer\), got tuple of length 2"),
    case("step complex input", lambda: STEP(STATE, (X.astype(np.complex64), LABELS)),
         TypeError, r"complex64"),
    case("step batch that is not a pair", lambda: STEP(STATE, X[:2]),
         TypeError, r"batch must be a pair \(x, t\)"),
    case("step input on array_api_strict, params on NumPy", lambda: STEP(STATE, (strict(X), strict(LABELS))),
         TypeError, r"two backends"),
    case("fit complex x", lambda: train.fit(STEP, STATE, DATA_X.astype(np.complex64), DATA_T, **FIT),
         TypeError, r"fit: x must be real numbers, got dtype complex64"),
    case("fit boolean x", lambda: train.fit(STEP, STATE, DATA_X > 0, DATA_T, **FIT),
         TypeError, r"fit: x must be real numbers, got dtype bool"),
    case("fit float labels", lambda: train.fit(STEP, STATE, DATA_X, DATA_T.astype(np.float64), **FIT),
         TypeError, r"softmax_cross_entropy: labels of shape \(40,\) must be integers, got float64"),
    case("fit negative labels", lambda: train.fit(STEP, STATE, DATA_X, DATA_T - 1, **FIT),
         ValueError, r"softmax_cross_entropy: labels must be in \[0, 3\), got values in \[-1, 1\]"),
    case("fit x of another width", lambda: train.fit(STEP, STATE, np.ones((40, 3), np.float32), DATA_T, **FIT),
         ValueError, r"Affine\(4\): expected input of shape \(N, 2\)"),
    case("fit negative epochs", lambda: train.fit(STEP, STATE, DATA_X, DATA_T, epochs=-1, batch_size=8),
         ValueError, r"fit: epochs must be a non-negative int, got -1"),
    case("fit unknown on_nonfinite", lambda: train.fit(STEP, STATE, DATA_X, DATA_T, on_nonfinite="ignore", **FIT),
         ValueError, r"fit: on_nonfinite must be 'raise' or 'skip', got 'ignore'"),
    case("fit eval_interval 0", lambda: train.fit(STEP, STATE, DATA_X, DATA_T, eval_interval=0, **FIT),
         ValueError, r"fit: eval_interval must be a positive int or None, got 0"),
    case("fit params of another model", lambda: train.fit(STEP, STATE._replace(params=NET_P[:2]), DATA_X, DATA_T,
                                                           **FIT),
         ValueError, r"serial: params must be a tuple of 3 entries"),
    case("fit the optimizer state of adam",
         lambda: train.fit(STEP, STATE._replace(opt_state=optim.adam().init(STATE.params)), DATA_X, DATA_T, **FIT),
         TypeError, r"sgd.update: state must be the SGDState .* got AdamState"),
    case("fit a schedule that goes negative at step 2",
         lambda: train.fit(train.make_train_step(MODEL, losses.softmax_cross_entropy,
                                                 optim.sgd(lambda count: 0.1 - 0.1 * count)),
                           STATE, DATA_X, DATA_T, **FIT),
         ValueError, r"sgd: the lr schedule gave -0.1 at step 2; a learning rate must be >= 0"),
    case("fit empty x", lambda: train.fit(STEP, STATE, DATA_X[:0], DATA_T[:0], **FIT),
         ValueError, r"fit: x is empty"),
    case("fit x a list", lambda: train.fit(STEP, STATE, DATA_X.tolist(), DATA_T, **FIT),
         TypeError, r"fit: x must be an array, got list"),
    case("fit state that is not a TrainState", lambda: train.fit(STEP, (STATE.params,), DATA_X, DATA_T, **FIT),
         TypeError, r"fit: state must be a TrainState"),
    # found by hostile input (issue "Nothing silent"): each named in the user's terms
    case("fit float64 x that overflows float32 params",
         lambda: train.fit(STEP, STATE, np.full((40, 2), 1e39), DATA_T, **FIT),
         ValueError, r"fit: x is finite as float64 but overflows the params' dtype float32"),
    case("fit 0-d targets", lambda: train.fit(STEP, STATE, DATA_X, np.array(1), **FIT),
         ValueError, r"fit: t must have a batch axis"),
    case("fit x without a feature axis", lambda: train.fit(STEP, STATE, DATA_X[:, 0], DATA_T, **FIT),
         ValueError, r"fit: x must be \(N, features...\).*got shape \(40,\).*x\[:, None\]"),
    case("fit eval_interval True", lambda: train.fit(STEP, STATE, DATA_X, DATA_T, eval_interval=True, **FIT),
         ValueError, r"fit: eval_interval must be a positive int or None, got True"),
    case("fit labels of 7 on 3 classes through a TrainStep",
         lambda: train.fit(train.TrainStep(MODEL, losses.softmax_cross_entropy, SGD), STATE, DATA_X,
                           np.full(40, 7), **FIT),
         ValueError, r"labels must be in \[0, 3\)"),
    case("fit one-hot targets with negative entries",
         lambda: train.fit(STEP, STATE, DATA_X, np.tile(np.array([[2.0, -1.0, 0.0]], np.float32), (40, 1)), **FIT),
         ValueError, r"softmax_cross_entropy"),
    case("fit resumed mid-epoch with a batch size that cannot continue",
         lambda: train.fit(STEP, STATE._replace(step=3, offset=24), DATA_X, DATA_T, epochs=1, batch_size=10,
                           progress=False),
         ValueError, r"fit: the state stopped 24 examples into epoch 1, which batches of 10 cannot continue"),
    case("make_train_step a constructor for the model",
         lambda: train.make_train_step(TwoLayerNet, losses.softmax_cross_entropy, SGD),
         TypeError, r"TrainStep: model must be a Layer, got function \(did you pass the constructor"),
    case("make_train_step an optimizer constructor", lambda: train.make_train_step(MODEL, losses.softmax_cross_entropy,
                                                                                   optim.sgd),
         TypeError, r"TrainStep: optimizer must have init and update .*constructor"),
    case("make_train_step arguments swapped", lambda: train.make_train_step(MODEL, SGD, losses.softmax_cross_entropy),
         TypeError, r"TrainStep: optimizer must have init and update"),
    case("init_state optimizer and model swapped", lambda: train.init_state(SGD, MODEL, KEY, (2,)),
         TypeError, r"init_state: model must be a Layer, got Optimizer"),
    case("init_state in_shape an int", lambda: train.init_state(MODEL, SGD, KEY, 2),
         TypeError, r"init_state: in_shape must be a tuple of ints.*\(e\.g\. \(2,\)\), got 2"),
    case("accuracy one-hot of another width", lambda: train.accuracy(LOGITS, np.eye(4)[LABELS]),
         ValueError, r"accuracy: targets must be labels \(4,\) or \(4, 1\), or one-hot \(4, 3\)"),
    case("accuracy labels out of range", lambda: train.accuracy(LOGITS, LABELS + 1),
         ValueError, r"accuracy: labels must be in \[0, 3\), got values from 1 to 3"),
    case("accuracy binary targets that are not 0 or 1", lambda: train.accuracy(LOGITS[:, :1], LABELS),
         ValueError, r"accuracy: binary targets .* must be 0 or 1"),
    case("evaluate NaN rows in one-hot targets",
         lambda: train.evaluate(MODEL, STATE.params, DATA_X, np.full((40, 3), np.nan, np.float32)),
         ValueError, r"evaluate: t contains NaN"),
    # found by a red-team pass over this release
    case("TrainStep a gradient transformation as the optimizer",
         lambda: train.TrainStep(MODEL, losses.softmax_cross_entropy, optim.clip(1.0)),
         TypeError, r"TrainStep: optimizer is a gradient transformation.*optim\.chain\(transform, optim\.sgd"),
    case("fit every step skipped", lambda: train.fit(STEP, STATE, np.full((40, 2), np.nan, np.float32), DATA_T,
                                                     validate=False, on_nonfinite="skip", **FIT),
         train.NonFiniteLossError, r"every one of the 5 steps had a NaN or infinite loss and was skipped"),
    case("fit a step that returns no metrics", lambda: train.fit(lambda s, b: STEP(s, b)[0], STATE, DATA_X, DATA_T,
                                                                 **FIT),
         TypeError, r"fit: step must return \(TrainState, \{'loss': scalar, \.\.\.\}\), got TrainState"),
    case("fit callback not callable", lambda: train.fit(STEP, STATE, DATA_X, DATA_T, callback=5, **FIT),
         TypeError, r"fit: callback must be a function of \(state, metrics\) or None, got int"),
    case("fit NaN params with validate=False",
         lambda: train.fit(STEP, STATE._replace(params=tree.map(lambda a: a * np.nan, STATE.params)), DATA_X,
                           DATA_T, validate=False, **FIT),
         train.NonFiniteLossError, r"params/0/W holds NaN or infinite values in the state fit was given"),
    case("fit x of 3 dims for a 2-d model", lambda: train.fit(STEP, STATE, DATA_X[:, :, None], DATA_T, **FIT),
         ValueError, r"fit: examples of shape \(2, 1\) \(x is \(40, 2, 1\)\) do not fit the model"),
    case("evaluate NaN x", lambda: train.evaluate(MODEL, STATE.params, np.full((4, 2), np.nan), LABELS),
         ValueError, r"evaluate: the model's outputs are NaN or infinite"),
    case("evaluate a optimizer as the loss", lambda: train.evaluate(MODEL, STATE.params, X, LABELS, loss=SGD),
         TypeError, r"evaluate: loss must be a Loss with value and vjp"),
    case("init_state big-endian dtype", lambda: train.init_state(MODEL, SGD, KEY, (2,), dtype=">f4"),
         TypeError, r"params dtype must be a float type \(float16/32/64, native byte order\), got >f4"),
    case("init_state longdouble", lambda: train.init_state(MODEL, SGD, KEY, (2,), dtype="longdouble"),
         TypeError, r"params dtype must be a float type"),
    case("sgd lr finite in float64 but not in float32", lambda: optim.sgd(1e39).update(PARAMS, GRADS,
                                                                                        optim.sgd(1e39).init(PARAMS)),
         ValueError, r"sgd: lr 1e\+39 is not finite in the params' float32"),
    case("a schedule returning None", lambda: optim.sgd(lambda c: None).update(PARAMS, GRADS, SGD.init(PARAMS)),
         TypeError, r"sgd: the lr schedule returned NoneType None at step 0; it must return a real number"),
    case("accumulate grads of another shape",
         lambda: optim.accumulate(1, SGD).update(PARAMS, {"W": GRADS["W"][:1], "b": GRADS["b"]},
                                                 optim.accumulate(1, SGD).init(PARAMS)),
         ValueError, r"accumulate.update: grads leaf 'W' has shape \(1, 3\), expected the param's shape \(2, 3\)"),
    case("Sigmoid pullback a broadcasting dy", lambda: layers.Sigmoid().vjp((), X)[1](np.ones((1, 2), np.float32)),
         ValueError, r"Sigmoid: the pullback's dy should have the output's shape \(4, 2\), got \(1, 2\)"),
    case("serial Affine then Dropout a broadcasting dy",
         lambda: layers.serial(layers.Affine(3), layers.Dropout(0.5)).vjp(
             layers.serial(layers.Affine(3), layers.Dropout(0.5)).init(KEY, (2,))[1], X, rng=KEY)[1](
             np.ones((1, 3), np.float32)),
         ValueError, r"serial layer 1: Dropout\(0.5\): the pullback's dy should have the output's shape"),
    case("Dropout float16 scale overflow", lambda: layers.Dropout(0.99999).apply((), X.astype(np.float16), rng=KEY),
         ValueError, r"Dropout\(0.99999\): the scale of kept values, 1 / \(1 - rate\) = 1e\+05, overflows"),
    case("Trainer.save metadata key of Trainer's own",
         lambda: _fitted_trainer().save(os.path.join(_folder(), "t"), metadata={"trainer.in_shape": "[9]"}),
         ValueError, r"Trainer.save: metadata keys starting with 'trainer.' are Trainer's own"),
    case("init_state key None", lambda: train.init_state(MODEL, SGD, None, (2,)),
         TypeError, r"a key is a uint32 array of shape \(2,\), got NoneType \(make one with random\.key\(seed\)\)"),
    case("sce.value labels as a column", lambda: losses.softmax_cross_entropy.value(LOGITS, LABELS[:, None]),
         ValueError, r"softmax_cross_entropy: labels must have shape \(4,\), got a column of shape \(4, 1\)"),
    case("sce.value logits with no classes", lambda: losses.softmax_cross_entropy.value(LOGITS[:, :0], LABELS),
         ValueError, r"softmax_cross_entropy: logits have no classes \(shape \(4, 0\)\); C must be >= 1"),
    case("gradcheck eps 0", lambda: gradcheck.check_layer(AFFINE, AFFINE_P, X, eps=0),
         ValueError, r"gradcheck: eps must be a finite number > 0.0, got 0"),
    case("a schedule called with a float count", lambda: schedules.warmup(schedules.cosine_decay(0.1, 10), 3)(2.5),
         TypeError, r"a schedule is a function of the step count, an int or an integer array; got float 2.5"),
    # a second red-team pass
    case("sce.value big-endian labels out of range",
         lambda: losses.softmax_cross_entropy.value(LOGITS, np.array([0, 256, 0, 512], ">i2")),
         ValueError, r"softmax_cross_entropy: labels must be in \[0, 3\), got values in \[0, 512\]"),
    case("random.uniform minval above maxval", lambda: random.uniform(KEY, (3,), minval=1.0, maxval=0.0),
         ValueError, r"uniform: minval and maxval must be finite numbers with minval < maxval"),
    case("random.uniform a range float16 cannot hold",
         lambda: random.uniform(KEY, (3,), "float16", minval=-6e4, maxval=6e4),
         ValueError, r"a range that float16 holds, got -60000.0 and 60000.0"),
    case("from_rule a leaf function without the comma", lambda: _one_update(lambda p, g: p - g),
         TypeError, r"rule: the rule's leaf function must return a tuple of 1 \(the new value\), got ndarray"),
    case("from_rule a leaf function that widens the dtype", lambda: _one_update(lambda p, g: (p.astype(np.float64),)),
         ValueError, r"rule: the rule's new value for leaf 'W' has shape \(2, 3\) and dtype float64, expected "
                     r"\(2, 3\) and float32"),
    case("from_rule slots given as a list", lambda: optim.from_rule("r", lambda st: None, lr=0.1, slots=["v"]),
         TypeError, r"r: slots must map each slot's name to its initial value"),
    case("from_rule a slot starting at NaN", lambda: optim.from_rule("r", lambda st: None, lr=0.1,
                                                                     slots={"v": float("nan")}),
         TypeError, r"r: the initial value of slot 'v' must be a finite number, got nan"),
    case("from_optax on NumPy params", lambda: optim.from_optax(_optax().adam(0.1)).init(PARAMS),
         TypeError, r"from_optax: optax optimizers run on jax arrays; params leaf 'W' is ndarray"),
    case("accumulate arguments swapped", lambda: optim.accumulate(SGD, 2),
         TypeError, r"accumulate: the arguments are \(k, optimizer\): got an Optimizer first"),
    case("accumulate a state of another model",
         lambda: optim.accumulate(2, SGD).update(PARAMS, GRADS, optim.accumulate(2, SGD).init(
             {"W": np.ones((3, 3), np.float32), "b": np.zeros(3, np.float32)})),
         ValueError, r"accumulate.update: state.grad_mean leaf 'W' does not have its param's shape"),
    case("an optimizer's count at the end of int32",
         lambda: SGD.update(PARAMS, GRADS, SGD.init(PARAMS)._replace(count=np.asarray(2**31 - 1, np.int32))),
         OverflowError, r"the optimizer's step count 2147483647 is the largest its int32 holds"),
    case("fit a state.epoch of 1.5", lambda: train.fit(STEP, STATE._replace(epoch=1.5), DATA_X, DATA_T, **FIT),
         ValueError, r"fit: state.epoch must be a non-negative int, got 1.5"),
    case("fit a state.step of 2.5", lambda: train.fit(STEP, STATE._replace(step=2.5), DATA_X, DATA_T, **FIT),
         ValueError, r"fit: state.step must be a non-negative int, got 2.5"),
    case("fit a negative state.step", lambda: train.fit(STEP, STATE._replace(step=-3), DATA_X, DATA_T, **FIT),
         ValueError, r"fit: state.step must be a non-negative int, got -3"),
    case("fit a state.step given as text", lambda: train.fit(STEP, STATE._replace(step="7"), DATA_X, DATA_T, **FIT),
         ValueError, r"fit: state.step must be a non-negative int, got '7'"),
    case("fit a state.offset past the data", lambda: train.fit(STEP, STATE._replace(offset=3000), DATA_X, DATA_T,
                                                               **FIT),
         ValueError, r"fit: state.offset is 3000, but an epoch has only 40 examples"),
    case("accuracy NaN logits", lambda: train.accuracy(LOGITS * np.nan, LABELS),
         ValueError, r"accuracy: logits hold NaN or infinite values"),
    case("accuracy an all-zero one-hot row", lambda: train.accuracy(LOGITS, ONE_HOT * (LABELS != 0)[:, None]),
         ValueError, r"accuracy: a row of one-hot targets is all zeros"),
    case("accuracy float labels as a column", lambda: train.accuracy(LOGITS, LABELS[:, None].astype(np.float32)),
         TypeError, r"accuracy: labels must be integers, got float32"),
    case("evaluate targets as a list", lambda: train.evaluate(MODEL, STATE.params, X, LABELS.tolist()),
         TypeError, r"evaluate: t must be an array, got list"),
    case("TwoLayerNet input_size 0", lambda: TwoLayerNet(0, 4, 3),
         ValueError, r"TwoLayerNet: input_size must be a positive int, got 0"),
    case("spiral seed None", lambda: datasets.spiral.load_data(seed=None),
         TypeError, r"spiral.load_data: seed must be an int \(the same seed, the same data\), got None"),
    case("spiral integer dtype", lambda: datasets.spiral.load_data(dtype="int32"),
         TypeError, r"spiral.load_data: dtype must be a floating dtype, got int32"),
    case("predict x of another width", lambda: train.predict(MODEL, STATE.params, np.ones((4, 3), np.float32)),
         ValueError, r"serial layer 0: Affine\(4\): expected input of shape \(N, 2\), got \(4, 3\)"),
    case("predict empty x", lambda: train.predict(MODEL, STATE.params, DATA_X[:0]),
         ValueError, r"Affine\(4\): empty batch"),
    case("predict batch_size 0", lambda: train.predict(MODEL, STATE.params, DATA_X, batch_size=0),
         ValueError, r"predict: batch_size must be a positive int.*got 0"),
    case("predict batch_size -1", lambda: train.predict(MODEL, STATE.params, DATA_X, batch_size=-1),
         ValueError, r"predict: batch_size must be a positive int.*got -1"),
    case("predict batch_size 2.5", lambda: train.predict(MODEL, STATE.params, DATA_X, batch_size=2.5),
         TypeError, r"predict: batch_size must be .*int.*2.5"),
    case("predict x a list", lambda: train.predict(MODEL, STATE.params, DATA_X.tolist()),
         TypeError, r"predict: x must be an array, got list"),
    case("predict complex x", lambda: train.predict(MODEL, STATE.params, DATA_X.astype(np.complex64)),
         TypeError, r"complex64"),
    case("evaluate labels out of range", lambda: train.evaluate(MODEL, STATE.params, DATA_X, DATA_T + 1),
         ValueError, r"softmax_cross_entropy: labels must be in \[0, 3\), got values in \[1, 3\]"),
    case("sce.value multi-hot rows", lambda: losses.softmax_cross_entropy.value(LOGITS, ONE_HOT + ONE_HOT[::-1]),
         ValueError, r"softmax_cross_entropy: one-hot or probability targets must lie in \[0, 1\], got values in \[0, 2\]"),
    case("evaluate labels of another length", lambda: train.evaluate(MODEL, STATE.params, DATA_X, DATA_T[:30]),
         ValueError, r"targets must be labels of shape \(40,\) or one-hot of shape \(40, 3\), got \(30,\)"),
    case("evaluate params of another model",
         lambda: train.evaluate(MODEL, (STATE.params[0], (), {"W": np.ones((5, 3), np.float32),
                                                              "b": np.zeros(3, np.float32)}), DATA_X, DATA_T),
         ValueError, r"serial layer 2: Affine\(3\): expected input of shape \(N, 5\), got \(40, 4\)"),
    # checkpoint: save and load
    case("checkpoint.save path None", lambda: checkpoint.save(None, PARAMS),
         TypeError, r"a checkpoint path must be str, bytes or os.PathLike, got NoneType"),
    case("checkpoint.save to a folder", lambda: checkpoint.save(_folder(), PARAMS),
         IsADirectoryError, r"a checkpoint path must name a file, not a folder: '.*tmp"),
    case("checkpoint.save into a missing folder",
         lambda: checkpoint.save(os.path.join(_folder(), "missing", "c.safetensors"), PARAMS),
         FileNotFoundError, r"no folder to save the checkpoint in .*missing'"),
    case("checkpoint.save an object leaf", lambda: checkpoint.save(os.path.join(_folder(), "c"),
                                                                   {"a": object()}),
         TypeError, r"leaf 'a' of type object .* cannot be stored"),
    case("checkpoint.load a string leaf in like", lambda: checkpoint.load(_save({"a": np.ones(2)}), {"a": "x"}),
         TypeError, r"leaf 'a' of `like` is a str, not an array or a number"),
    case("checkpoint.load like None", lambda: checkpoint.load(_save({"a": np.ones(2)}), None),
         checkpoint.CheckpointError, r"does not fit `like` \(another architecture\?\): the file has unexpected leaf 'a'"),
    case("checkpoint.load a folder", lambda: checkpoint.load(_folder(), PARAMS),
         IsADirectoryError, r"Is a directory: '.*tmp"),
    case("checkpoint.load like of another dtype kind", lambda: checkpoint.load(_save({"a": np.ones(2)}),
                                                                               {"a": np.zeros(2, np.int32)}),
         checkpoint.CheckpointError, r"leaf 'a' should be int32, the file has float64"),
    # backend: get, put, namespace
    case("backend.get unknown name", lambda: backend.get("tensorflow"),
         ValueError, r"unknown backend 'tensorflow'; expected one of numpy, cupy, jax, array_api_strict"),
    case("backend.get wrong case", lambda: backend.get("NumPy"), ValueError, r"unknown backend 'NumPy'"),
    case("backend.get None", lambda: backend.get(None), TypeError, r"backend name must be a str, got NoneType"),
    case("backend.put to an unknown backend", lambda: backend.put(PARAMS, "torch"),
         ValueError, r"unknown backend 'torch'"),
    case("backend.namespace of nothing", lambda: backend.namespace(), TypeError, r"no arrays given"),
    case("backend.namespace of a list", lambda: backend.namespace([1.0, 2.0]),
         TypeError, r"list is not a supported array type"),
    case("backend.namespace of two backends", lambda: backend.namespace(X, strict(X)),
         TypeError, r"arrays of two backends mixed in one call: numpy and array_api_strict"),
    case("backend.get cupy without a GPU", lambda: backend.get("cupy"),
         backend.BackendUnavailableError, r"backend 'cupy' is (installed but|not installed)",
         marks=pytest.mark.skipif(backend.why_unavailable("cupy") is None, reason="cupy is usable here")),
    # random: key, split, fold_in, draws
    case("random.key negative", lambda: random.key(-1), ValueError, r"seed must be in \[0, 2\*\*64\), got -1"),
    case("random.key a string", lambda: random.key("1"), TypeError, r"seed must be an int, got str"),
    case("random.key None", lambda: random.key(None), TypeError, r"seed must be an int, got NoneType"),
    case("random.split n -1", lambda: random.split(KEY, -1), ValueError, r"split: n must be >= 0, got -1"),
    case("random.split n 1.5", lambda: random.split(KEY, 1.5), TypeError, r"split: n must be an int, got float 1.5"),
    case("random.split a list as key", lambda: random.split([0, 1]),
         TypeError, r"a key is a uint32 array of shape \(2,\), got int64 \(2,\)"),
    case("random.split int32 key", lambda: random.split(KEY.astype(np.int32)),
         TypeError, r"a key is a uint32 array of shape \(2,\), got int32 \(2,\)"),
    case("random.fold_in a float", lambda: random.fold_in(KEY, 1.5),
         TypeError, r"fold_in: data must be an integer .* got float 1.5"),
    case("random.fold_in a string", lambda: random.fold_in(KEY, "a"), TypeError, r"fold_in: data must be an integer"),
    case("random.fold_in None", lambda: random.fold_in(KEY, None), TypeError, r"fold_in: data must be an integer"),
    case("random.fold_in an array of two", lambda: random.fold_in(KEY, np.array([1, 2])),
         TypeError, r"fold_in: data must be an integer .* got ndarray"),
    case("random.normal negative size", lambda: random.normal(KEY, (-1, 2)),
         ValueError, r"normal: shape must not have negative sizes, got \(-1, 2\)"),
    case("random.normal shape a string", lambda: random.normal(KEY, "ab"),
         TypeError, r"normal: shape must be a tuple of ints, got 'ab'"),
    case("random.normal integer dtype", lambda: random.normal(KEY, (2,), "int32"),
         TypeError, r"normal: dtype must be a floating dtype .* got int32"),
    case("random.uniform complex dtype", lambda: random.uniform(KEY, (2,), "complex64"),
         TypeError, r"uniform: dtype must be a floating dtype .* got complex64"),
    case("random.bernoulli p NaN", lambda: random.bernoulli(KEY, float("nan"), (2,)),
         ValueError, r"bernoulli probability must be in \[0, 1\], got nan"),
    case("random.permutation -1", lambda: random.permutation(KEY, -1),
         ValueError, r"permutation: n must be >= 0, got -1"),
    case("random.permutation 2.5", lambda: random.permutation(KEY, 2.5),
         TypeError, r"permutation: n must be an int, got float 2.5"),
]


@pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning")
@pytest.mark.filterwarnings("ignore:You are comparing a array_api_strict dtype:UserWarning")
@pytest.mark.parametrize(("call", "error", "match"), RAISES)
def test_bad_input_raises_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_case_ids_are_unique():
    ids = [p.id for p in RAISES + HANDLED]
    assert len(ids) == len(set(ids))
    for p in RAISES:
        re.compile(p.values[2])  # every regex compiles


# --- cases that must simply work --------------------------------------------------------------


def _variants(a: np.ndarray) -> list[np.ndarray]:
    """Equal arrays in odd layouts: read-only, Fortran order, a strided view, a transposed copy's transpose."""
    fortran = np.asfortranarray(a)
    wide = np.zeros((a.shape[0] * 2, *a.shape[1:]), a.dtype)
    wide = np.concatenate([a[:, None, ...], a[:, None, ...]], axis=1).reshape(wide.shape)
    strided = wide[::2]
    transposed = np.ascontiguousarray(a.T).T
    out = [readonly(a), fortran, strided, transposed, readonly(strided)]
    for v in out:
        np.testing.assert_array_equal(v, a)
    assert not strided.flags.c_contiguous and not strided.flags.f_contiguous
    return out


def _layers_on_odd_layouts():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 3))
    for layer, dtype in [(layers.Affine(4), np.float32), (layers.MatMul(2), np.float64),
                         (layers.Sigmoid(), np.float32), (layers.Tanh(), np.float64), (layers.ReLU(), np.float32),
                         (layers.Softmax(), np.float32), (layers.Flatten(), np.float32),
                         (layers.Dropout(0.3), np.float32)]:
        _, params = layer.init(KEY, (3,), dtype)
        xd = x.astype(dtype)
        dy = rng.standard_normal((6, *layer.init(KEY, (3,), dtype)[0])).astype(dtype)
        y_ref = layer.apply(params, xd, rng=KEY)
        y, pullback = layer.vjp(params, xd, rng=KEY)
        g_ref = pullback(dy)
        for xv in _variants(xd):
            for p in (params, readonly(params)):
                np.testing.assert_array_equal(layer.apply(p, xv, rng=KEY), y_ref)
                y2, pb2 = layer.vjp(p, xv, rng=KEY)
                np.testing.assert_array_equal(y2, y)
                for dyv in _variants(dy):
                    chex.assert_trees_all_close(pb2(dyv), g_ref, rtol=1e-6, atol=1e-7)
                    chex.assert_trees_all_equal_dtypes(pb2(dyv), g_ref)
        np.testing.assert_array_equal(xd, x.astype(dtype))  # nothing written to the input


def _losses_on_odd_layouts():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((8, 3)).astype(np.float32)
    labels = rng.integers(0, 3, 8)
    one_hot = (labels[:, None] == np.arange(3)).astype(np.float32)
    probs = rng.uniform(size=(8, 3)).astype(np.float32)
    for loss, targets in [(losses.softmax_cross_entropy, labels), (losses.softmax_cross_entropy, one_hot),
                          (losses.book_softmax_cross_entropy, labels), (losses.mean_squared_error, probs),
                          (losses.sigmoid_binary_cross_entropy, probs)]:
        ref = loss.value(logits, targets)
        value, pullback = loss.vjp(logits, targets)
        d_ref = pullback(1.0)
        for lv in _variants(logits):
            tvs = _variants(targets) if targets.ndim == 2 else [readonly(targets), targets[::-1][::-1],
                                                                 np.repeat(targets, 2)[::2]]
            for tv in tvs:
                np.testing.assert_allclose(loss.value(lv, tv), ref, rtol=1e-6)
                v2, pb2 = loss.vjp(lv, tv)
                np.testing.assert_allclose(v2, value, rtol=1e-6)
                np.testing.assert_allclose(pb2(1.0), d_ref, rtol=1e-6, atol=1e-8)
                assert pb2(1.0).dtype == np.float32


def _label_dtypes_all_give_the_same_loss():
    ref = losses.softmax_cross_entropy.value(LOGITS, LABELS)
    for dtype in (np.uint8, np.int8, np.int16, np.int32, np.uint32, np.int64, np.uint64):
        assert losses.softmax_cross_entropy.value(LOGITS, LABELS.astype(dtype)) == ref
        _, pullback = losses.softmax_cross_entropy.vjp(LOGITS, LABELS.astype(dtype))
        np.testing.assert_array_equal(pullback(1.0), losses.softmax_cross_entropy.vjp(LOGITS, LABELS)[1](1.0))


def _integer_input_to_affine_gives_the_float_result():
    x_int = np.array([[1, 2], [3, -4]])
    got = AFFINE.apply(AFFINE_P, x_int)
    np.testing.assert_allclose(got, AFFINE.apply(AFFINE_P, x_int.astype(np.float32)), rtol=1e-6)


def _optimizers_on_read_only_and_strided_trees():
    params = {"W": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.float32)}
    grads = {"W": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3), "b": np.full(3, 0.25, np.float32)}
    odd_params = {"W": np.asfortranarray(params["W"]), "b": np.repeat(params["b"], 2)[::2]}
    odd_grads = {"W": np.ascontiguousarray(grads["W"].T).T, "b": readonly(np.repeat(grads["b"], 2)[::2])}
    for opt in [optim.sgd(0.1), optim.momentum(0.1), optim.nesterov(0.1), optim.nesterov(0.1, form="standard"),
                optim.adagrad(0.1), optim.rmsprop(0.1), optim.adam(0.1), optim.adam(0.1, form="standard"),
                optim.with_clipping(optim.adam(0.1), 0.5)]:
        state = opt.init(params)
        ref_p, ref_s = opt.update(params, grads, state)
        ref_p, ref_s = opt.update(ref_p, grads, ref_s)
        p, s = opt.update(readonly(odd_params), odd_grads, readonly(opt.init(readonly(odd_params))))
        p, s = opt.update(readonly(p), readonly(odd_grads), readonly(s))
        chex.assert_trees_all_close(p, ref_p, rtol=1e-6)
        chex.assert_trees_all_equal_dtypes(p, ref_p)
        chex.assert_trees_all_close(tree.leaves(s), tree.leaves(ref_s), rtol=1e-6)


def _fit_on_odd_layouts_and_label_forms_is_bit_identical():
    from funcnet.datasets import spiral

    x, t = spiral.load_data(dtype="float32", one_hot=False)
    one_hot = (t[:, None] == np.arange(3)).astype(np.int32)
    ref, _ = train.fit(STEP, STATE, x, t, epochs=2, batch_size=30, progress=False)
    for xv, tv in [(readonly(x), readonly(t)), (np.asfortranarray(x), t.astype(np.uint8)),
                   (np.repeat(x, 2, axis=0)[::2], np.repeat(t, 2)[::2].astype(np.int64)), (x, one_hot),
                   (x.astype(np.float64), one_hot.astype(np.float32))]:
        got, _ = train.fit(STEP, STATE, xv, tv, epochs=2, batch_size=30, progress=False)
        chex.assert_trees_all_equal(got.params, ref.params)


def _fit_on_integer_x_equals_fit_on_the_same_floats():
    x_int = np.round(DATA_X * 3).astype(np.int64)
    got, _ = train.fit(STEP, STATE, x_int, DATA_T, **FIT)
    ref, _ = train.fit(STEP, STATE, x_int.astype(np.float32), DATA_T, **FIT)
    chex.assert_trees_all_equal(got, ref)


def _fit_with_batch_size_equal_to_the_data():
    state, history = train.fit(STEP, STATE, DATA_X, DATA_T, epochs=3, batch_size=40, eval_interval=1, progress=False)
    assert state.step == 3 and history["step"] == [1, 2, 3]


def _evaluate_moves_targets_to_the_params_backend() -> None:
    params = backend.put(STATE.params, "jax")
    got = train.evaluate(MODEL, params, DATA_X, DATA_T)  # x and t on the host, params on jax
    want = train.evaluate(MODEL, STATE.params, DATA_X, DATA_T)
    assert got["accuracy"] == want["accuracy"]
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)


def _predict_and_evaluate_on_odd_inputs():
    ref = train.predict(MODEL, STATE.params, DATA_X)
    for xv in _variants(DATA_X):
        np.testing.assert_array_equal(train.predict(MODEL, readonly(STATE.params), xv, batch_size=7), ref)
    np.testing.assert_array_equal(train.predict(MODEL, STATE.params, DATA_X, batch_size=1000), ref)
    # x on another backend is moved to the params' backend (predict's documented behaviour)
    moved = train.predict(MODEL, STATE.params, strict(DATA_X))
    assert isinstance(moved, np.ndarray)
    np.testing.assert_array_equal(moved, ref)
    one_hot = (DATA_T[:, None] == np.arange(3)).astype(np.int32)
    assert train.evaluate(MODEL, STATE.params, DATA_X, one_hot) == train.evaluate(MODEL, STATE.params, DATA_X, DATA_T)


def _fit_moves_data_of_another_backend_to_the_params():
    ref, ref_history = train.fit(STEP, STATE, DATA_X, DATA_T, **FIT)
    mixed, history = train.fit(STEP, STATE, strict(DATA_X), DATA_T, **FIT)  # x elsewhere, t on NumPy
    chex.assert_trees_all_equal(mixed, ref)
    on_strict, strict_history = train.fit(STEP, strict(STATE), DATA_X, strict(DATA_T), **FIT)
    chex.assert_trees_all_equal(backend.to_numpy(on_strict.params), ref.params)
    assert history["loss"] == strict_history["loss"] == ref_history["loss"]


def _checkpoint_of_odd_layouts_round_trips():
    odd = {"f": np.asfortranarray(np.arange(12.0).reshape(3, 4)), "s": np.arange(10, dtype=np.int32)[::3],
           "r": readonly(np.ones((2, 2), np.float32)), "t": np.arange(6.0).reshape(2, 3).T,
           "x": strict(np.arange(3, dtype=np.float32))}
    path = _save(odd)
    back = checkpoint.load(path, tree.map(lambda a: backend.namespace(a).zeros_like(a), odd))
    for k in odd:
        np.testing.assert_array_equal(backend.to_numpy(back[k]), backend.to_numpy(odd[k]))
        assert backend.namespace(back[k]) is backend.namespace(odd[k])


def _fit_accepts_numpy_ints_for_every_count():
    state, history = train.fit(STEP, STATE, DATA_X, DATA_T, epochs=np.int64(1), batch_size=np.int32(8),
                               eval_interval=np.int64(5), progress=False)
    assert state.step == 5 and history["step"] == [5]


def _dropout_accepts_a_numpy_float_rate():
    assert layers.Dropout(np.float32(0.5)).apply((), X, rng=KEY).shape == X.shape


def _skip_counts_the_dropped_steps():
    bad = DATA_X.copy()
    bad[:8] = np.nan  # some batches hold a NaN row, others not
    state, history = train.fit(STEP, STATE, bad, DATA_T, validate=False, on_nonfinite="skip", epochs=2,
                               batch_size=8, progress=False)
    assert 0 < history["skipped"] < 10 and state.step == 10
    assert train.nonfinite_leaf(state) is None


def _accuracy_of_a_label_column_and_of_a_binary_model():
    assert train.accuracy(LOGITS, LABELS[:, None]) == train.accuracy(LOGITS, LABELS)
    assert train.accuracy(LOGITS, LABELS[:, None].astype(np.int8)) == train.accuracy(LOGITS, LABELS)
    logits = np.array([[2.0], [-1.0], [0.5], [-3.0]], np.float32)
    assert train.accuracy(logits, np.array([1, 0, 0, 0])) == 0.75  # not 1.0 by an arg-max over one column
    assert train.accuracy(logits, np.array([[1.0], [0.0], [1.0], [0.0]], np.float32)) == 1.0
    # the threshold is "positive": a logit of 0 (or -0) is class 0
    assert train.accuracy(np.array([[0.0], [-0.0], [1e-9]]), np.array([0, 0, 1])) == 1.0


def _random_split_zero_is_empty():
    keys = random.split(KEY, 0)
    assert keys.shape == (0, 2) and keys.dtype == np.uint32
    assert np.array_equal(random.fold_in(KEY, np.int64(3)), random.fold_in(KEY, 3))
    assert np.array_equal(random.fold_in(KEY, np.asarray(3, np.uint32)), random.fold_in(KEY, 3))
    assert random.normal(KEY, 3).shape == (3,)


def _sce_pullback_keeps_float32_under_a_numpy_float64_dloss():
    _, pullback = losses.softmax_cross_entropy.vjp(LOGITS, LABELS)
    assert pullback(np.float64(2.0)).dtype == np.float32


HANDLED = [
    pytest.param(_layers_on_odd_layouts, id="layers: read-only, Fortran, strided inputs and cotangents"),
    pytest.param(_losses_on_odd_layouts, id="losses: read-only, Fortran, strided logits and targets"),
    pytest.param(_label_dtypes_all_give_the_same_loss, id="losses: every integer label dtype"),
    pytest.param(_integer_input_to_affine_gives_the_float_result, id="Affine: integer input"),
    pytest.param(_optimizers_on_read_only_and_strided_trees, id="optim: read-only and strided trees"),
    pytest.param(_fit_on_odd_layouts_and_label_forms_is_bit_identical,
                 id="fit: read-only, Fortran, strided x; label dtypes; one-hot"),
    pytest.param(_fit_on_integer_x_equals_fit_on_the_same_floats, id="fit: integer x"),
    pytest.param(_fit_with_batch_size_equal_to_the_data, id="fit: batch_size equal to the data size"),
    pytest.param(_fit_moves_data_of_another_backend_to_the_params, id="fit: data on another backend than params"),
    pytest.param(_evaluate_moves_targets_to_the_params_backend, id="evaluate: t on another backend"),
    pytest.param(_predict_and_evaluate_on_odd_inputs, id="predict, evaluate: odd layouts, another backend"),
    pytest.param(_checkpoint_of_odd_layouts_round_trips, id="checkpoint: odd layouts and a second backend"),
    pytest.param(_random_split_zero_is_empty, id="random: split 0, fold_in NumPy integers, int shape"),
    pytest.param(_sce_pullback_keeps_float32_under_a_numpy_float64_dloss,
                 id="sce pullback: NumPy float64 dloss keeps float32"),
    pytest.param(_fit_accepts_numpy_ints_for_every_count, id="fit: NumPy integers for epochs, batch_size, eval_interval"),
    pytest.param(_accuracy_of_a_label_column_and_of_a_binary_model, id="accuracy: (N, 1) labels, one-logit models"),
    pytest.param(_dropout_accepts_a_numpy_float_rate, id="Dropout: a NumPy float rate"),
    pytest.param(_skip_counts_the_dropped_steps, id="fit: skip counts the dropped steps"),
]


@pytest.mark.parametrize("check", HANDLED)
def test_odd_but_valid_input_is_handled_correctly(check):
    check()
