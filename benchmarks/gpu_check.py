"""The device check: funcnet on a GPU backend (CuPy) compared with NumPy, trained, and timed.

    python -m benchmarks.gpu_check                             # CuPy on the current GPU
    python -m benchmarks.gpu_check --markdown docs/gpu-results.md
    python -m benchmarks.gpu_check --backend numpy --quick     # a dry run of the script itself (CI)
    python benchmarks/gpu_check.py --backend array_api_strict --quick

It checks, in order:

1. every layer's ``apply`` and ``vjp``, every loss's ``value`` and ``vjp`` and every optimizer's
   update on the target backend against the same function on NumPy, float32, within a stated
   relative error bound; Dropout's mask (drawn, scaled, reused by the pullback);
2. the seed's spiral run (``TwoLayerNet(2, 10, 3)``, SGD lr 1.0, batch 30, 300 epochs) with the
   data put on the device once: its loss, its accuracy, its loss against the NumPy run's, and a
   checkpoint saved from the device and loaded back onto it;
3. the time of the large MLP's training step (784-1024-1024-10) against the time of its matrix
   products alone on the same backend in the same run, and against NumPy on the host;
4. a short summary table, last (also written as Markdown with ``--markdown PATH``).

Exit status: 0 when every check is within its bound, 1 when one is not, 2 when the backend is
unavailable (the reason is printed on one line). CuPy is imported only for ``--backend cupy``.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as ``python benchmarks/gpu_check.py``: find funcnet beside us
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from benchmarks.machine import cpu_model
from funcnet import backend, checkpoint, layers, losses, optim, random, schedules, train, tree
from funcnet.datasets import spiral
from funcnet.models import TwoLayerNet

BACKENDS = ("cupy", "numpy", "jax", "array_api_strict")

# --- the bounds -------------------------------------------------------------------------------

ELEMENTWISE = 1e-5
MATMUL = 1e-4
SPIRAL_LOSS = 0.15
SPIRAL_ACCURACY = 0.95
SPIRAL_VS_NUMPY = 1e-3
DROPOUT_SIGMAS = 6.0

BOUNDS_TEXT = f"""\
error = max|device - numpy| / (max|numpy| + tiny), in float64 over float32 results, the worst leaf of the tree.
* elementwise ops, small reductions and optimizer updates: error <= {ELEMENTWISE:g}. float32's eps is 1.2e-7;
  CUDA's expf/logf/tanhf are within 2 ulp and the GPU compiler fuses a*b+c into one FMA, so a chain of
  ~10 operations may differ by ~20 ulp (2.4e-6); sums of <= 1024 terms in another order add ~log2(n) ulp.
  {ELEMENTWISE:g} is ~80 ulp: round-off passes, a wrong formula (off by 1e-3 or more) does not.
* matrix products (MatMul, Affine, stacks): error <= {MATMUL:g}. cuBLAS adds the K products of each dot
  product in another (blocked, split-K) order; float32's error bound is ~K*eps relative to sum|a*b|, at
  most 3e-5 for the K <= 256 used here (about sqrt(K)*eps, 2e-6, in practice). TF32 (CUPY_TF32=1 or
  NVIDIA_TF32_OVERRIDE) keeps 10 mantissa bits, errors ~1e-3: it fails this bound by design.
* spiral training: final loss < {SPIRAL_LOSS}, accuracy >= {SPIRAL_ACCURACY} (the book's result), and
  |loss - numpy loss| / numpy loss <= {SPIRAL_VS_NUMPY:g}: 3000 float32 SGD steps at lr 1.0 drift apart by
  round-off (4e-7 between NumPy and jax on a CPU), a wrong step by far more.
* Dropout: every output 0 or 1/(1 - rate), the kept fraction within {DROPOUT_SIGMAS:g} binomial standard
  deviations of 1 - rate, the pullback using the forward pass's mask, and the mask NumPy's, bit for bit
  (one key, one mask on every backend: a counter-based hash in uint32 integer operations)."""


# --- results ----------------------------------------------------------------------------------


@dataclass
class Row:
    """One check: ``value`` compared with ``bound`` by ``relation``."""

    part: str
    name: str
    value: float
    bound: float
    relation: str = "<="
    note: str = ""

    @property
    def ok(self) -> bool:
        if math.isnan(self.value):
            return False
        if self.relation == "<=":
            return self.value <= self.bound
        if self.relation == "<":
            return self.value < self.bound
        if self.relation == ">=":
            return self.value >= self.bound
        raise ValueError(f"unknown relation {self.relation!r}")

    def line(self) -> str:
        status = "ok" if self.ok else "FAIL"
        text = f"  {status:4}  {self.part:10}  {self.name:38}  {self.value:10.3g} {self.relation} {self.bound:g}"
        return f"{text}  {self.note}" if self.note else text


@dataclass
class Timing:
    """The large MLP's step at one batch size: seconds per call, medians over rounds."""

    batch: int
    step: float
    gemm: float
    ratio: float  # step / gemm: the median of the same-round ratios
    host_step: float
    gemm_flop: float


@dataclass
class Report:
    backend: str
    device: str
    quick: bool
    rows: list[Row] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    mlp: str = ""

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)


