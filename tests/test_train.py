"""The pure training step and fit: purity, reproducibility, resumption, jit, errors."""

from __future__ import annotations

import re

import chex
import jax
import numpy as np
import pytest
from conftest import backend_or_skip, readonly

from funcnet import backend, layers, optim, random, train, tree
from funcnet.datasets import spiral
from funcnet.losses import mean_squared_error, softmax_cross_entropy
from funcnet.models import TwoLayerNet


@pytest.fixture(scope="module")
def data():
    x, t = spiral.load_data()
    return x.astype(np.float32), t


def make(model=None, opt=None, seed=0, backend_name=None):
    model = model or TwoLayerNet(2, 10, 3)
    opt = opt or optim.sgd(1.0)
    state = train.init_state(model, opt, random.key(seed), (2,), backend=backend_name)
    return train.make_train_step(model, softmax_cross_entropy, opt), state


def run(step, state, x, t, **kw):
    kw = {"epochs": 3, "batch_size": 30, "eval_interval": 10, "progress": False} | kw
    return train.fit(step, state, x, t, **kw)


def test_init_state_is_deterministic_and_on_the_host():
    _, a = make(seed=3)
    _, b = make(seed=3)
    _, c = make(seed=4)
    chex.assert_trees_all_equal(a.params, b.params)
    assert not np.array_equal(a.params[0]["W"], c.params[0]["W"])
    assert all(isinstance(leaf, np.ndarray) and leaf.dtype == np.float32 for leaf in tree.leaves(a.params))
    assert a.step == 0 and a.key.dtype == np.uint32


def test_step_is_pure_and_accepts_read_only_inputs(data):
    x, t = data
    step, state = make()
    state = state._replace(params=readonly(state.params))
    batch = (readonly(x[:30]), readonly(t[:30]))
    before = tree.map(np.copy, state.params)
    s1, m1 = step(state, batch)
    s2, m2 = step(state, batch)
    chex.assert_trees_all_equal(s1.params, s2.params)
    assert float(m1["loss"]) == float(m2["loss"])
    chex.assert_trees_all_equal(state.params, before)  # the input state is untouched
    assert s1.step == 1 and state.step == 0
    chex.assert_trees_all_equal_dtypes(s1.params, state.params)


def test_step_casts_float64_inputs_to_the_params_dtype(data):
    x, t = data
    step, state = make()
    new, metrics = step(state, (x[:30].astype(np.float64), t[:30]))
    chex.assert_trees_all_equal_dtypes(new.params, state.params)
    assert metrics["loss"].dtype == np.float32


def test_the_seed_configuration_reaches_the_books_result(data):
    x, t = data
    step, state = make()
    state, history = run(step, state, x, t, epochs=300)
    assert len(history["loss"]) == 300  # 10 iterations an epoch, one record every 10
    assert history["loss"][-1] < 0.15
    assert train.evaluate(step.model, state.params, x, t)["accuracy"] >= 0.95
    assert history["loss"][0] > 1.0  # it did learn: the first record is near log(3)


def test_fit_leaves_its_inputs_alone(data):
    x, t = readonly(data)
    step, state = make()
    state = state._replace(params=readonly(state.params))  # a write would raise
    before = tree.map(np.copy, state.params)
    trained, _ = run(step, state, x, t)
    chex.assert_trees_all_equal(state.params, before)
    assert not np.array_equal(trained.params[0]["W"], before[0]["W"])
    np.testing.assert_array_equal(x, data[0])


def test_history_is_the_mean_loss_since_the_last_record(data):
    x, t = data
    step, state = make()
    losses = []
    _, history = run(step, state, x, t, epochs=2, eval_interval=4,
                     callback=lambda s, m: losses.append(float(m["loss"])))
    assert history["step"] == [4, 8, 12, 16, 20]
    np.testing.assert_allclose(history["loss"], [np.mean(losses[i:i + 4]) for i in range(0, 20, 4)], rtol=1e-12)


def test_log_line_has_the_books_format(data, capsys):
    x, t = data
    step, state = make()
    run(step, state, x, t, epochs=2, log=True)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"\| epoch 1 \|  iter 10 / 10 \| time \d+\[s\] \| loss \d+\.\d\d", lines[0])


def test_resuming_equals_never_stopping(data):
    x, t = data
    step, state = make()
    full, _ = run(step, state, x, t, epochs=6)
    half, _ = run(step, state, x, t, epochs=3)
    resumed, _ = run(step, half, x, t, epochs=3)
    chex.assert_trees_all_equal(full.params, resumed.params)
    assert resumed.step == full.step == 60


