"""fit's epoch runner: a TrainStep's plan runs the rest of an epoch on flat leaves.

The oracle is fit around the same step as a plain function (``step._checked``), which takes
the per-step path with every check: the runner must give the same params, optimizer state,
history and errors, bit for bit, and leave a complete, resumable state when interrupted.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import OPTIMIZER_SETUPS
from test_plan import _batches, _same_bits

from funcnet import backend, layers, losses, optim, random, train
from funcnet.models import TwoLayerNet
from funcnet.train.plan import plan_runs

FIT = {"epochs": 3, "batch_size": 16, "progress": False}  # 70 examples: 4 steps an epoch, a tail of 6


def _setup(opt, n=70, dtype="float32", one_hot=False, model=None):
    x, t = _batches(n, 2, 3, dtype, one_hot, count=1)[0]
    step = train.make_train_step(model or TwoLayerNet(2, 6, 3), losses.softmax_cross_entropy, opt)
    state = train.init_state(step.model, opt, random.key(3), (2,), dtype=dtype)
    return step, state, x, t


def _same_runs(got, want):
    (a, ha), (b, hb) = got, want
    assert _same_bits((a.params, a.opt_state), (b.params, b.opt_state))
    assert (a.step, a.epoch, a.offset) == (b.step, b.epoch, b.offset)
    assert {k: v for k, v in ha.items() if k != "time"} == {k: v for k, v in hb.items() if k != "time"}


@pytest.mark.parametrize("eval_interval", [None, 1, 3, 4, 7])
@pytest.mark.parametrize("name", list(OPTIMIZER_SETUPS))
def test_the_runner_equals_the_checked_per_step_path(name, eval_interval):
    step, state, x, t = _setup(OPTIMIZER_SETUPS[name]())
    kw = {**FIT, "eval_interval": eval_interval}
    got = train.fit(step, state, x, t, **kw)
    _same_runs(got, train.fit(step._checked, state, x, t, **kw))
    assert plan_runs(step) == 3 * 4 - 1  # every step after the first went through the plan


@pytest.mark.parametrize("dtype", ["float16", "float64"])
@pytest.mark.parametrize("one_hot", [False, True], ids=["labels", "one-hot"])
def test_other_dtypes_and_targets(dtype, one_hot):
    step, state, x, t = _setup(optim.momentum(0.2), dtype=dtype, one_hot=one_hot)
    with np.errstate(all="ignore"):
        _same_runs(train.fit(step, state, x, t, eval_interval=2, **FIT),
                   train.fit(step._checked, state, x, t, eval_interval=2, **FIT))


def test_a_resume_in_the_middle_of_an_epoch_is_the_uninterrupted_run():
    step, state, x, t = _setup(optim.adam(0.01))
    whole, _ = train.fit(step, state, x, t, eval_interval=2, **FIT)
    at_6 = _interrupted(step, state, x, t, calls=7).state  # the 7th step never completes
    assert (at_6.step, at_6.epoch, at_6.offset) == (6, 1, 32)
    rest, _ = train.fit(step, at_6, x, t, eval_interval=2, **{**FIT, "epochs": 2})
    assert _same_bits((rest.params, rest.opt_state), (whole.params, whole.opt_state))
    assert (rest.step, rest.epoch, rest.offset) == (whole.step, whole.epoch, whole.offset)


def _checked_until(step, state, x, t, n):
    """The checked per-step path's state after ``n`` steps of the same fit (stopped by its callback)."""
    if n == 0:
        return state

    def stop(s, metrics):
        if s.step == n:
            raise KeyboardInterrupt

    with pytest.raises(train.TrainingInterrupted) as caught:
        train.fit(step._checked, state, x, t, eval_interval=2, callback=stop, **FIT)
    return caught.value.state


def _interrupted(step, state, x, t, calls, where="core", **kw):
    """fit with a KeyboardInterrupt raised in the plan's ``where`` at its ``calls``-th call (counted over
    the checked first step too when ``where`` is "core": the plan is built by then)."""
    step(state, (x[:16], t[:16]))  # build the plan for (16, 2) batches, so it can be wrapped
    plan = step._plan_for(x[:16], t[:16])
    inner = getattr(plan, where)
    seen = [0]

    def interrupting(*args):
        seen[0] += 1
        if seen[0] == calls:
            raise KeyboardInterrupt
        return inner(*args)

    setattr(plan, where, interrupting)
    try:
        with pytest.raises(train.TrainingInterrupted) as caught:
            train.fit(step, state, x, t, **{"eval_interval": 2, **FIT, **kw})
    finally:
        setattr(plan, where, inner)
    return caught.value


@pytest.mark.parametrize(("where", "calls"), [(where, calls) for where in ("core", "update") for calls in (1, 2, 4, 5, 9)]
                         + [("assemble", calls) for calls in (1, 2, 3, 6)])  # 6 records, each built once
