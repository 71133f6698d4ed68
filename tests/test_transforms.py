"""Gradient transformations, chain, accumulate and from_optax, each against optax step by step.

The reference is optax run in float64 on the jax backend (x64 is on in conftest); funcnet runs
on NumPy in float64, so the two agree to rounding. Resuming is checked bit for bit: a state saved
half-way with ``funcnet.checkpoint`` and loaded into a fresh ``init``'s structure continues exactly
as never stopping.
"""

from __future__ import annotations

import chex
import numpy as np
import pytest
from test_optim import assert_jit_equals_eager

from funcnet import backend, checkpoint, optim, schedules, tree

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
optax = pytest.importorskip("optax")

STEPS = 7


def make_params(dtype=np.float64):
    rng = np.random.default_rng(11)
    return {"layer": ({"W": rng.standard_normal((3, 4)).astype(dtype), "b": rng.standard_normal(4).astype(dtype)}, ()),
            "scale": rng.standard_normal(2).astype(dtype)}


def make_grads(dtype=np.float64, steps=STEPS, size=3.0):
    rng = np.random.default_rng(12)
    return [tree.map(lambda x: (size * rng.standard_normal(x.shape)).astype(dtype), make_params())
            for _ in range(steps)]


def optax_run(tx, params, grads_seq):
    """Params after each step of optax's ``tx`` on the jax backend, as NumPy trees."""
    p = backend.put(params, "jax")
    state = tx.init(p)
    out = []
    for grads in grads_seq:
        updates, state = tx.update(backend.put(grads, "jax"), state, p)
        p = optax.apply_updates(p, updates)
        out.append(backend.to_numpy(p))
    return out


def funcnet_run(opt, params, grads_seq):
    state = opt.init(params)
    out = []
    for grads in grads_seq:
        params, state = opt.update(params, grads, state)
        out.append(params)
    return out, state


def assert_steps_close(got, want, rtol=1e-12):
    assert len(got) == len(want)
    for step, (g, w) in enumerate(zip(got, want, strict=True)):
        try:
            chex.assert_trees_all_close(g, w, rtol=rtol, atol=rtol * 1e-2)
        except AssertionError as err:
            raise AssertionError(f"step {step}: {err}") from None


# --- the demo of the issue: optax's chain, name for name ---------------------------------------------


def test_clip_decay_adam_chain_equals_optax_step_by_step():
    ours = optim.chain(optim.clip_by_global_norm(1.0, form="standard"), optim.add_decayed_weights(1e-4),
                       optim.adam(0.01, form="standard"))
    theirs = optax.chain(optax.clip_by_global_norm(1.0), optax.add_decayed_weights(1e-4), optax.adam(0.01))
    params, grads = make_params(), make_grads()
    got, state = funcnet_run(ours, params, grads)
    assert_steps_close(got, optax_run(theirs, params, grads))
    assert type(state) is optim.ChainState and state.transforms == ((), ())
    assert type(state.optimizer) is optim.AdamState and int(state.optimizer.count) == STEPS


def test_the_decay_in_front_of_adam_is_l2_not_adamw():
    # the order matters as in optax: decay in front of adam goes through adam's scaling
    params, grads = make_params(), make_grads()
    l2, _ = funcnet_run(optim.chain(optim.add_decayed_weights(0.1), optim.adam(0.01, form="standard")),
                        params, grads)
    decoupled, _ = funcnet_run(optim.adamw(0.01, weight_decay=0.1), params, grads)
    assert_steps_close(l2, optax_run(optax.chain(optax.add_decayed_weights(0.1), optax.adam(0.01)), params, grads))
    assert_steps_close(decoupled, optax_run(optax.adamw(0.01, weight_decay=0.1), params, grads))
    assert not np.allclose(l2[-1]["scale"], decoupled[-1]["scale"], rtol=1e-6)


@pytest.mark.parametrize("lr", [0.01, schedules.cosine_decay(0.02, 5, 0.1)], ids=["constant", "cosine"])
def test_adamw_equals_optax_adamw(lr):
    theirs_lr = lr if isinstance(lr, float) else optax.cosine_decay_schedule(0.02, 5, 0.1)
    params, grads = make_params(), make_grads()
    got, _ = funcnet_run(optim.adamw(lr, b1=0.8, b2=0.99, eps=1e-7, weight_decay=0.05), params, grads)
    want = optax_run(optax.adamw(theirs_lr, b1=0.8, b2=0.99, eps=1e-7, weight_decay=0.05), params, grads)
    assert_steps_close(got, want)