# --- comparing trees ----------------------------------------------------------------------------


def relative_error(got: Any, want: Any) -> tuple[float, str]:
    """``(error, note)``: the worst leaf's ``max|got - want| / (max|want| + tiny)``.

    A structure, shape or dtype mismatch, or unequal integer leaves, are an infinite error with
    a note saying where.
    """
    got_leaves, got_spec = tree.flatten(got)
    want_leaves, want_spec = tree.flatten(want)
    if got_spec != want_spec:
        return math.inf, f"tree structure {got_spec} != {want_spec}"
    worst, where = 0.0, ""
    for path, g, w in zip(tree.paths(want), got_leaves, want_leaves, strict=True):
        g, w = np.asarray(backend.to_numpy(g)), np.asarray(backend.to_numpy(w))
        if g.shape != w.shape:
            return math.inf, f"{path}: shape {g.shape}, expected {w.shape}"
        if g.dtype != w.dtype:
            return math.inf, f"{path}: dtype {g.dtype}, expected {w.dtype}"
        if w.dtype.kind != "f":
            if not np.array_equal(g, w):
                return math.inf, f"{path}: integer values differ"
            continue
        g64, w64 = g.astype(np.float64), w.astype(np.float64)
        scale = float(np.max(np.abs(w64), initial=0.0)) + float(np.finfo(w.dtype).tiny)
        err = float(np.max(np.abs(g64 - w64), initial=0.0)) / scale
        if not math.isfinite(err):
            return math.inf, f"{path}: not finite"
        if err > worst:
            worst, where = err, path
    return worst, (f"worst at {where}" if where and where != "<root>" else "")


def off_device(out: Any, name: str) -> str:
    """A note naming the first leaf of ``out`` that is not an array of backend ``name`` (else "")."""
    if name == "numpy":
        return ""
    for path, leaf in tree.leaves_with_paths(out):
        try:
            found = backend.name_of(backend.namespace(leaf))
        except TypeError:
            found = type(leaf).__name__
        if found != name:
            return f"{path} came back as {found}, not {name}"
    return ""


def compare(part: str, name: str, got: Any, want: Any, bound: float, backend_name: str) -> Row:
    err, note = relative_error(got, want)
    moved = off_device(got, backend_name)
    if moved:
        err, note = math.inf, moved
    return Row(part, name, err, bound, "<=", note)


def error_row(part: str, name: str, bound: float, err: Exception, relation: str = "<=") -> Row:
    """A failed row for a check that raised, naming the exception and where: the innermost line of
    funcnet that led to it, and the line that raised it when that is elsewhere (inside cupy, say)."""
    frames = traceback.extract_tb(err.__traceback__)

    def short(frame: traceback.FrameSummary) -> str:
        parts = Path(frame.filename).parts
        return f"{'/'.join(parts[-2:])}:{frame.lineno}"

    ours = [f for f in frames if f"{os.sep}funcnet{os.sep}" in f.filename]
    where = short(ours[-1]) if ours else short(frames[-1])
    if ours and ours[-1] is not frames[-1]:
        where += f" (raised in {short(frames[-1])})"
    message = f"{type(err).__name__} at {where}: {err}".replace("\n", " ")
    return Row(part, name, math.nan, bound, relation, message[:300])


def guarded(part: str, name: str, bound: float, check: Callable[[], list[Row] | Row],
            relation: str = "<=") -> list[Row]:
    """Run one check; an exception becomes a failed row naming it (the run goes on)."""
    try:
        result = check()
    except Exception as err:
        return [error_row(part, name, bound, err, relation)]
    return result if isinstance(result, list) else [result]


# --- part 1: layers, losses, optimizers -----------------------------------------------------------

BATCH = 64


def _normal(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)).astype(np.float32)


