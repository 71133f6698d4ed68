"""fit under faults: what it carries when training goes wrong, and the order it promises.

Each test here fails against a fault that once went through the suite (issue "Nothing silent"):
a "last finite state" holding inf params, an interrupt swallowed, one permutation for every
epoch, a kept tail batch, a record's mean after a mid-epoch resume, an isnan-only check.
"""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest
from conftest import backend_or_skip

from funcnet import backend, layers, losses, optim, random, train, tree
from funcnet.datasets import spiral
from funcnet.losses import Loss, softmax_cross_entropy
from funcnet.models import TwoLayerNet

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "funcnet"


@pytest.fixture(scope="module")
def data():
    x, t = spiral.load_data()
    return x.astype(np.float32), t


def _start(opt, seed=0):
    model = TwoLayerNet(2, 10, 3)
    return train.TrainStep(model, softmax_cross_entropy, opt), train.init_state(model, opt, random.key(seed), (2,))


# --- the last good state is finite, params and optimizer state alike -----------------------------------


def test_a_finite_loss_with_infinite_params_is_caught_and_the_carried_state_is_finite(data):
    x, t = data
    step, state = _start(optim.sgd(1e38))  # accepted: a finite rate, whose first update overflows
    with pytest.raises(train.NonFiniteLossError) as caught:
        train.fit(step, state, x, t, epochs=2, batch_size=30, eval_interval=10, progress=False)
    assert train.nonfinite_leaf(caught.value.state) is None
    assert "step" in str(caught.value)


@pytest.mark.parametrize("eval_interval", [10, None])
def test_skip_never_returns_non_finite_params(data, eval_interval):
    x, t = data
    step, state = _start(optim.sgd(1e38))
    try:
        final, _ = train.fit(step, state, x, t, epochs=2, batch_size=30, eval_interval=eval_interval,
                             on_nonfinite="skip", progress=False)
    except train.NonFiniteLossError as err:
        final = err.state
    assert train.nonfinite_leaf(final) is None


def test_the_initial_state_is_checked_too(data):
    x, t = data
    step, state = _start(optim.sgd(0.1))
    bad = state._replace(params=(state.params[0], (), {**state.params[2], "b": np.full(3, np.nan, np.float32)}))
    with pytest.raises(train.NonFiniteLossError, match=r"params/2/b holds NaN or infinite values in the state"):
        train.fit(step, bad, x, t, epochs=1, batch_size=30, progress=False)


def _infinite_loss() -> Loss:
    """softmax cross-entropy whose value is +inf (not NaN) and whose gradient is the real one."""

    def value(logits, targets):
        return softmax_cross_entropy.value(logits, targets) * float("inf")

    def vjp(logits, targets):
        v, pullback = softmax_cross_entropy.vjp(logits, targets)
        return v * float("inf"), pullback

    return Loss(value, vjp)


@pytest.mark.parametrize("name", ["numpy", "jax"])
def test_an_infinite_mean_loss_stops_training_on_every_path(data, name):
    # an isnan-only check would let +inf through; on jax's per-step path the losses are read at records
    backend_or_skip(name)
    x, t = backend.put(data, name)
    model, opt = TwoLayerNet(2, 10, 3), optim.sgd(0.1)
    step = train.TrainStep(model, _infinite_loss(), opt)
    state = train.init_state(model, opt, random.key(0), (2,), backend=name)
    kw = {"compile_epoch": False} if name == "jax" else {}
    with pytest.raises(train.NonFiniteLossError, match="inf"):
        train.fit(step, state, x, t, epochs=1, batch_size=30, eval_interval=5, progress=False, validate=False, **kw)


# --- an interrupt is raised, never swallowed -----------------------------------------------------------


def test_ctrl_c_raises_a_keyboard_interrupt_carrying_the_last_complete_state(data):
    x, t = data
    step, state = _start(optim.sgd(1.0))
    seen = []

    def stop(s, _metrics):
        seen.append(s)
        if s.step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as caught:
        train.fit(step, state, x, t, epochs=2, batch_size=30, eval_interval=5, progress=False, callback=stop)
    err = caught.value
    assert isinstance(err, train.TrainingInterrupted)
    assert err.state is seen[-1] and err.state.step == 7 and err.state.offset == 210
    assert err.history["step"] == [5]


# --- the order of the batches --------------------------------------------------------------------------


def _spy(step, seen):
    def spy(state, batch):
        seen.append(np.asarray(batch[0]).copy())
        return step(state, batch)

    return spy