def test_interrupt_returns_the_last_complete_state_and_resumes_exactly(data):
    x, t = data
    step, state = make()
    full, _ = run(step, state, x, t, epochs=4)

    def interrupt(s, _metrics):
        if s.step == 15:
            raise KeyboardInterrupt

    with pytest.raises(train.TrainingInterrupted) as caught:
        run(step, state, x, t, epochs=4, callback=interrupt)
    partial = caught.value.state
    assert isinstance(caught.value, KeyboardInterrupt) and partial.step == 15
    assert (partial.epoch, partial.offset) == (1, 150)  # 5 of epoch 2's 10 batches of 30
    rest, _ = run(step, partial, x, t, epochs=3)  # the rest of epoch 2, then epochs 3 and 4
    chex.assert_trees_all_equal(full.params, rest.params)


def test_array_api_strict_training_equals_numpy_bit_for_bit(data):
    xs = backend_or_skip("array_api_strict")
    x, t = data
    step, state = make()
    ref, ref_history = run(step, state, x, t)
    strict_state = backend.put(state, xs)
    got, history = run(step, strict_state, *backend.put((x, t), xs))
    chex.assert_trees_all_equal(ref.params, backend.to_numpy(got.params))
    assert history["loss"] == ref_history["loss"]


def test_jitted_jax_step_matches_numpy(data):
    x, t = data
    step, state = make()
    jstep = jax.jit(step)
    jstate = backend.put(state, "jax")
    batch = (x[:30], t[:30])
    one, _ = step(state, batch)
    jone, _ = jstep(jstate, backend.put(batch, "jax"))
    chex.assert_trees_all_close(one.params, backend.to_numpy(jone.params), rtol=1e-6, atol=1e-6)
    chex.assert_trees_all_equal_dtypes(one.params, backend.to_numpy(jone.params))
    for i in range(299):
        lo = (i * 30) % 300
        batch = (x[lo:lo + 30], t[lo:lo + 30])
        one, _ = step(one, batch)
        jone, _ = jstep(jone, backend.put(batch, "jax"))
    chex.assert_trees_all_close(one.params, backend.to_numpy(jone.params), rtol=1e-4, atol=1e-4)