def layer_cases() -> list[tuple[str, layers.Layer, tuple[int, ...], float, float]]:
    """``(name, layer, per-example input shape, input scale, bound)``."""
    stack = layers.serial(
        layers.Flatten(), layers.Affine(64), layers.Sigmoid(), layers.Affine(32), layers.ReLU(),
        layers.MatMul(16), layers.Tanh(), layers.Dropout(0.5), layers.Affine(10), layers.Softmax(),
    )
    return [
        ("MatMul", layers.MatMul(64), (128,), 1.0, MATMUL),
        ("Affine", layers.Affine(64), (128,), 1.0, MATMUL),
        ("Sigmoid", layers.Sigmoid(), (128,), 4.0, ELEMENTWISE),
        ("ReLU", layers.ReLU(), (128,), 1.0, ELEMENTWISE),
        ("Tanh", layers.Tanh(), (128,), 2.0, ELEMENTWISE),
        ("Softmax", layers.Softmax(), (128,), 3.0, ELEMENTWISE),
        ("Dropout(rng=None)", layers.Dropout(0.3), (128,), 1.0, ELEMENTWISE),
        ("Flatten", layers.Flatten(), (4, 8, 4), 1.0, ELEMENTWISE),
        ("serial stack", stack, (4, 8, 4), 1.0, MATMUL),
    ]


def check_layers(name: str, seed: int = 0) -> list[Row]:
    rows = []
    for i, (label, layer, in_shape, scale, bound) in enumerate(layer_cases()):
        rng = np.random.default_rng(seed + i)
        _, params = layer.init(random.key(seed + i), in_shape)
        x = _normal(rng, (BATCH, *in_shape), scale)
        params_d, x_d = backend.put((params, x), name)

        def apply(layer=layer, params=params, x=x, params_d=params_d, x_d=x_d, label=label, bound=bound):
            return compare("layers", f"{label} apply", layer.apply(params_d, x_d), layer.apply(params, x),
                           bound, name)

        def vjp(layer=layer, params=params, x=x, params_d=params_d, x_d=x_d, label=label, bound=bound,
                rng=rng):
            y, pullback = layer.vjp(params, x)
            dy = _normal(rng, tuple(y.shape))
            y_d, pullback_d = layer.vjp(params_d, x_d)
            want = (y, pullback(dy))
            got = (y_d, pullback_d(backend.put(dy, name)))
            return compare("layers", f"{label} vjp", got, want, bound, name)

        rows += guarded("layers", f"{label} apply", bound, apply)
        rows += guarded("layers", f"{label} vjp", bound, vjp)
    return rows


def loss_cases(rng: np.random.Generator) -> list[tuple[str, losses.Loss, np.ndarray, np.ndarray]]:
    """``(name, loss, logits, targets)`` on the host."""
    classes = 10
    logits = _normal(rng, (BATCH, classes), 3.0)
    labels = rng.integers(0, classes, BATCH).astype(np.int32)
    one_hot = (labels[:, None] == np.arange(classes)).astype(np.int32)
    probabilities = rng.random((BATCH, classes), dtype=np.float32)
    return [
        ("softmax_cross_entropy[labels]", losses.softmax_cross_entropy, logits, labels),
        ("softmax_cross_entropy[one-hot]", losses.softmax_cross_entropy, logits, one_hot),
        ("book_softmax_cross_entropy", losses.book_softmax_cross_entropy, logits, labels),
        ("sigmoid_binary_cross_entropy", losses.sigmoid_binary_cross_entropy, logits, probabilities),
        ("mean_squared_error", losses.mean_squared_error, logits, probabilities),
    ]


def check_losses(name: str, seed: int = 0) -> list[Row]:
    rows = []
    for label, loss, logits, targets in loss_cases(np.random.default_rng(seed)):
        logits_d, targets_d = backend.put((logits, targets), name)

        def value(loss=loss, logits=logits, targets=targets, logits_d=logits_d, targets_d=targets_d,
                  label=label):
            return compare("losses", f"{label} value", loss.value(logits_d, targets_d),
                           loss.value(logits, targets), ELEMENTWISE, name)

        def vjp(loss=loss, logits=logits, targets=targets, logits_d=logits_d, targets_d=targets_d,
                label=label):
            v, pullback = loss.vjp(logits, targets)
            v_d, pullback_d = loss.vjp(logits_d, targets_d)
            return compare("losses", f"{label} vjp", (v_d, pullback_d(1.0)), (v, pullback(1.0)),
                           ELEMENTWISE, name)

        rows += guarded("losses", f"{label} value", ELEMENTWISE, value)
        rows += guarded("losses", f"{label} vjp", ELEMENTWISE, vjp)
    return rows