# --- each transformation against optax's own ------------------------------------------------------------

TRANSFORM_CASES = [
    ("clip_by_global_norm/standard", lambda: optim.clip_by_global_norm(4.0, form="standard"),
     lambda: optax.clip_by_global_norm(4.0)),
    ("clip", lambda: optim.clip(1.5), lambda: optax.clip(1.5)),
    ("add_decayed_weights", lambda: optim.add_decayed_weights(0.3), lambda: optax.add_decayed_weights(0.3)),
    ("scale_by_schedule", lambda: optim.scale_by_schedule(schedules.cosine_decay(0.5, 4, 0.2)),
     lambda: optax.scale_by_schedule(optax.cosine_decay_schedule(0.5, 4, 0.2))),
    ("scale_by_adam", lambda: optim.scale_by_adam(0.8, 0.95, 1e-6, 1e-10),
     lambda: optax.scale_by_adam(0.8, 0.95, 1e-6, 1e-10)),
]


@pytest.mark.parametrize(("name", "ours", "theirs"), TRANSFORM_CASES, ids=[c[0] for c in TRANSFORM_CASES])
def test_transform_equals_optax_step_by_step(name, ours, theirs):
    ours, theirs = ours(), theirs()
    params, grads_seq = make_params(), make_grads()
    jparams = backend.put(params, "jax")
    state, their_state = ours.init(params), theirs.init(jparams)
    for step, grads in enumerate(grads_seq):
        got, state = ours.update(grads, state, params)
        want, their_state = theirs.update(backend.put(grads, "jax"), their_state, jparams)
        chex.assert_trees_all_equal_dtypes(got, grads)
        try:
            chex.assert_trees_all_close(got, backend.to_numpy(want), rtol=1e-12, atol=1e-14)
        except AssertionError as err:
            raise AssertionError(f"{name}, step {step}: {err}") from None


def test_clipping_by_global_norm_triggers_in_the_test_data():
    # the clip cases above only mean something if the data is clipped in some steps and not in others
    norms = [float(tree.global_norm(g)) for g in make_grads()]
    assert min(norms) > 4.0
    small = [float(tree.global_norm(g)) for g in make_grads(size=0.5)]
    assert max(small) < 4.0
    got, _ = optim.clip_by_global_norm(4.0, form="standard").update(make_grads(size=0.5)[0], (), None)
    chex.assert_trees_all_equal(got, make_grads(size=0.5)[0])


def test_book_clip_is_the_book_formula_and_differs_from_optax():
    grads = make_grads()[0]
    book, _ = optim.clip_by_global_norm(1.0).update(grads, (), None)
    chex.assert_trees_all_equal(book, optim.clip_grads(grads, 1.0))
    norm = np.sqrt(sum(np.sum(g * g) for g in tree.leaves(grads)))  # the book's formula, written out
    chex.assert_trees_all_close(book, tree.map(lambda g: g * (1.0 / (norm + 1e-6)), grads), rtol=1e-14)
    standard, _ = optim.clip_by_global_norm(1.0, form="standard").update(grads, (), None)
    chex.assert_trees_all_close(standard, book, rtol=1e-6)
    assert not np.array_equal(standard["scale"], book["scale"])


@pytest.mark.parametrize("k", [1, 3])
def test_accumulate_equals_optax_multisteps(k):
    params, grads = make_params(), make_grads(steps=9)
    got, state = funcnet_run(optim.accumulate(k, optim.adam(0.05, form="standard")), params, grads)
    # optax accumulates in float32 by default, even for float64 params
    want = optax_run(optax.MultiSteps(optax.adam(0.05), every_k_schedule=k, accumulator_dtype=jnp.float64),
                     params, grads)
    assert_steps_close(got, want)
    assert int(state.inner.count) == 9 // k and int(state.mini_step) == 9 % k


def test_accumulate_leaves_params_alone_between_steps_and_steps_on_the_mean():
    params, grads = make_params(), make_grads(steps=3)
    got, _ = funcnet_run(optim.accumulate(3, optim.sgd(1.0)), params, grads)
    assert got[0] is params and got[1] is params
    mean = tree.scale(tree.add(tree.add(grads[0], grads[1]), grads[2]), 1.0 / 3.0)
    chex.assert_trees_all_close(got[2], tree.sub(params, mean), rtol=1e-14)