def test_each_epoch_has_its_own_permutation_from_the_documented_recipe(data):
    x, t = data
    step, state = _start(optim.sgd(1.0), seed=3)
    seen: list[np.ndarray] = []
    train.fit(_spy(step, seen), state, x, t, epochs=3, batch_size=100, eval_interval=None, progress=False)
    assert len(seen) == 9
    for epoch in range(3):
        order = random.permutation(random.fold_in(state.key, epoch), 300)
        got = np.concatenate(seen[3 * epoch:3 * epoch + 3])
        np.testing.assert_array_equal(got, x[order])
    assert not np.array_equal(seen[0], seen[3]) and not np.array_equal(seen[3], seen[6])


def test_a_batch_size_that_does_not_divide_the_data_drops_the_tail(data):
    x, t = data
    step, state = _start(optim.sgd(1.0))
    seen: list[np.ndarray] = []
    final, _ = train.fit(_spy(step, seen), state, x, t, epochs=2, batch_size=70, eval_interval=None,
                         progress=False)
    assert final.step == 8 and final.epoch == 2 and final.offset == 0  # 4 batches of 70 an epoch
    assert all(batch.shape == (70, 2) for batch in seen)
    order = random.permutation(random.fold_in(state.key, 0), 300)
    np.testing.assert_array_equal(np.concatenate(seen[:4]), x[order[:280]])


def test_a_record_after_a_mid_epoch_resume_averages_only_the_steps_it_ran(data):
    x, t = data
    step, state = _start(optim.sgd(1.0))
    losses_seen: list[float] = []

    def stop(s, metrics):
        losses_seen.append(float(metrics["loss"]))
        if s.step == 13:
            raise KeyboardInterrupt

    with pytest.raises(train.TrainingInterrupted) as caught:
        train.fit(step, state, x, t, epochs=2, batch_size=30, eval_interval=10, progress=False, callback=stop)
    resumed_losses: list[float] = []
    _, history = train.fit(step, caught.value.state, x, t, epochs=1, batch_size=30, eval_interval=10,
                           progress=False, callback=lambda s, m: resumed_losses.append(float(m["loss"])))
    assert history["step"] == [20]
    assert history["loss"] == [pytest.approx(np.mean(resumed_losses), rel=1e-12)]
    assert len(resumed_losses) == 7  # steps 14..20: the rest of epoch 2


def test_resuming_with_a_batch_size_that_fits_the_offset_finishes_the_epoch(data):
    x, t = data
    step, state = _start(optim.sgd(1.0))
    mid = state._replace(step=5, epoch=0, offset=150)  # 5 batches of 30 done
    final, _ = train.fit(step, mid, x, t, epochs=1, batch_size=50, eval_interval=None, progress=False)
    assert (final.step, final.epoch, final.offset) == (5 + 3, 1, 0)  # 150 more examples in 3 batches of 50


# --- capabilities are fields of types, never attributes of functions -----------------------------------