def test_jax_epoch_scan_matches_numpy_fit(data):
    x, t = data
    step, state = make()
    ref, ref_history = run(step, state, x, t, epochs=20)
    got, history = run(step, backend.put(state, "jax"), *backend.put((x, t), "jax"), epochs=20,
                       compile_epoch=True)
    chex.assert_trees_all_close(ref.params, backend.to_numpy(got.params), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(history["loss"], ref_history["loss"], rtol=1e-4)
    assert int(got.step) == 200


def _dropout_model():
    return layers.serial(layers.Affine(16), layers.ReLU(), layers.Dropout(0.25), layers.Affine(3))


def test_dropout_masks_come_from_the_key_and_the_step(data):
    x, _ = data
    model = _dropout_model()
    _, state = make(model=model)
    hidden = layers.serial(layers.Affine(16), layers.ReLU())
    h = hidden.apply(state.params[:2], x[:30])
    masks = []
    for s in (state, state, state._replace(step=1)):
        keys = random.split(train.step_key(s), 4)  # serial gives layer i the i-th key
        masks.append(layers.Dropout(0.25).apply((), h, rng=keys[2]) == 0)
    np.testing.assert_array_equal(masks[0], masks[1])  # the same (key, step), the same mask
    assert not np.array_equal(masks[0], masks[2])  # the next step, another mask
    dropped = float(np.mean(masks[0][h != 0]))
    assert 0.15 < dropped < 0.35  # rate 0.25 over ~480 live units


def test_dropout_model_trains_under_jit_and_on_numpy(data):
    x, t = data
    step, state = make(model=_dropout_model())
    a, _ = step(state, (x[:30], t[:30]))
    b, _ = step(state, (x[:30], t[:30]))
    chex.assert_trees_all_equal(a.params, b.params)  # the mask is a function of (key, step)
    jnew, metrics = jax.jit(step)(backend.put(state, "jax"), backend.put((x[:30], t[:30]), "jax"))
    chex.assert_tree_all_finite(jnew.params)
    assert np.isfinite(float(metrics["loss"]))


def test_dropout_on_jax_is_the_same_compiled_or_step_by_step(data):
    x, t = data
    model = _dropout_model()
    opt = optim.sgd(0.5)
    step = train.make_train_step(model, softmax_cross_entropy, opt)
    state = train.init_state(model, opt, random.key(3), (2,), backend="jax")
    jx, jt = backend.put((x, t), "jax")
    compiled, _ = run(step, state, jx, jt, epochs=3)
    stepwise, _ = run(step, state, jx, jt, epochs=3, callback=lambda s, m: None)  # per-step path
    chex.assert_trees_all_close(backend.to_numpy(compiled.params), backend.to_numpy(stepwise.params),
                                rtol=1e-5, atol=1e-6)


def test_skip_on_jax_drops_the_bad_updates(data):
    x, t = data
    bad = np.where(np.arange(300)[:, None] == 7, np.nan, x).astype(np.float32)
    step, state = make()
    got, history = run(step, backend.put(state, "jax"), *backend.put((bad, t), "jax"), validate=False,
                       on_nonfinite="skip")
    chex.assert_tree_all_finite(backend.to_numpy(got.params))
    assert int(got.step) == 30 and all(np.isfinite(history["loss"]))


def test_step_keys_differ_between_steps_and_from_epoch_keys():
    _, state = make()
    k0 = train.step_key(state)
    k1 = train.step_key(state._replace(step=1))
    assert not np.array_equal(k0, k1)
    assert not np.array_equal(k0, random.fold_in(state.key, 0))


# --- errors and faults ----------------------------------------------------------------------


@pytest.mark.parametrize(("batch_size", "error", "match"), [
    (0, ValueError, "batch_size must be between 1 and the data size 300, got 0"),
    (301, ValueError, "between 1 and the data size 300, got 301"),
    (2.5, TypeError, "batch_size must be an int"),
])
def test_bad_batch_size(data, batch_size, error, match):
    step, state = make()
    with pytest.raises(error, match=match):
        run(step, state, *data, batch_size=batch_size)


def test_bad_data_is_refused_at_the_start(data):
    x, t = data
    step, state = make()
    with pytest.raises(ValueError, match="different lengths"):
        run(step, state, x[:100], t)
    with pytest.raises(ValueError, match="NaN or infinite"):
        run(step, state, np.where(np.arange(300)[:, None] == 7, np.nan, x).astype(np.float32), t)
    labels = np.argmax(t, axis=1)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\), got values in \[0, 5\]"):
        run(step, state, x, np.where(labels == 2, 5, labels))
    with pytest.raises(ValueError, match="one-hot targets have 4 classes but logits have 3"):
        run(step, state, x, np.concatenate([t, np.zeros((300, 1), t.dtype)], axis=1))


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_divergence_stops_with_the_last_finite_state(data):
    x, t = data
    model = layers.Affine(3)
    targets = t.astype(np.float32)
    opt = optim.sgd(50.0)  # far past the stable step size of this least-squares problem
    state = train.init_state(model, opt, random.key(0), (2,))
    step = train.make_train_step(model, mean_squared_error, opt)
    with pytest.raises(train.NonFiniteLossError, match="the loss became") as info:
        run(step, state, x * 10, targets, epochs=50)
    last = info.value.state
    chex.assert_tree_all_finite(last.params)
    # the carried state is the input of the failing step: its loss on that step's batch is the
    # non-finite one, and every earlier step's loss was finite
    epoch, it = divmod(int(last.step), 10)
    order = random.permutation(random.fold_in(state.key, epoch), 300)[it * 30:(it + 1) * 30]
    assert f"at step {int(last.step) + 1} " in str(info.value)
    with np.errstate(over="ignore", invalid="ignore"):
        assert not np.isfinite(mean_squared_error.value(model.apply(last.params, x[order] * 10), targets[order]))
    # skipping cannot rescue it: every update of the rest of the epoch overflows, and a run that
    # skipped all its steps is an error, not a silent no-op
    with pytest.raises(train.NonFiniteLossError, match=r"every one of the .* steps .* was skipped") as again:
        run(step, last, x * 10, targets, epochs=1, on_nonfinite="skip")
    chex.assert_tree_all_finite(again.value.state.params)
    assert again.value.history["skipped"] == 10 - int(last.step) % 10


def test_nan_in_data_without_validation_is_caught_and_can_be_skipped(data):
    x, t = data
    bad = np.where(np.arange(300)[:, None] == 7, np.nan, x).astype(np.float32)
    step, state = make()
    with pytest.raises(train.NonFiniteLossError) as info:
        run(step, state, bad, t, validate=False)
    chex.assert_tree_all_finite(info.value.state.params)
    skipped, history = run(step, state, bad, t, validate=False, on_nonfinite="skip")
    chex.assert_tree_all_finite(skipped.params)
    assert skipped.step == 30 and all(np.isfinite(history["loss"]))


def test_predict_in_batches_equals_whole(data):
    x, t = data
    step, state = make()
    whole = train.predict(step.model, state.params, x)
    parts = train.predict(step.model, state.params, x, batch_size=64)
    np.testing.assert_array_equal(whole, parts)
    assert train.accuracy(whole, t) == train.accuracy(whole, np.argmax(t, axis=1))


