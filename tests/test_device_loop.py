"""fit on a device backend, by instrumentation: the loss crosses to the host only at records, the
batches are gathered and sliced on the device, and the same seed gives the same initial params
on every backend.

There is no GPU here; jax (with ``compile_epoch=False``, fit's per-step loop, the one cupy runs)
and array_api_strict stand in for it, and cupy runs the same tests where it is usable.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from conftest import backend_or_skip

from funcnet import backend, layers, optim, random, train, tree
from funcnet.datasets import spiral
from funcnet.losses import softmax_cross_entropy
from funcnet.models import TwoLayerNet
from funcnet.train import data as data_module
from funcnet.train import loop

DEVICES = ("jax", "cupy")  # the backends on which fit accumulates the loss on the device
EPOCHS, BATCH = 4, 30  # 300 points: 10 steps an epoch, 40 steps in all


@pytest.fixture(scope="module")
def data():
    x, t = spiral.load_data()
    return x.astype(np.float32), t


def setup(name: str | None, data: Any, opt: Any = None):
    model = TwoLayerNet(2, 10, 3)
    opt = opt or optim.sgd(1.0)
    step = train.make_train_step(model, softmax_cross_entropy, opt)
    state = train.init_state(model, opt, random.key(0), (2,), backend=name)
    x, t = data if name is None else backend.put(data, name)
    return step, state, x, t


def like(step, wrapped):
    """``wrapped``, a plain function: fit then makes only the generic data checks."""
    return wrapped


# --- the loss is read back only at records ----------------------------------------------------------


class DeviceScalar:
    """A stand-in for the step's loss on a device: arithmetic stays wrapped, every way of reading
    its value on the host (float, int, bool, NumPy conversion, item, formatting) is counted."""

    def __init__(self, value: Any, reads: list[str]):
        self.value, self.reads = value, reads

    def _wrap(self, value: Any) -> DeviceScalar:
        return DeviceScalar(value, self.reads)

    def __add__(self, other: Any) -> DeviceScalar:
        return self._wrap(self.value + getattr(other, "value", other))

    def __radd__(self, other: Any) -> DeviceScalar:
        return self._wrap(getattr(other, "value", other) + self.value)

    def _read(self, how: str) -> Any:
        self.reads.append(how)
        return backend.to_numpy(self.value)

    def __float__(self) -> float:
        return float(self._read("float"))

    def __int__(self) -> int:
        return int(self._read("int"))

    def __index__(self) -> int:
        return int(self._read("index"))

    def __bool__(self) -> bool:
        return bool(self._read("bool"))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self._read("array"), dtype=dtype)

    def item(self) -> Any:
        return self._read("item").item()

    def __format__(self, spec: str) -> str:
        return format(float(self._read("format")), spec)


def counting_reads(step, reads: list[str]):
    def wrapped(state, batch):
        state, metrics = step(state, batch)
        return state, {**metrics, "loss": DeviceScalar(metrics["loss"], reads)}

    return like(step, wrapped)


@pytest.mark.parametrize("name", DEVICES)
@pytest.mark.parametrize(("eval_interval", "records"), [(10, 4), (7, 5), (40, 1), (None, 0)])
def test_the_loss_is_read_once_a_record_not_once_a_step(data, name, eval_interval, records):
    backend_or_skip(name)
    step, state, x, t = setup(name, data)
    reads: list[str] = []
    kw = {"compile_epoch": False} if name == "jax" else {}
    final, history = train.fit(counting_reads(step, reads), state, x, t, epochs=EPOCHS, batch_size=BATCH,
                               eval_interval=eval_interval, progress=False, **kw)
    assert int(backend.to_numpy(final.step)) == 40
    assert len(history["loss"]) == records
    assert reads == ["float"] * records  # one read per record: the mean of the losses since the last one
    assert all(math.isfinite(v) for v in history["loss"])


def test_the_counter_sees_per_step_reads_where_fit_makes_them(data):
    # on the host the loss is read every step (free there); with on_nonfinite="skip" on a device
    # too (each update is kept or dropped by its own loss); the instrument must see both
    step, state, x, t = setup(None, data)
    reads: list[str] = []
    train.fit(counting_reads(step, reads), state, x, t, epochs=EPOCHS, batch_size=BATCH, eval_interval=10,
              progress=False)
    assert len(reads) == 40

    step, state, x, t = setup("jax", data)
    reads.clear()
    train.fit(counting_reads(step, reads), state, x, t, epochs=EPOCHS, batch_size=BATCH, eval_interval=10,
              progress=False, compile_epoch=False, on_nonfinite="skip")
    assert len(reads) == 40


@pytest.mark.parametrize("name", DEVICES)
def test_only_the_sum_of_device_losses_crosses_to_the_host(data, name, monkeypatch):
    # without a wrapper: the real device losses, and every float() that fit's module makes counted
    xp = backend_or_skip(name)
    step, state, x, t = setup(name, data)
    converted: list[Any] = []

    def counting_float(value=0.0):
        if not isinstance(value, int | float | str):
            converted.append(value)
        return float(value)

    monkeypatch.setattr(loop, "float", counting_float, raising=False)  # shadows the builtin in train only
    kw = {"compile_epoch": False} if name == "jax" else {}
    _, history = train.fit(step, state, x, t, epochs=EPOCHS, batch_size=BATCH, eval_interval=10,
                           progress=False, **kw)
    # one read for each record's mean loss, and one for the finite check of the whole state at
    # the start, at each record and at the end: never one a step
    assert len(history["loss"]) == 4 and len(converted) == 4 + (1 + 4 + 1)
    # the running sum stayed a 0-d array on the device: one transfer for ten losses
    assert all(backend.namespace(v) is xp and v.shape == () for v in converted)


# --- the data stays on the device ---------------------------------------------------------------------


@pytest.mark.parametrize(("name", "compile_epoch"), [("jax", False), ("jax", True), ("array_api_strict", None),
                                                     ("cupy", None)])
def test_batches_are_gathered_and_sliced_on_the_device(data, name, compile_epoch, monkeypatch):
    xp = backend_or_skip(name)
    step, state, x, t = setup(name, data)
    seen: list[tuple[Any, Any]] = []

    def spy(state, batch):
        seen.append(batch)
        return step(state, batch)

    takes: list[tuple[Any, Any]] = []
    real_take = xp.take

    def counting_take(a, indices, /, *, axis=None):
        takes.append((a, indices))
        return real_take(a, indices, axis=axis)

    monkeypatch.setattr(xp, "take", counting_take)
    moved = {"put": 0, "to_numpy": 0}

    def counted(fn, label):
        def wrapper(*args, **kwargs):
            moved[label] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(data_module, "put", counted(data_module.put, "put"))
    for module in (loop, data_module):
        monkeypatch.setattr(module, "to_numpy", counted(module.to_numpy, "to_numpy"))
    kw = {} if compile_epoch is None else {"compile_epoch": compile_epoch}
    final, _ = train.fit(like(step, spy), state, x, t, epochs=EPOCHS, batch_size=BATCH, eval_interval=10,
                         progress=False, **kw)

    # one gather of x and one of t an epoch, of device arrays by a device index array (the
    # compiled epochs trace their gathers once, inside the scan)
    compiled = compile_epoch or (compile_epoch is None and name == "jax")
    assert len(takes) == (2 if compiled else 2 * EPOCHS)
    for a, indices in takes:
        assert backend.namespace(a, indices) is xp
    # every batch the step saw was a device array (jax tracers under the compiled epoch)
    assert seen and all(backend.name_of(backend.namespace(*batch)) == name for batch in seen)
    if not compile_epoch:
        assert len(seen) == 40
        assert all(batch[0].shape == (BATCH, 2) and batch[1].shape == (BATCH, 3) for batch in seen)
    # nothing moved between host and device in the loop: state.key is read once (state.step is
    # a host int here, nothing to read); on jax the start-of-run checks also read host copies of
    # the data and params, once
    assert moved == {"put": 0, "to_numpy": 2 if name == "jax" else 1}
    assert all(backend.namespace(leaf) is xp for leaf in tree.leaves(final.params))


# --- the same seed gives the same initial params everywhere --------------------------------------------


def _models():
    return {
        "TwoLayerNet": (TwoLayerNet(2, 10, 3), (2,)),
        "mlp": (layers.serial(layers.Flatten(), layers.Affine(32), layers.ReLU(), layers.Dropout(0.1),
                              layers.MatMul(16), layers.Tanh(), layers.Affine(10, w_init="book")), (4, 6)),
    }


@pytest.mark.parametrize("model_name", ["TwoLayerNet", "mlp"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["jax", "array_api_strict", "cupy"])
def test_same_seed_same_initial_params_on_every_backend(model_name, dtype, name):
    xp = backend_or_skip(name)
    model, in_shape = _models()[model_name]
    opt = optim.adam(0.01)
    host = train.init_state(model, opt, random.key(42), in_shape, dtype=dtype)
    moved = train.init_state(model, opt, random.key(42), in_shape, dtype=dtype, backend=name)
    assert tree.structure(moved) == tree.structure(host)
    assert all(backend.namespace(leaf) is xp for leaf in tree.leaves(moved.params))
    for got, want in zip(tree.leaves(backend.to_numpy(moved.params)), tree.leaves(host.params), strict=True):
        assert got.dtype == want.dtype == np.dtype(dtype)
        assert got.shape == want.shape
        assert np.array_equal(got.view(np.uint8), want.view(np.uint8))  # bit for bit, -0.0 and all
    for got, want in zip(tree.leaves(backend.to_numpy(moved.opt_state)), tree.leaves(host.opt_state),
                         strict=True):
        assert got.dtype == want.dtype and np.array_equal(got, want)
    assert np.array_equal(backend.to_numpy(moved.key), host.key) and moved.step == host.step == 0