def optimizer_cases() -> list[tuple[str, optim.Optimizer]]:
    return [
        ("sgd", optim.sgd(0.1)),
        ("momentum", optim.momentum(0.1, 0.9)),
        ("nesterov[book]", optim.nesterov(0.1, 0.9, form="book")),
        ("nesterov[standard]", optim.nesterov(0.1, 0.9, form="standard")),
        ("adagrad", optim.adagrad(0.1)),
        ("rmsprop", optim.rmsprop(0.01)),
        ("adam[book]", optim.adam(0.01, form="book")),
        ("adam[standard]", optim.adam(0.01, form="standard")),
        ("adam[cosine_decay schedule]", optim.adam(schedules.cosine_decay(0.01, 10))),
        ("chain(clip_by_global_norm, sgd)", optim.chain(optim.clip_by_global_norm(1.0), optim.sgd(0.1))),
    ]


OPTIMIZER_STEPS = 3  # more than one, so that bias corrections and slots at t > 1 are compared


def check_optimizers(name: str, seed: int = 0) -> list[Row]:
    rng = np.random.default_rng(seed)
    params = ({"W": _normal(rng, (64, 32)), "b": _normal(rng, (32,))}, (), {"W": _normal(rng, (32, 10))})
    grads = [tree.map(lambda p: _normal(rng, p.shape), params) for _ in range(OPTIMIZER_STEPS)]
    rows = []
    for label, opt in optimizer_cases():

        def check(opt=opt, label=label):
            p, s = params, opt.init(params)
            p_d = backend.put(params, name)
            s_d = opt.init(p_d)
            for g in grads:
                p, s = opt.update(p, g, s)
                p_d, s_d = opt.update(p_d, backend.put(g, name), s_d)
            return compare("optimizers", label, (p_d, s_d), (p, s), ELEMENTWISE, name)

        rows += guarded("optimizers", label, ELEMENTWISE, check)
    return rows


def check_dropout_mask(name: str, quick: bool) -> list[Row]:
    """The mask drawn under a key: values, kept fraction, the same mask in the pullback."""
    rate = 0.25
    keep = 1.0 - rate
    shape = (64, 128) if quick else (256, 512)
    layer = layers.Dropout(rate)
    key = random.key(11)

    def check() -> list[Row]:
        x = backend.put(np.ones(shape, np.float32), name)
        y = layer.apply((), x, rng=key)
        host = np.asarray(backend.to_numpy(y))
        scale = np.float32(1.0 / keep)
        rows = []
        bad = int(np.sum((host != 0) & ~np.isclose(host, scale, rtol=2.0**-22, atol=0.0)))
        rows.append(Row("dropout", "mask values 0 or 1/(1-rate)", bad, 0, "<=",
                        f"{bad} other values" if bad else ""))
        kept = float(np.mean(host != 0))
        sigma = math.sqrt(keep * rate / host.size)
        rows.append(Row("dropout", "kept fraction (sigmas from 1-rate)", abs(kept - keep) / sigma,
                        DROPOUT_SIGMAS, "<=", f"kept {kept:.4f} of {host.size}"))
        again = backend.to_numpy(layer.apply((), x, rng=key))
        other = backend.to_numpy(layer.apply((), x, rng=random.key(12)))
        same_key = float(np.array_equal(again, host)) + float(not np.array_equal(other, host))
        rows.append(Row("dropout", "same key same mask, other key other", same_key, 2.0, ">="))
        dy = _normal(np.random.default_rng(3), shape)
        y2, pullback = layer.vjp((), x, rng=key)
        (_, dx) = pullback(backend.put(dy, name))
        err, note = relative_error((y2, dx), (host, (dy * host).astype(np.float32)))
        moved = off_device((y2, dx), name)
        rows.append(Row("dropout", "vjp reuses the mask", math.inf if moved else err, ELEMENTWISE, "<=",
                        moved or note))
        # one key, one mask: the counter-based hash gives NumPy's mask bit for bit on every backend
        host_mask = backend.to_numpy(layer.apply((), np.ones(shape, np.float32), rng=key))
        differ = int(np.sum(host_mask != host))
        rows.append(Row("dropout", "same mask as NumPy's (elements differing)", differ, 0, "<=",
                        f"{differ} of {host.size} differ" if differ else "bit for bit"))
        return rows

    return guarded("dropout", "mask", 0.0, check)


# --- part 2: the seed's spiral, trained on the device ---------------------------------------------

SPIRAL_EPOCHS = 300