def test_no_attribute_is_ever_set_on_a_function_in_the_library():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        module = ast.parse(path.read_text(), str(path))
        functions = {node.name for node in ast.walk(module) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
        for node in ast.walk(module):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AugAssign | ast.AnnAssign) else []
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id in functions:
                        offenders.append(f"{path.name}:{node.lineno} {ast.unparse(target)}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr":
                offenders.append(f"{path.name}:{node.lineno} setattr")
    assert offenders == []


def test_layer_flags_drive_the_step():
    dropout = layers.Dropout(0.5)
    assert dropout.stochastic and not layers.deterministic(dropout).stochastic
    net = layers.serial(layers.Affine(3), layers.ReLU(), layers.Affine(2))
    assert not net.stochastic and net.skips_input_grad and net.kind == "serial" and len(net.sublayers) == 3
    assert layers.serial(layers.Affine(3), dropout).stochastic
    assert not layers.serial(layers.ReLU(), layers.Affine(2)).skips_input_grad


def test_a_user_layer_from_init_and_vjp_trains_inside_serial(data):
    x, t = data

    def init(key, in_shape, dtype="float32"):
        return tuple(in_shape), {"s": np.ones(in_shape, dtype)}

    def vjp(params, x, *, rng=None):
        s = params["s"]

        def pullback(dy):
            return {"s": backend.namespace(dy).sum(dy * x, axis=0)}, dy * s

        return x * s, pullback

    scale = layers.layer_from_vjp(init, vjp, stochastic=False)
    model = layers.serial(scale, layers.Affine(10), layers.Sigmoid(), layers.Affine(3))
    opt = optim.sgd(1.0)
    step = train.TrainStep(model, losses.softmax_cross_entropy, opt)
    state = train.init_state(model, opt, random.key(0), (2,))
    final, history = train.fit(step, state, x, t, epochs=30, batch_size=30, eval_interval=10, progress=False)
    assert history["loss"][-1] < history["loss"][0]
    assert not np.array_equal(final.params[0]["s"], state.params[0]["s"])


def test_the_finite_check_is_exact_where_a_sum_overflows():
    big = np.full(4, 60000.0, np.float16)  # finite, but its sum is not
    state = train.TrainState({"W": big}, (), None, 0)
    assert train.nonfinite_leaf(state) is None
    assert train.nonfinite_leaf(state._replace(opt_state={"v": np.array([1.0, np.nan], np.float32)})) == "opt_state/v"
    assert train.nonfinite_leaf(state._replace(params={"W": np.array([np.inf, -np.inf])})) == "params/W"


def test_a_key_and_step_moved_to_a_device_are_kept_on_the_host_by_fit(data):
    # backend.put(state, ...) or checkpoint.load(like=device_state) moves key and step too; the
    # step would read them back every step: fit brings them home once, with the same results
    backend_or_skip("array_api_strict")
    x, t = data
    model, opt = TwoLayerNet(2, 10, 3), optim.sgd(1.0)
    step = train.TrainStep(model, softmax_cross_entropy, opt)
    state = train.init_state(model, opt, random.key(0), (2,), backend="array_api_strict")
    moved = state._replace(key=backend.put(state.key, "array_api_strict"),
                           step=backend.put(np.asarray(0), "array_api_strict"))
    assert not isinstance(moved.key, np.ndarray)
    sx, st = backend.put((x, t), "array_api_strict")
    final, _ = train.fit(step, moved, sx, st, epochs=2, batch_size=30, eval_interval=10, progress=False)
    assert isinstance(final.key, np.ndarray) and type(final.step) is int and final.step == 20
    reference, _ = train.fit(step, state, sx, st, epochs=2, batch_size=30, eval_interval=10, progress=False)
    for a, b in zip(backend.to_numpy(final.params), backend.to_numpy(reference.params), strict=True):
        for k in a:
            assert np.array_equal(a[k], b[k])


# --- tests written for the mutants a mutation pass saw survive ------------------------------------------


def test_a_nan_mean_loss_at_a_record_stops_training_on_the_device_path():
    # a NaN (not only an inf) mean at a record is caught where losses are read at records only
    backend_or_skip("jax")
    import jax.numpy as jnp

    def nan_step(state, batch):
        return state._replace(step=state.step + 1), {"loss": jnp.float32(jnp.nan)}

    model, opt = TwoLayerNet(2, 4, 3), optim.sgd(0.1)
    state = train.init_state(model, opt, random.key(0), (2,), backend="jax")
    x, t = backend.put((np.ones((4, 2), np.float32), np.array([0, 1, 2, 0])), "jax")
    with pytest.raises(train.NonFiniteLossError, match="nan"):
        train.fit(nan_step, state, x, t, epochs=1, batch_size=2, eval_interval=1, progress=False,
                  compile_epoch=False)


def test_the_carried_candidate_is_itself_checked(data):
    # the input of the failing step is carried only if it is finite: here step 1 makes the params
    # inf with a finite loss, and step 2's loss is NaN; with no records in between, the carried
    # state must be the checked one (the start), not the inf candidate
    x, t = data
    step, state = _start(optim.sgd(1.0))

    def breaking(s, batch):
        new, metrics = step(s, batch)
        if s.step == 0:
            return new._replace(params=tree.map(lambda a: a * np.inf, new.params)), metrics
        return new, {"loss": np.float32(np.nan)}

    with pytest.raises(train.NonFiniteLossError) as caught:
        train.fit(breaking, state, x, t, epochs=1, batch_size=30, eval_interval=None, progress=False)
    assert train.nonfinite_leaf(caught.value.state) is None and caught.value.state.step == 0


def test_records_name_the_epoch_they_fall_in(data):
    x, t = data
    step, state = _start(optim.sgd(1.0))
    _, history = train.fit(step, state, x, t, epochs=2, batch_size=30, eval_interval=5, progress=False)
    assert history["step"] == [5, 10, 15, 20] and history["epoch"] == [1, 1, 2, 2]