def test_jax_compiled_fit_does_not_depend_on_how_epochs_are_grouped(data):
    x, t = data
    step, state = make()
    jstate, (jx, jt) = backend.put(state, "jax"), backend.put((x, t), "jax")
    ref, ref_history = run(step, state, x, t, epochs=6)
    for per_call in (1, 4, None):
        got, history = run(step, jstate, jx, jt, epochs=6, epochs_per_call=per_call)
        chex.assert_trees_all_close(ref.params, backend.to_numpy(got.params), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(history["loss"], ref_history["loss"], rtol=1e-5)
        assert int(got.step) == 60


def test_jax_compiled_fit_resumes_mid_epoch(data):
    x, t = data
    step, state = make()
    jx, jt = backend.put((x, t), "jax")
    full, _ = run(step, backend.put(state, "jax"), jx, jt, epochs=4)

    def interrupt(s, _metrics):
        if int(s.step) == 15:
            raise KeyboardInterrupt

    with pytest.raises(train.TrainingInterrupted) as caught:
        run(step, backend.put(state, "jax"), jx, jt, epochs=4, callback=interrupt)
    partial = caught.value.state
    assert int(partial.step) == 15
    rest, _ = run(step, partial, jx, jt, epochs=3)  # a per-step partial epoch, then compiled ones
    chex.assert_trees_all_close(backend.to_numpy(full.params), backend.to_numpy(rest.params), rtol=1e-5, atol=1e-6)
    assert int(rest.step) == 40


def test_jax_compiled_fit_a_nan_carries_the_state_at_its_calls_start(data):
    import jax.numpy as jnp

    x, t = data
    # 300 examples, batches of 30: 10 steps an epoch; 20 epochs go in calls of 5 (50 steps), and
    # the lr blows the loss up at step 121, in the third call (steps 101-150)
    opt = optim.sgd(lambda count: jnp.where(count < 120, 0.5, 1e38))
    step, state = make(opt=opt)
    jx, jt = backend.put((x, t), "jax")
    with pytest.raises(train.NonFiniteLossError, match=r"at step 12[1-9]") as caught:
        run(step, backend.put(state, "jax"), jx, jt, epochs=20, eval_interval=10)
    carried = caught.value.state
    assert (int(carried.step), carried.epoch, carried.offset) == (100, 10, 0)
    assert train.nonfinite_leaf(carried) is None
    # the very state the first two calls reach, as one call of 10 epochs gives it
    ten, _ = run(step, backend.put(state, "jax"), jx, jt, epochs=10, eval_interval=10, epochs_per_call=10)
    chex.assert_trees_all_equal(backend.to_numpy(carried.params), backend.to_numpy(ten.params))


@pytest.mark.parametrize("compiled", [True, False], ids=["jax compiled", "numpy"])
def test_a_state_gone_infinite_under_a_finite_loss_is_found_where_the_call_ends(data, compiled):
    # a rule whose slot grows 1e10-fold a step: the optimizer state overflows after a few steps
    # while the params and the loss stay finite; the compiled call's own sum of the state finds it
    def rule(step_):
        lr = step_.lr
        return lambda p, g, s: (p - lr * g, s * 1e10 + 1.0)

    opt = optim.from_rule("growing", rule, lr=0.1, slots={"trace": 0.0})
    x, t = data
    step, state = make(opt=opt)
    if compiled:
        state, (x, t) = backend.put(state, "jax"), backend.put((x, t), "jax")
    found = r"opt_state/trace/0/W holds NaN or infinite values by step \d+ though the loss was finite"
    with np.errstate(all="ignore"), pytest.raises(train.NonFiniteLossError, match=found) as caught:
        run(step, state, x, t, epochs=4, eval_interval=None if compiled else 10)
    assert train.nonfinite_leaf(caught.value.state) is None


def test_an_interrupt_while_a_compiled_call_is_recorded_keeps_history_and_state_together(data, monkeypatch):
    import contextlib

    class InterruptedOnWrite:  # stdout whose third log line is a Ctrl-C
        lines = 0

        def write(self, text):
            self.lines += text.count("\n")
            if self.lines >= 3:
                raise KeyboardInterrupt
            return len(text)

        def flush(self):
            pass

    x, t = data
    step, state = make()
    jx, jt = backend.put((x, t), "jax")
    with contextlib.redirect_stdout(InterruptedOnWrite()), pytest.raises(train.TrainingInterrupted) as caught:
        run(step, backend.put(state, "jax"), jx, jt, epochs=8, eval_interval=5, log=True)
    err = caught.value
    carried = int(err.state.step)
    assert carried == (err.history["step"][-1] if err.history["step"] else 0)
    assert f"interrupted at step {carried};" in str(err)