def _spiral_run(name: str) -> tuple[Any, Any, dict[str, Any], Any]:
    x, t = spiral.load_data()
    model = TwoLayerNet(2, 10, 3)
    opt = optim.sgd(1.0)
    step = train.make_train_step(model, losses.softmax_cross_entropy, opt)
    start = train.init_state(model, opt, random.key(0), (2,), backend=name)
    x_d, t_d = backend.put((x.astype(np.float32), t), name)  # onto the device once
    state, history = train.fit(step, start, x_d, t_d, epochs=SPIRAL_EPOCHS, batch_size=30,
                               eval_interval=10, progress=False)
    history["accuracy"] = train.evaluate(model, state.params, x_d, t_d)["accuracy"]
    history["data"] = (x_d, t_d)
    return start, state, history, step


def check_spiral(name: str, report: Report) -> list[Row]:
    rows: list[Row] = []
    try:
        start, state, history, step = _spiral_run(name)
        _, _, reference, _ = _spiral_run("numpy")
    except Exception as err:
        return [error_row("spiral", "training", SPIRAL_LOSS, err, "<")]
    loss, ref_loss = history["loss"][-1], reference["loss"][-1]
    report.notes.append(f"spiral: {SPIRAL_EPOCHS} epochs in {history['time']:.2f} s on {name} "
                        f"({reference['time']:.2f} s on numpy)")
    rows.append(Row("spiral", "final loss", loss, SPIRAL_LOSS, "<", f"numpy {ref_loss:.6f}"))
    rows.append(Row("spiral", "accuracy", history["accuracy"], SPIRAL_ACCURACY, ">=",
                    f"numpy {reference['accuracy']:.3f}"))
    rows.append(Row("spiral", "final loss vs numpy (relative)", abs(loss - ref_loss) / ref_loss,
                    SPIRAL_VS_NUMPY, "<="))
    moved = off_device(state.params, name)
    rows.append(Row("spiral", "params stay on the device", math.inf if moved else 0.0, 0.0, "<=", moved))
    rows += guarded("checkpoint", "save from device, load to device", 0.0,
                    lambda: _check_checkpoint(name, start, state, step, history["data"]))
    return rows


def _check_checkpoint(name: str, start: Any, state: Any, step: Callable, data: tuple[Any, Any]) -> list[Row]:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "spiral.safetensors")
        checkpoint.save(path, state)
        loaded = checkpoint.load(path, like=start)  # a fresh state as the template, as users do
    # the values are the saved state's, bit for bit; the types and dtypes are the template's
    # (after a jax epoch scan the saved state's key and step are jax arrays, the template's are not)
    host = backend.to_numpy
    exact = tree.structure(loaded) == tree.structure(start) and all(
        type(got) is type(like) and np.asarray(host(got)).dtype == np.asarray(host(like)).dtype
        and np.array_equal(host(got), host(saved))
        for got, like, saved in zip(tree.leaves(loaded), tree.leaves(start), tree.leaves(state), strict=True)
    )
    moved = off_device(loaded.params, name) or off_device(loaded.opt_state, name)
    rows = [Row("checkpoint", "save from device, load to device", 0.0 if exact and not moved else math.inf,
                0.0, "<=", moved or ("bit for bit, the template's array types" if exact
                                     else "the loaded state differs from the saved one"))]
    # one more epoch from the loaded state and from the original must agree (round-off aside)
    x_d, t_d = data
    go_on = {"epochs": 1, "batch_size": 30, "eval_interval": 10, "progress": False}
    resumed, _ = train.fit(step, loaded, x_d, t_d, **go_on)
    continued, _ = train.fit(step, state, x_d, t_d, **go_on)
    rows.append(compare("checkpoint", "resume from it = go on", resumed.params, continued.params,
                        ELEMENTWISE, name))
    return rows


# --- part 3: timing the large MLP's step ----------------------------------------------------------

MLP_DIMS = (784, 1024, 1024, 10)
QUICK_DIMS = (64, 128, 128, 10)
BATCHES = (256, 4096)
QUICK_BATCHES = (16, 64)


def synchronizer(name: str) -> Callable[[Any], None]:
    """``sync(out)``: waits until the device has finished the work that produced ``out``."""
    if name == "cupy":
        import cupy

        return lambda _out: cupy.cuda.get_current_stream().synchronize()
    if name == "jax":
        import jax

        return lambda out: jax.block_until_ready(out)
    return lambda _out: None  # NumPy and array_api_strict compute eagerly on the host


