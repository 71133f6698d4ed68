"""The per-leaf rule lifter and what it promises for every optimizer built with it.

* The examples of ``docs/extending.md`` run as written (Lion against ``optax.lion``, the
  debiased moving average against ``optax.ema``).
* NumPy and array_api_strict give the same bits for every built-in optimizer.
* float16 params train with float32 slots and arithmetic (mixed precision).
* A schedule that gives inf or NaN is refused with the optimizer, the value and the step named.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import chex
import numpy as np
import pytest
from conftest import OPTIMIZER_SETUPS
from test_optim import assert_jit_equals_eager

from funcnet import backend, checkpoint, optim, schedules, tree

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

EXTENDING = Path(__file__).resolve().parent.parent / "docs" / "extending.md"


OPTIMIZER_SECTIONS = ("Your own optimizer", "Your own gradient transformation")


def doc_namespace():
    """The names defined by the Python blocks of docs/extending.md's optimizer sections, run in order."""
    sections = re.split(r"^## ", EXTENDING.read_text(), flags=re.M)
    text = "".join(section for section in sections if section.startswith(OPTIMIZER_SECTIONS))
    blocks = [re.sub(r"^ {3}", "", block, flags=re.M) for block in re.findall(r"```python\n(.*?)```", text, re.S)]
    assert len(blocks) >= 5
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(EXTENDING.name), "exec"), namespace)  # the project's own docs
    return namespace


DOC = doc_namespace()


def make_params(dtype=np.float64):
    rng = np.random.default_rng(21)
    return {"W": rng.standard_normal((3, 4)).astype(dtype), "b": rng.standard_normal(4).astype(dtype),
            "nested": ({"s": rng.standard_normal(2).astype(dtype)}, ())}


def make_grads(dtype=np.float64, steps=6):
    rng = np.random.default_rng(22)
    return [tree.map(lambda x: rng.standard_normal(x.shape).astype(dtype), make_params()) for _ in range(steps)]


def run(opt, params, grads_seq):
    state = opt.init(params)
    for grads in grads_seq:
        params, state = opt.update(params, grads, state)
    return params, state


def optax_params(tx, params, grads_seq):
    p = backend.put(params, "jax")
    state = tx.init(p)
    for grads in grads_seq:
        updates, state = tx.update(backend.put(grads, "jax"), state, p)
        p = optax.apply_updates(p, updates)
    return backend.to_numpy(p)


# --- the documented examples ------------------------------------------------------------------------------


def test_the_docs_lion_equals_optax_lion():
    params, grads = make_params(), make_grads()
    got, state = run(DOC["lion"](0.01, 0.8, 0.95), params, grads)
    want = optax_params(optax.lion(0.01, 0.8, 0.95, weight_decay=0.0), params, grads)
    chex.assert_trees_all_close(got, want, rtol=1e-13, atol=1e-15)
    assert type(state).__name__ == "LionState" and state._fields == ("count", "momentum")


def test_the_docs_lion_under_jit_on_jax_in_float32():
    params = backend.put(make_params(np.float32), "jax")
    grads_seq = [backend.put(g, "jax") for g in make_grads(np.float32)]
    assert_jit_equals_eager(DOC["lion"](schedules.cosine_decay(0.01, 4)), params, grads_seq, rtol=1e-6)


def test_the_docs_ema_transform_equals_optax_ema():
    params, grads_seq = make_params(), make_grads()
    ours, theirs = DOC["ema"](0.7), optax.ema(0.7)
    state, their_state = ours.init(params), theirs.init(backend.put(params, "jax"))
    for grads in grads_seq:
        got, state = ours.update(grads, state, params)
        want, their_state = theirs.update(backend.put(grads, "jax"), their_state)
        chex.assert_trees_all_close(got, backend.to_numpy(want), rtol=1e-13, atol=1e-15)


def test_a_lifted_state_type_is_one_class_per_name_and_slots():
    a, b = DOC["lion"](0.1).init(make_params()), DOC["lion"](0.2).init(make_params())
    assert type(a) is type(b)
    with pytest.raises(TypeError, match=r"lion.update: state must be the LionState that lion's init makes, got AdamState"):
        DOC["lion"](0.1).update(make_params(), make_params(), optim.adam().init(make_params()))
    assert optim.state_type("AdamState", ("first_moment", "second_moment")) is optim.AdamState


def test_built_in_states_pickle():
    import pickle

    for make in ALL_BUILT_INS.values():
        state = make().init(make_params(np.float32))
        again = pickle.loads(pickle.dumps(state))
        assert type(again) is type(state)
        chex.assert_trees_all_equal(again, state)


@pytest.mark.parametrize("slots", [{"count": 0.0}, {"_x": 0.0}, {"a b": 0.0}])
def test_bad_slot_names(slots):
    with pytest.raises(ValueError, match="slot names must be distinct identifiers"):
        optim.from_rule("bad", lambda step: None, lr=0.1, slots=slots)