def test_an_interrupt_in_the_runner_leaves_the_last_complete_state(where, calls):
    step, state, x, t = _setup(optim.momentum(0.1))
    err = _interrupted(step, state, x, t, calls, where)
    carried = err.state
    # the carried state is exactly the checked path's after the same number of steps
    reference, history = train.fit(step._checked, state, x, t, eval_interval=2, **FIT)
    assert 0 <= carried.step <= 12  # an interrupt in the last record still leaves step 12
    partial = _checked_until(step, state, x, t, carried.step)
    assert _same_bits((carried.params, carried.opt_state), (partial.params, partial.opt_state))
    assert (carried.step, carried.epoch, carried.offset) == (partial.step, partial.epoch, partial.offset)
    assert isinstance(err, KeyboardInterrupt) and err.history["loss"] == history["loss"][:len(err.history["loss"])]
    # and it resumes into the uninterrupted run, bit for bit
    rest, _ = train.fit(step, carried, x, t, eval_interval=2, **{**FIT, "epochs": 3 - carried.epoch})
    assert _same_bits((rest.params, rest.opt_state), (reference.params, reference.opt_state))
    assert rest.step == reference.step == 12


@pytest.mark.parametrize("eval_interval", [1, None])
def test_a_nan_loss_raises_as_on_the_per_step_path(eval_interval):
    # lr 1e38 makes the loss overflow at the second step
    step, state, x, t = _setup(optim.sgd(1e38))

    def failure(fn):
        with np.errstate(all="ignore"), pytest.raises(train.NonFiniteLossError) as caught:
            train.fit(fn, state, x, t, eval_interval=eval_interval, **FIT)
        return caught.value

    got, want = failure(step), failure(step._checked)
    assert str(got) == str(want)
    assert _same_bits((got.state.params, got.state.opt_state), (want.state.params, want.state.opt_state))
    assert got.state.step == want.state.step and got.state.offset == want.state.offset
    assert train.nonfinite_leaf(got.state) is None and got.state.step == 1  # the step before the inf


def test_a_label_out_of_range_is_left_to_the_checked_step():
    step, state, x, t = _setup(optim.sgd(0.1))
    t = t.copy()
    t[50] = 3  # unvalidated: some batch of some epoch holds it

    def error(fn):
        with pytest.raises(ValueError) as caught:
            train.fit(fn, state, x, t, eval_interval=2, validate=False, **FIT)
        return str(caught.value)

    assert error(step) == error(step._checked)
    assert "label" in error(step)


def test_a_rule_returning_a_bare_array_is_named_by_the_optimizer():
    def bare(step_):
        return lambda p, g: p - step_.lr * g  # the missing comma

    opt = optim.from_rule("bare_sgd", bare, lr=0.1)
    step, state, x, t = _setup(opt)

    def error(fn):
        with pytest.raises(TypeError) as caught:
            train.fit(fn, state, x, t, eval_interval=2, **FIT)
        return str(caught.value)

    assert error(step) == error(step._checked)
    assert "missing comma" in error(step)


def test_a_callback_or_skip_takes_the_per_step_path_with_the_same_result():
    step, state, x, t = _setup(optim.sgd(0.5))
    seen = []
    got = train.fit(step, state, x, t, eval_interval=2, callback=lambda s, m: seen.append(s.step), **FIT)
    _same_runs(got, train.fit(step._checked, state, x, t, eval_interval=2, **FIT))
    assert seen == list(range(1, 13))
    got = train.fit(step, state, x, t, eval_interval=2, on_nonfinite="skip", **FIT)
    _same_runs(got, train.fit(step._checked, state, x, t, eval_interval=2, **FIT))