def interleaved_seconds(contenders: dict[str, Callable[[], Any]], sync: Callable[[Any], None], *,
                        warmup: int, rounds: int, inner: int) -> dict[str, list[float]]:
    """Seconds per call of each contender, one sample per round: ``inner`` calls and one sync.

    Every round runs each contender in turn, so that a slow spell of the machine hits all of
    them alike; compare them by the median of the same-round ratios.
    """
    for fn in contenders.values():
        for _ in range(warmup):
            sync(fn())
    samples: dict[str, list[float]] = {label: [] for label in contenders}
    for _ in range(rounds):
        for label, fn in contenders.items():
            began = time.perf_counter()
            for _ in range(inner):
                out = fn()
            sync(out)
            samples[label].append((time.perf_counter() - began) / inner)
    return samples


def mlp(activation: str, dims: tuple[int, ...]) -> layers.Layer:
    act = {"sigmoid": layers.Sigmoid, "relu": layers.ReLU}[activation]
    return layers.serial(layers.Affine(dims[1]), act(), layers.Affine(dims[2]), act(), layers.Affine(dims[3]))


def gemm_flop(batch: int, dims: tuple[int, ...]) -> float:
    """The step's matrix products: three forward, three weight gradients, two input gradients."""
    d0, d1, d2, d3 = dims
    forward = batch * (d0 * d1 + d1 * d2 + d2 * d3)
    return 2.0 * (2 * forward + batch * (d3 * d2 + d2 * d1))


def step_and_gemms(name: str, activation: str, dims: tuple[int, ...], batch: int) -> dict[str, Callable]:
    """``{"step": ..., "gemm": ...}``: one training step of the MLP on backend ``name`` (threading its
    state from call to call), and the step's eight matrix products alone on arrays of the same shapes."""
    rng = np.random.default_rng(batch)
    model = mlp(activation, dims)
    opt = optim.sgd(0.01)
    step = train.make_train_step(model, losses.softmax_cross_entropy, opt)
    state = train.init_state(model, opt, random.key(1), (dims[0],), backend=name)
    x = _normal(rng, (batch, dims[0]))
    labels = rng.integers(0, dims[3], batch).astype(np.int32)
    batch_d = backend.put((x, labels), name)
    current = state

    def one_step():
        nonlocal current
        current, _ = step(current, batch_d)
        return current.params

    mm = backend.get(name).matmul
    W1, W2, W3 = (state.params[i]["W"] for i in (0, 2, 4))
    h1, h2, dh1, dh2 = backend.put(tuple(_normal(rng, (batch, dims[k])) for k in (1, 2, 1, 2)), name)
    dy = backend.put(_normal(rng, (batch, dims[3])), name)
    x_d = batch_d[0]

    def gemms():
        # the step's products with its transposed views: forward, then dW3, dh2, dW2, dh1, dW1
        return (mm(x_d, W1), mm(h1, W2), mm(h2, W3),
                mm(h2.T, dy), mm(dy, W3.T), mm(h1.T, dh2), mm(dh2, W2.T), mm(x_d.T, dh1))

    return {"step": one_step, "gemm": gemms}


def is_out_of_memory(err: BaseException) -> bool:
    """True for an allocation failure of any backend: MemoryError, cupy's OutOfMemoryError,
    jax's RESOURCE_EXHAUSTED, CUDA's cudaErrorMemoryAllocation."""
    if isinstance(err, MemoryError) or "OutOfMemory" in type(err).__name__:
        return True
    text = str(err)
    return any(sign in text for sign in ("RESOURCE_EXHAUSTED", "out of memory", "cudaErrorMemoryAllocation"))


def free_device_memory(name: str) -> None:
    """Drop what the failed batch left behind and hand cupy's cached blocks back to the driver."""
    gc.collect()
    if name == "cupy":
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()


class OutOfDeviceMemoryError(RuntimeError):
    """The large MLP did not fit at ``batch``; ``timings`` holds the batch sizes timed before it."""

    def __init__(self, batch: int, timings: list[Timing], label: str, cause: str) -> None:
        super().__init__(f"out of memory at batch {batch} ({cause}); memory pool freed, "
                         f"{len(timings)} smaller batch size(s) kept")
        self.batch, self.timings, self.label = batch, timings, label