def test_slots_start_at_their_value_and_reach_the_rule_by_name():
    seen = []

    def rule(step):
        seen.append(step)
        return lambda p, g, first, second: (p + first + second, first + 1.0, second * 2.0)

    opt = optim.from_rule("probe", rule, lr=schedules.constant(0.3), slots={"first": 1.0, "second": -2.0})
    params = {"w": np.zeros(2, np.float32)}
    p, state = opt.update(params, params, opt.init(params))
    assert state._fields == ("count", "first", "second") and type(state).__name__ == "ProbeState"
    chex.assert_trees_all_equal(p, {"w": np.full(2, -1.0, np.float32)})
    chex.assert_trees_all_equal(state.second, {"w": np.full(2, -4.0, np.float32)})
    assert seen == [optim.Step(np, 0, 0.3, np.float32)]


# --- NumPy and array_api_strict agree bit for bit ------------------------------------------------------------

# every optimizer of the shared table, and the cases where a device-style count changes the bits
ALL_BUILT_INS = {
    **OPTIMIZER_SETUPS,
    "adam/standard/lr=0.001": lambda: optim.adam(0.001, form="standard"),
    "adam/standard/eps_root": lambda: optim.adam(0.01, 0.8, 0.99, form="standard", eps_root=1e-12),
    "adam/book/warmup": lambda: optim.adam(schedules.warmup(schedules.cosine_decay(0.02, 8), 2)),
    "adamw": lambda: optim.adamw(0.01, weight_decay=0.1),
    "accumulate(2, adam)": lambda: optim.accumulate(2, optim.adam(0.01)),
}


@pytest.mark.parametrize("make", ALL_BUILT_INS.values(), ids=ALL_BUILT_INS.keys())
def test_numpy_and_array_api_strict_give_the_same_bits(make):
    params, grads = make_params(np.float32), make_grads(np.float32, steps=5)
    on_numpy, numpy_state = run(make(), params, grads)
    on_strict, strict_state = run(make(), backend.put(params, "array_api_strict"),
                                  [backend.put(g, "array_api_strict") for g in grads])
    chex.assert_trees_all_equal(backend.to_numpy(on_strict), on_numpy)
    chex.assert_trees_all_equal(backend.to_numpy(strict_state), backend.to_numpy(numpy_state))
    assert all(backend.name_of(backend.namespace(x)) == "array_api_strict" for x in tree.leaves(strict_state))


# --- float16 params: float32 slots and arithmetic ---------------------------------------------------------------


def test_adagrad_float16_does_not_freeze_after_one_large_gradient():
    opt = optim.adagrad(0.1)
    params = {"w": np.ones(2, np.float16)}
    state = opt.init(params)
    assert state.sum_of_squares["w"].dtype == np.float32
    params, state = opt.update(params, {"w": np.array([60000.0, 1.0], np.float16)}, state)  # g*g overflows float16
    assert np.isfinite(state.sum_of_squares["w"]).all()
    before = params["w"].copy()
    for _ in range(10):  # a float16 accumulator would be inf here, and every later step exactly 0
        params, state = opt.update(params, {"w": np.array([30000.0, 1.0], np.float16)}, state)
    assert params["w"].dtype == np.float16
    assert params["w"][0] < before[0] - 0.2  # each step about 0.1 * 30000 / sqrt(3.6e9 + k * 9e8) > 0.02
    assert params["w"][1] < before[1] - 0.2  # the small gradient's weight moves as in float32
    chex.assert_tree_all_finite((params, state))


def test_adam_float16_does_not_go_nan():
    for form in ("book", "standard"):
        opt = optim.adam(0.01, form=form)
        params = {"w": np.ones(3, np.float16)}
        state = opt.init(params)
        for g in (30000.0, -30000.0, 5.0, 0.001, 60000.0):
            params, state = opt.update(params, {"w": np.full(3, g, np.float16)}, state)
        chex.assert_tree_all_finite((params, state))
        assert params["w"].dtype == np.float16 and state.second_moment["w"].dtype == np.float32


def test_float16_is_the_float32_computation_rounded():
    # for every rule-made optimizer; a transform in front hands the optimizer float16 grads, rounded
    params16, grads16 = make_params(np.float16), make_grads(np.float16, steps=1)
    for name, make in ALL_BUILT_INS.items():
        if name.startswith("with_clipping"):
            continue
        opt = make()
        p16, _ = opt.update(params16, grads16[0], opt.init(params16))
        p32, _ = opt.update(tree.map(lambda x: x.astype(np.float32), params16),
                            tree.map(lambda x: x.astype(np.float32), grads16[0]),
                            opt.init(tree.map(lambda x: x.astype(np.float32), params16)))
        chex.assert_trees_all_equal(p16, tree.map(lambda x: x.astype(np.float16), p32))