@pytest.mark.parametrize("one_hot", [False, True], ids=["labels", "one-hot"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(OPTIMIZER_SETUPS))
def test_array_api_strict_the_oracle_gives_the_same_bits(name, dtype, one_hot):
    # the generic Array API path (no plans, no runner, no NumPy shortcuts) is every fast path's oracle
    model = layers.serial(layers.Affine(6), layers.Sigmoid(), layers.Affine(5), layers.Tanh(), layers.Affine(3))
    step, state, x, t = _setup(OPTIMIZER_SETUPS[name](), dtype=dtype, one_hot=one_hot, model=model)
    fast, fast_history = train.fit(step, state, x, t, eval_interval=3, **FIT)
    sx, st = backend.put((x, t), "array_api_strict")
    oracle, oracle_history = train.fit(step, backend.put(state, "array_api_strict"), sx, st, eval_interval=3, **FIT)
    assert _same_bits((fast.params, fast.opt_state), backend.to_numpy((oracle.params, oracle.opt_state)))
    assert fast_history["loss"] == oracle_history["loss"]
    assert plan_runs(step) == 3 * 4 - 1


def _to_float16(step_):
    lr = step_.lr
    return lambda p, g: ((p - lr * g).astype(np.float16),)  # a rule that changes the params' dtype


def _wrong_shape(step_):
    lr = step_.lr
    return lambda p, g: ((p - lr * g)[..., :1],)


@pytest.mark.parametrize("rule", [_to_float16, _wrong_shape], ids=["dtype", "shape"])
@pytest.mark.parametrize("warm", [False, True], ids=["first fit", "a step with a plan already"])
def test_an_unchecked_rule_whose_outputs_change_is_run_as_the_checked_path_runs_it(rule, warm):
    # check_outputs=False: the optimizer does not look, but the plan must not keep leaves its
    # guard would refuse; the step then takes the checked path, whatever that gives
    opt = optim.from_rule("odd", rule, lr=0.1, check_outputs=False)
    step, state, x, t = _setup(opt)
    if warm:  # a plan for these batches exists before the fit starts
        step(state, (x[:16], t[:16]))

    def outcome(fn):
        try:
            with np.errstate(all="ignore"):
                return train.fit(fn, state, x, t, eval_interval=2, **FIT)
        except (TypeError, ValueError) as err:
            return type(err), str(err)

    got, want = outcome(step), outcome(step._checked)
    if isinstance(want[0], type):
        assert got == want
    else:
        _same_runs(got, want)
        assert got[0].params[0]["W"].dtype == np.float16


@pytest.mark.parametrize("opt", [optim.momentum(0.1), optim.adam(0.01), optim.sgd(0.1)], ids=["momentum", "adam", "sgd"])
def test_a_model_without_params_is_left_to_the_checked_path(opt):
    model = layers.serial(layers.Tanh())
    step, state, x, t = _setup(opt, model=model)
    x = np.repeat(x, 2, axis=1)[:, :3]  # three features for three classes
    state = train.init_state(model, opt, random.key(0), (3,))
    _same_runs(train.fit(step, state, x, t, eval_interval=2, **FIT),
               train.fit(step._checked, state, x, t, eval_interval=2, **FIT))
    assert not any(step._plans.values())


def test_an_interrupt_in_the_final_finite_check_still_hands_the_state_over(monkeypatch):
    from funcnet.train import loop

    step, state, x, t = _setup(optim.sgd(0.5))
    calls = []
    real = loop.nonfinite_leaf

    def interrupted_at_the_end(s):  # called at the start and at the end (no records)
        calls.append(s.step)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(s)

    monkeypatch.setattr(loop, "nonfinite_leaf", interrupted_at_the_end)
    with pytest.raises(train.TrainingInterrupted) as caught:
        train.fit(step, state, x, t, eval_interval=None, **FIT)
    monkeypatch.undo()
    want, _ = train.fit(step._checked, state, x, t, eval_interval=None, **FIT)
    carried = caught.value.state
    assert calls == [0, 12] and (carried.step, carried.epoch, carried.offset) == (12, 3, 0)
    assert _same_bits((carried.params, carried.opt_state), (want.params, want.opt_state))


def test_a_builtin_optimizer_with_its_rule_or_lr_replaced_is_no_builtin():
    base = optim.sgd(0.1)

    def half_rule(step_):
        return lambda p, g: ((p - 0.5 * g).astype(np.float16),)

    swapped = [base._replace(leafwise=base.leafwise._replace(rule=half_rule)),
               base._replace(leafwise=base.leafwise._replace(lr_at=lambda count, xp, dtype: 0.5)),
               optim.Optimizer(base.init, base.update, optim.sgd(0.2).leafwise)]
    assert optim.is_builtin(base) and not any(optim.is_builtin(opt) for opt in swapped)
    for opt in swapped:  # whatever the plan runs, it is what the checked path gives
        step, state, x, t = _setup(opt)
        _same_runs(train.fit(step, state, x, t, eval_interval=2, **FIT),
                   train.fit(step._checked, state, x, t, eval_interval=2, **FIT))


def test_optimizers_dropped_leave_the_builtin_registries():
    import gc

    from funcnet.optim import rules

    gc.collect()
    before = len(rules._LIFTED), len(rules._BUILTIN)
    made = [optim.sgd(0.1) for _ in range(20)] + [optim.from_rule("own", lambda s: (lambda p, g: (p,)), lr=0.1)
                                                  for _ in range(5)]
    assert (len(rules._LIFTED), len(rules._BUILTIN)) == (before[0] + 25, before[1] + 20)
    del made
    gc.collect()
    assert (len(rules._LIFTED), len(rules._BUILTIN)) == before  # nothing kept an optimizer alive


def test_fit_steps_through_the_runner_not_the_step_once_a_plan_exists(monkeypatch):
    # the same results either way, so count: after the first step (which makes the plan) fit
    # calls the TrainStep only where the runner cannot run (a callback)
    calls = []
    real = train.TrainStep.__call__

    def counted(self, state, batch):
        calls.append(state.step)
        return real(self, state, batch)

    monkeypatch.setattr(train.TrainStep, "__call__", counted)
    step, state, x, t = _setup(optim.sgd(0.5))
    train.fit(step, state, x, t, eval_interval=2, **FIT)
    assert calls == [0] and plan_runs(step) == 11
    train.fit(step, state, x, t, eval_interval=2, **FIT)  # the plan exists: no step call at all
    assert calls == [0] and plan_runs(step) == 11 + 12
    train.fit(step, state, x, t, eval_interval=2, callback=lambda s, m: None, **FIT)
    assert len(calls) == 1 + 12