@pytest.mark.parametrize("opt", [
    optim.accumulate(2, optim.chain(optim.clip(1.0), optim.momentum(0.1))),
    optim.chain(optim.clip_by_global_norm(1.0, form="standard"), optim.add_decayed_weights(1e-3),
                optim.scale_by_schedule(schedules.exponential_decay(1.0, 0.5, 3)), optim.adam(0.01, form="standard")),
], ids=["accumulate", "chain"])
def test_under_jit_equals_eager(opt):
    params = backend.put(make_params(np.float32), "jax")
    assert_jit_equals_eager(opt, params, [backend.put(g, "jax") for g in make_grads(np.float32, steps=5)])


# --- from_optax ---------------------------------------------------------------------------------------------


def test_from_optax_adamw_equals_funcnets_own_adamw_chain():
    params = backend.put(make_params(), "jax")
    grads = [backend.put(g, "jax") for g in make_grads()]
    theirs, _ = funcnet_run(optim.from_optax(optax.adamw(0.01, weight_decay=0.02)), params, grads)
    ours, _ = funcnet_run(optim.adamw(0.01, weight_decay=0.02), params, grads)
    assert_steps_close([backend.to_numpy(x) for x in ours], [backend.to_numpy(x) for x in theirs])
    jitted = jax.jit(optim.from_optax(optax.adamw(0.01, weight_decay=0.02)).update)
    opt = optim.from_optax(optax.adamw(0.01, weight_decay=0.02))
    p, state = params, opt.init(params)
    for g in grads:
        p, state = jitted(p, g, state)
    chex.assert_trees_all_close(p, theirs[-1], rtol=1e-12)


def test_optax_is_not_imported_with_funcnet():
    import subprocess
    import sys

    code = "import sys, funcnet, funcnet.optim; print('optax' in sys.modules, 'jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_from_optax_refuses_what_is_not_a_transformation():
    with pytest.raises(TypeError, match="from_optax: tx must be an optax GradientTransformation, got Optimizer"):
        optim.from_optax(optim.sgd(0.1))


# --- resuming mid-way, bit for bit ----------------------------------------------------------------------------

RESUME_CASES = {
    "clip+decay+adam": lambda: optim.chain(optim.clip_by_global_norm(1.0, form="standard"),
                                           optim.add_decayed_weights(1e-4), optim.adam(0.01, form="standard")),
    "adamw/schedule": lambda: optim.adamw(schedules.warmup(schedules.cosine_decay(0.02, 10), 3)),
    "clip+scale_by_schedule+momentum": lambda: optim.chain(
        optim.clip(0.5), optim.scale_by_schedule(schedules.step_decay(1.0, 0.5, 2)), optim.momentum(0.1)),
    "accumulate(3, adam)": lambda: optim.accumulate(3, optim.adam(0.01)),
    "accumulate(2, chain)": lambda: optim.accumulate(2, optim.chain(optim.clip(1.0), optim.nesterov(0.1))),
    "chain(accumulate)": lambda: optim.chain(optim.clip(1.0), optim.accumulate(4, optim.rmsprop(0.01))),
}


@pytest.mark.parametrize("make", RESUME_CASES.values(), ids=RESUME_CASES.keys())
@pytest.mark.parametrize("stop", [1, 4])
def test_a_state_saved_half_way_resumes_bit_for_bit(tmp_path, make, stop):
    params, grads = make_params(np.float32), make_grads(np.float32, steps=8)
    opt = make()
    straight, _ = funcnet_run(opt, params, grads)
    p, state = params, opt.init(params)
    for g in grads[:stop]:
        p, state = opt.update(p, g, state)
    path = tmp_path / "half.safetensors"
    checkpoint.save(path, {"params": p, "opt_state": state})
    fresh = make()
    loaded = checkpoint.load(path, like={"params": params, "opt_state": fresh.init(params)})
    chex.assert_trees_all_equal(loaded["opt_state"], state)
    chex.assert_trees_all_equal_dtypes(loaded["opt_state"], state)
    p, state = loaded["params"], loaded["opt_state"]
    for g in grads[stop:]:
        p, state = fresh.update(p, g, state)
    chex.assert_trees_all_equal(p, straight[-1])


# --- bad input -----------------------------------------------------------------------------------------------