def time_mlp(name: str, activation: str, quick: bool) -> tuple[list[Timing], str]:
    """The large MLP's step and its GEMMs at each batch size, smallest first.

    An out-of-memory error frees the memory pool and raises :class:`OutOfDeviceMemoryError`, which
    carries the batch sizes already timed.
    """
    dims = QUICK_DIMS if quick else MLP_DIMS
    batches = QUICK_BATCHES if quick else BATCHES
    on_host = name in ("numpy", "array_api_strict")
    device = {"warmup": 1 if quick else 3, "rounds": 3 if quick else 9, "inner": 1 if on_host or quick else 10}
    host = {"warmup": 1, "rounds": 3 if quick else 5, "inner": 1}
    label = f"{'-'.join(map(str, dims))} {activation}, float32, SGD, softmax_cross_entropy on labels"
    timings: list[Timing] = []
    for batch in batches:
        failure = None
        try:
            samples = interleaved_seconds(step_and_gemms(name, activation, dims, batch), synchronizer(name),
                                          **device)
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            failure = f"{type(err).__name__}: {err}"
        if failure is not None:  # out of the except block: the error's frames (the batch's arrays) are gone
            free_device_memory(name)
            raise OutOfDeviceMemoryError(batch, timings, label, failure)
        if name == "numpy":
            host_s = statistics.median(samples["step"])
        else:
            host_step = step_and_gemms("numpy", activation, dims, batch)["step"]
            host_s = statistics.median(interleaved_seconds({"step": host_step}, synchronizer("numpy"), **host)["step"])
        timings.append(Timing(
            batch, statistics.median(samples["step"]), statistics.median(samples["gemm"]),
            statistics.median(a / b for a, b in zip(samples["step"], samples["gemm"], strict=True)),
            host_s, gemm_flop(batch, dims),
        ))
    return timings, label


# --- the device, and running it all -----------------------------------------------------------------


def describe_device(name: str) -> str:
    if name == "cupy":
        import cupy

        device = cupy.cuda.Device()
        card = cupy.cuda.runtime.getDeviceProperties(device.id)["name"]
        card = card.decode() if isinstance(card, bytes) else card
        runtime = cupy.cuda.runtime.runtimeGetVersion()
        tf32 = ", ".join(f"{k}={os.environ[k]}" for k in ("CUPY_TF32", "NVIDIA_TF32_OVERRIDE")
                         if k in os.environ) or "TF32 off (CUPY_TF32 unset)"
        return (f"{card} (GPU {device.id}; cupy {cupy.__version__}, CUDA runtime "
                f"{runtime // 1000}.{runtime % 1000 // 10}; {tf32})")
    if name == "jax":
        import jax

        first = jax.devices()[0]
        # on a GPU, jax's default float32 matmul precision may be TF32: JAX_DEFAULT_MATMUL_PRECISION=highest
        precision = jax.config.jax_default_matmul_precision or "default"
        return f"{first.device_kind} ({first.platform}; jax {jax.__version__}; matmul precision {precision})"
    return f"{cpu_model()} (host, {os.cpu_count()} cores; numpy {np.__version__})"


def run(name: str, *, quick: bool = False, activation: str = "sigmoid", timing: bool = True,
        log: Callable[[str], None] = print) -> Report:
    """All checks on backend ``name`` (which must be available); the report holds every row."""
    report = Report(name, describe_device(name), quick)
    log(f"funcnet device check: backend {name} on {report.device}")
    log(BOUNDS_TEXT)
    parts = [
        ("layers", lambda: check_layers(name)),
        ("losses", lambda: check_losses(name)),
        ("optimizers", lambda: check_optimizers(name)),
        ("dropout", lambda: check_dropout_mask(name, quick)),
        ("spiral", lambda: check_spiral(name, report)),
    ]
    for part, check in parts:
        began = time.perf_counter()
        rows = check()
        report.rows += rows
        for row in rows:
            log(row.line())
        log(f"  ({part}: {time.perf_counter() - began:.1f} s)")
    if timing:
        try:
            report.timings, report.mlp = time_mlp(name, activation, quick)
        except OutOfDeviceMemoryError as err:
            report.timings, report.mlp = err.timings, err.label
            report.rows.append(Row("timing", f"large MLP step, batch {err.batch}", math.nan, 0.0, "<=",
                                   str(err)[:300]))
            log(report.rows[-1].line())
        except Exception as err:
            report.rows.append(error_row("timing", "large MLP step", 0.0, err))
            log(report.rows[-1].line())
    return report


# --- the tables -------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"