@pytest.mark.parametrize("form", ["book", "standard"])
def test_clipping_float16_grads_takes_the_norm_in_float32(form):
    grads = {"g": np.full(4, 1000.0, np.float16)}  # the squares sum to 4e6: inf in float16
    clipped, _ = optim.clip_by_global_norm(1.0, form=form).update(grads, (), None)
    assert clipped["g"].dtype == np.float16
    np.testing.assert_allclose(clipped["g"].astype(np.float32), 0.5, rtol=1e-3)
    again, _ = optim.clip_by_global_norm(1e4, form=form).update(grads, (), None)
    chex.assert_trees_all_equal(again, grads)


def test_a_float16_state_round_trips_through_a_checkpoint(tmp_path):
    opt = optim.chain(optim.clip(1.0), optim.adam(0.01))
    params, grads = make_params(np.float16), make_grads(np.float16, steps=4)
    p, state = run(opt, params, grads[:2])
    checkpoint.save(tmp_path / "half.safetensors", {"params": p, "opt_state": state})
    loaded = checkpoint.load(tmp_path / "half.safetensors", like={"params": params, "opt_state": opt.init(params)})
    chex.assert_trees_all_equal(loaded, {"params": p, "opt_state": state})
    chex.assert_trees_all_equal_dtypes(loaded, {"params": p, "opt_state": state})
    for g in grads[2:]:
        p, state = opt.update(p, g, state)
        loaded["params"], loaded["opt_state"] = opt.update(loaded["params"], g, loaded["opt_state"])
    chex.assert_trees_all_equal(loaded["params"], p)


def test_float16_under_jit():
    opt = optim.adam(0.01)
    params = backend.put(make_params(np.float16), "jax")
    grads = backend.put(make_grads(np.float16, steps=1)[0], "jax")
    p, state = jax.jit(opt.update)(params, grads, opt.init(params))
    chex.assert_trees_all_equal_dtypes(p, params)
    assert all(x.dtype == np.float32 for x in tree.leaves(state.first_moment))


# --- schedules that give inf or NaN -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "make", "value", "step"), [
    ("sgd", lambda: optim.sgd(schedules.exponential_decay(0.1, 1e10, 1)), r"1\.0*\d*e\+39", 4),
    ("sgd", lambda: optim.sgd(lambda count: 1e300), r"1e\+300", 0),
    ("momentum", lambda: optim.momentum(schedules.exponential_decay(1.0, 2.0, 1)), r"3.4\d*e\+38", 128),
    ("adam", lambda: optim.adam(lambda count: math.inf if count >= 2 else 0.01), "inf", 2),
    ("rmsprop", lambda: optim.rmsprop(lambda count: float("nan")), "nan", 0),
])
def test_a_schedule_giving_inf_or_nan_names_optimizer_value_and_step(name, make, value, step):
    opt = make()
    params = {"w": np.ones(2, np.float32)}
    grads = {"w": np.zeros(2, np.float32)}
    state = opt.init(params)
    for _ in range(step):
        params, state = opt.update(params, grads, state)
    with pytest.raises(ValueError, match=rf"^{name}: the lr schedule gave {value} at step {step}; a learning rate must "
                                         r"be >= 0 and finite in the params' float32$"):
        opt.update(params, grads, state)
    with pytest.raises(ValueError, match=rf"^{name}: lr must be a finite number >= 0.0, got inf$"):
        getattr(optim, name)(math.inf)  # the same words for a constant lr, refused when built


def test_a_growing_exponential_decay_overflows_to_inf_not_an_overflow_error():
    grow = schedules.exponential_decay(1.0, 2.0, 1)
    assert grow(2000) == math.inf
    with np.errstate(over="ignore"):  # NumPy's own overflow warning, on the array path
        assert grow(np.asarray(2000, np.int32)) == np.inf
    with pytest.raises(ValueError, match="sgd: the lr schedule gave inf at step 5000"):
        optim.sgd(grow).update({"w": np.ones(1)}, {"w": np.ones(1)}, optim.SGDState(np.asarray(5000, np.int32)))


def test_float16_params_are_stepped_in_float32():
    # lr 1e5 is not a float16 number, but the step of float16 params is computed in float32
    opt = optim.sgd(1e5)
    params = {"W": np.ones(3, np.float16)}
    new, _ = opt.update(params, {"W": np.full(3, 1e-5, np.float16)}, opt.init(params))
    assert new["W"].dtype == np.float16 and np.all(np.isfinite(new["W"]))


def test_a_users_rule_is_checked_and_the_builtins_opt_out():
    # from_rule checks a user's leaf outputs by default; the built-ins, whose leaf functions are
    # known to return what they must, turn the check off (it costs a microsecond a step)
    assert optim.from_rule("mine", lambda step: (lambda p, g: (p - g,)), lr=0.1).leafwise.check_outputs
    for make in (optim.sgd, optim.momentum, optim.adagrad, optim.rmsprop, optim.adam):
        assert not make(0.1).leafwise.check_outputs
    sloppy = optim.from_rule("sloppy", lambda step: (lambda p, g: p - g), lr=0.1)
    params = {"w": np.ones(2, np.float32)}
    with pytest.raises(TypeError, match="sloppy: the rule's leaf function must return a tuple of 1"):
        sloppy.update(params, params, sloppy.init(params))