def test_a_bare_optimizer_state_in_a_chain_is_named():
    params = make_params()
    opt = optim.chain(optim.clip(1.0), optim.adam())
    with pytest.raises(TypeError, match=r"chain.update: state must be the ChainState that the chain's init makes, "
                                        r"got AdamState \(the bare optimizer's state\?"):
        opt.update(params, params, optim.adam().init(params))
    other = optim.chain(optim.adam()).init(params)
    with pytest.raises(TypeError, match="got a ChainState of 0 transformations, expected 1"):
        opt.update(params, params, other)


@pytest.mark.parametrize(("make", "error", "match"), [
    (lambda: optim.chain(optim.sgd(0.1), optim.clip(1.0)), TypeError,
     "chain: the last argument must be an Optimizer, got GradientTransform"),
    (lambda: optim.chain(), TypeError, "got nothing"),
    (lambda: optim.chain(lambda g: g, optim.sgd(0.1)), TypeError, "argument 0 must be .* lift a function"),
    (lambda: optim.stateless(3), TypeError, "stateless: fn must be a function"),
    (lambda: optim.clip(-1.0), ValueError, "clip: max_delta must be a finite number >= 0.0"),
    (lambda: optim.clip_by_global_norm(1.0, form="optax"), ValueError, "form must be 'book' or 'standard'"),
    (lambda: optim.add_decayed_weights(float("nan")), ValueError, "add_decayed_weights: weight_decay"),
    (lambda: optim.scale_by_schedule(0.1), TypeError, "scale_by_schedule: schedule must be a function"),
    (lambda: optim.scale_by_adam(b2=1.0), ValueError, r"scale_by_adam: b2 must be in \[0.0, 1.0\)"),
    (lambda: optim.accumulate(0, optim.sgd(0.1)), ValueError, "accumulate: k must be a positive int, got 0"),
    (lambda: optim.accumulate(2, optim.clip(1.0)), TypeError, "accumulate: optimizer must be an Optimizer"),
    (lambda: optim.add_decayed_weights(0.1).update({"w": np.ones(1)}, (), None), ValueError,
     "add_decayed_weights.update: params must be given"),
    (lambda: optim.scale_by_adam().update({"w": np.ones(1)}, optim.scale_by_adam().init({"w": np.ones(1)}), None),
     ValueError, "scale_by_adam.update: params must be given"),
    (lambda: optim.accumulate(2, optim.sgd(0.1)).update({"w": np.ones(1)}, {"w": np.ones(1)},
                                                        optim.sgd(0.1).init({"w": np.ones(1)})),
     TypeError, "accumulate.update: state must be the AccumulateState .* got SGDState"),
    (lambda: optim.scale_by_schedule(lambda c: float("inf")).update({"w": np.ones(1)}, optim.ScaleByScheduleState(3),
                                                                    None),
     ValueError, "scale_by_schedule: the schedule gave inf at step 3"),
])
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_the_standard_clip_is_optax_bit_for_bit_on_known_values():
    grads = {"a": np.array([3.0, 4.0], np.float32)}  # norm 5, exactly
    for max_norm in (0.9, 1.1, 2.3):
        ours, _ = optim.clip_by_global_norm(max_norm, form="standard").update(grads, (), None)
        theirs, _ = optax.clip_by_global_norm(max_norm).update(grads, optax.EmptyState())
        assert np.array_equal(ours["a"], np.asarray(theirs["a"])), max_norm


@pytest.mark.parametrize(("mini_step", "error", "match"), [
    (7, ValueError, r"state.mini_step is 7, outside \[0, 2\): a state of another accumulate"),
    (np.int32(-1), ValueError, r"state.mini_step is -1, outside \[0, 2\)"),
    (1.5, TypeError, r"state.mini_step must be an integer count, got 1.5"),
])
def test_accumulate_refuses_a_count_of_another_k_or_no_count(mini_step, error, match):
    # a count past k divided the mean wrongly (and on jax the step never came): a state of another k
    params, grads = {"w": np.array([1.0, 2.0], np.float32)}, {"w": np.ones(2, np.float32)}
    opt = optim.accumulate(2, optim.sgd(1.0))
    with pytest.raises(error, match=match):
        opt.update(params, grads, opt.init(params)._replace(mini_step=mini_step))


def test_accumulate_refuses_an_integer_mean():
    params, grads = {"w": np.array([1.0, 2.0], np.float32)}, {"w": np.ones(2, np.float32)}
    opt = optim.accumulate(2, optim.sgd(1.0))
    with pytest.raises(ValueError, match=r"state.grad_mean leaf 'w' .* or is not floating point"):
        opt.update(params, grads, opt.init(params)._replace(grad_mean={"w": np.zeros(2, np.int64)}))