def summary_rows(report: Report) -> list[list[str]]:
    """``[check, result, detail]`` rows: one per part of the comparisons, the spiral, each timing."""
    table = []
    for part in ("layers", "losses", "optimizers", "dropout", "spiral", "checkpoint", "timing"):
        rows = [row for row in report.rows if row.part == part]
        if not rows:
            continue
        failed = [row for row in rows if not row.ok]
        if failed:
            detail = "; ".join(f"{row.name}: {row.value:.3g} {row.relation} {row.bound:g} {row.note}".strip()
                               for row in failed[:3])
        elif part in ("layers", "losses", "optimizers"):
            worst = max(rows, key=lambda row: row.value / row.bound)
            detail = f"worst {worst.name}: {worst.value:.2g} (bound {worst.bound:g})"
        elif part == "spiral":
            value = {row.name: row for row in rows}
            loss, accuracy = value["final loss"], value["accuracy"]
            detail = (f"loss {loss.value:.4f} ({loss.note}), accuracy {accuracy.value:.3f}, relative "
                      f"difference {value['final loss vs numpy (relative)'].value:.2g}; params on the device")
        elif part == "dropout":
            kept = next(row for row in rows if row.name.startswith("kept"))
            detail = f"{kept.note} ({kept.value:.2g} sigmas from 1-rate); values, key, pullback as expected"
        else:
            detail = "; ".join(row.note or row.name for row in rows)
        status = f"FAIL {len(failed)}/{len(rows)}" if failed else f"ok {len(rows)}/{len(rows)}"
        table.append([part, status, detail])
    for t in report.timings:
        table.append([
            f"step, batch {t.batch}",
            f"{_ms(t.step)}",
            f"GEMMs alone {_ms(t.gemm)} (step/GEMM {t.ratio:.2f}x, GEMMs at "
            f"{t.gemm_flop / t.gemm / 1e12:.3g} TFLOP/s); NumPy on the host {_ms(t.host_step)} "
            f"({t.host_step / t.step:.3g}x the {report.backend} step)",
        ])
    return table


def text_table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header[:-1], widths, strict=True)) + "  " + header[-1]]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])
    return "\n".join(lines)


def markdown(report: Report) -> str:
    def table(header: list[str], rows: list[list[str]]) -> str:
        out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
        return "\n".join(out)

    verdict = "every check within its bound" if report.ok else "SOME CHECKS FAILED"
    parts = [
        f"# funcnet device check: {report.backend}",
        "",
        f"Device: {report.device}. {'Quick sizes. ' if report.quick else ''}Result: {verdict}.",
        "",
        "## Summary",
        "",
        table(["check", "result", "detail"], summary_rows(report)),
        "",
    ]
    if report.timings:
        parts += [
            f"## The large MLP's step ({report.mlp})",
            "",
            table(["batch", "step", "GEMMs alone", "step / GEMMs", "GEMM TFLOP/s", "NumPy host step",
                   "host / device"],
                  [[str(t.batch), _ms(t.step), _ms(t.gemm), f"{t.ratio:.2f}",
                    f"{t.gemm_flop / t.gemm / 1e12:.3g}", _ms(t.host_step), f"{t.host_step / t.step:.3g}"]
                   for t in report.timings]),
            "",
        ]
    parts += [
        "## Bounds",
        "",
        "```text",
        BOUNDS_TEXT,
        "```",
        "",
        "## Every check",
        "",
        table(["part", "check", "value", "bound", "result", "note"],
              [[r.part, r.name, f"{r.value:.3g}", f"{r.relation} {r.bound:g}", "ok" if r.ok else "FAIL",
                r.note] for r in report.rows]),
        "",
    ]
    if report.notes:
        parts += ["## Notes", "", *[f"* {note}" for note in report.notes], ""]
    return "\n".join(parts)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="cupy", choices=BACKENDS,
                   help="the backend to check against NumPy (default cupy; the others are dry runs)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (a CI dry run)")
    p.add_argument("--activation", default="sigmoid", choices=("sigmoid", "relu"),
                   help="the large MLP's activation (default sigmoid, the book's)")
    p.add_argument("--no-timing", action="store_true", help="the comparisons and the spiral only")
    p.add_argument("--markdown", type=Path, metavar="PATH", help="also write the report as Markdown here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        reason = backend.why_unavailable(args.backend)
    except Exception as err:  # e.g. an array_api_compat too old to wrap cupy
        reason = f"{type(err).__name__}: {err}"
    if reason is not None:
        print(f"gpu_check: backend {args.backend!r} is unavailable: {reason}", file=sys.stderr)
        return 2
    began = time.perf_counter()
    report = run(args.backend, quick=args.quick, activation=args.activation, timing=not args.no_timing)
    report.notes.append(f"the whole check took {time.perf_counter() - began:.1f} s")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(report))
    print()
    print(f"funcnet device check, {args.backend} on {report.device}" + (" (quick sizes)" if args.quick else ""))
    if report.mlp:
        print(f"large MLP: {report.mlp}")
    print(text_table(summary_rows(report), ["check", "result", "detail"]))
    failed = [row for row in report.rows if not row.ok]
    print(f"{len(report.rows) - len(failed)} of {len(report.rows)} checks within their bounds"
          + (f"; FAILED: {', '.join(f'{r.part}/{r.name}' for r in failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
