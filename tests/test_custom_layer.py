"""A user's own layer and loss, built from the public API (examples/10_custom_layer.py).

The LayerNorm and the label-smoothed cross-entropy are imported from the example file itself,
so the example, these tests and the listing in docs/extending.md are the same code (the last
test checks the listing against the example's source).
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import subprocess
import sys
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import backend_or_skip, readonly

from funcnet import backend, gradcheck, layers, losses, optim, random, train, tree
from funcnet.datasets import spiral

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "10_custom_layer.py"


def _load_example():
    # the example imports its sibling _common (as every example does): make it findable
    examples = str(EXAMPLE.parent)
    if examples not in sys.path:
        sys.path.insert(0, examples)
    spec = importlib.util.spec_from_file_location("custom_layer_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = _load_example()
LayerNorm = example.LayerNorm
smoothed_ce = example.label_smoothed_cross_entropy


def random_params(rng, dim, dtype=np.float64):
    """gamma and beta away from (1, 0), so every term of the pullback matters."""
    return {"gamma": rng.standard_normal(dim).astype(dtype), "beta": rng.standard_normal(dim).astype(dtype)}


# --- the layer ------------------------------------------------------------------------------


def test_layer_from_vjp_declares_what_layernorm_can_do():
    layer = LayerNorm()
    assert isinstance(layer, layers.Layer)
    assert (layer.stochastic, layer.skips_input_grad, layer.kind, layer.sublayers) == (False, False, None, ())
    out_shape, params = layer.init(random.key(0), (4,))
    assert out_shape == (4,)
    chex.assert_shape([params["gamma"], params["beta"]], (4,))
    chex.assert_trees_all_equal(params, {"gamma": np.ones(4, np.float32), "beta": np.zeros(4, np.float32)})
    chex.assert_trees_all_equal_dtypes(params, {"gamma": np.ones(4, np.float32), "beta": np.ones(4, np.float32)})


def test_output_is_normalised_per_example_and_keeps_float32():
    rng = np.random.default_rng(0)
    _, params = LayerNorm().init(random.key(0), (6,))
    x = (3.0 + 5.0 * rng.standard_normal((8, 6))).astype(np.float32)
    y = LayerNorm().apply(params, x)
    chex.assert_shape(y, (8, 6))
    chex.assert_tree_all_finite(y)
    assert y.dtype == np.float32
    np.testing.assert_allclose(np.mean(y, axis=1), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.var(y, axis=1), 1.0, rtol=1e-4)  # eps 1e-5 against a variance of ~25


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(4, 5), (1, 3), (7, 3)])
def test_vjp_matches_float64_central_differences(seed, shape):
    rng = np.random.default_rng(seed)
    params = readonly(random_params(rng, shape[1]))
    x = readonly(rng.standard_normal(shape))
    worst = gradcheck.check_layer(LayerNorm(), params, x, seed=seed, tol=1e-6)
    assert worst <= 1e-6


def test_two_features_need_a_wider_difference_step():
    """With two features the normalised pair is always about (+1, -1): dx is nearly zero (only
    eps=1e-5 in the variance keeps it from vanishing, ||dx|| ~ 2e-4 here), so the default step
    1e-6 measures mostly float64 round-off (~1e-10 an entry: relative 3e-6). A step of 1e-4
    takes the round-off out; the tolerance stays 1e-6."""
    rng = np.random.default_rng(2)
    params, x = random_params(rng, 2), rng.standard_normal((7, 2))
    _, pullback = LayerNorm().vjp(params, x)
    assert float(np.linalg.norm(pullback(np.ones((7, 2)))[1])) < 1e-3
    assert gradcheck.check_layer(LayerNorm(), params, x, seed=2, eps=1e-4, tol=1e-6) <= 1e-6


def test_a_wrong_pullback_fails_the_gradcheck():
    """The oracle is sharp enough: dropping the variance term of dx is caught."""
    good = LayerNorm(eps=1e-5)

    def vjp(params, x, *, rng=None):
        y, pullback = good.vjp(params, x)
        xp = backend.namespace(x)
        inv_std = 1.0 / xp.sqrt(xp.var(x, axis=1, keepdims=True) + 1e-5)

        def wrong(dy):
            grads, _ = pullback(dy)
            d_hat = dy * params["gamma"]
            return grads, inv_std * (d_hat - xp.mean(d_hat, axis=1, keepdims=True))  # no x_hat term

        return y, wrong

    bad = layers.layer_from_vjp(good.init, vjp, stochastic=False)
    rng = np.random.default_rng(0)
    with pytest.raises(gradcheck.GradientCheckError, match="at x"):
        gradcheck.check_layer(bad, random_params(rng, 5), rng.standard_normal((4, 5)))


class LayerNormOnJaxTest(chex.TestCase):
    """The hand-written pullback against jax.vjp of the layer's own apply, jitted and not."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_pullback_matches_jax_vjp_of_apply(self):
        rng = np.random.default_rng(3)
        layer = LayerNorm()
        params = backend.put(random_params(rng, 5), "jax")  # float64: conftest enables x64
        x = jnp.asarray(rng.standard_normal((6, 5)))
        dy = jnp.asarray(rng.standard_normal((6, 5)))

        def ours(p, x_, dy_):
            y, pullback = layer.vjp(p, x_)
            return y, pullback(dy_)

        def theirs(p, x_, dy_):
            y, pullback = jax.vjp(lambda p_, xx: layer.apply(p_, xx), p, x_)
            return y, pullback(dy_)

        got = self.variant(ours)(params, x, dy)
        want = theirs(params, x, dy)
        chex.assert_trees_all_close(got, want, rtol=1e-10, atol=1e-12)
        chex.assert_trees_all_equal_dtypes(got, want)

    @chex.variants(with_jit=True, without_jit=True)
    def test_float32_stays_float32_on_jax(self):
        layer = LayerNorm()
        _, params = layer.init(random.key(0), (4,))
        params = backend.put(params, "jax")
        x = jnp.ones((3, 4), jnp.float32) * jnp.arange(4, dtype=jnp.float32)

        def run(p, x_):
            y, pullback = layer.vjp(p, x_)
            return y, pullback(jnp.ones_like(y))

        y, (grads, dx) = self.variant(run)(params, x)
        chex.assert_trees_all_equal_dtypes((y, grads, dx), (x, params, x))
        chex.assert_tree_all_finite((y, grads, dx))


def test_numpy_and_array_api_strict_agree_bit_for_bit():
    xs = backend_or_skip("array_api_strict")
    rng = np.random.default_rng(4)
    params = random_params(rng, 5, np.float32)
    x = rng.standard_normal((6, 5)).astype(np.float32)
    dy = rng.standard_normal((6, 5)).astype(np.float32)
    y, pullback = LayerNorm().vjp(params, x)
    sy, spullback = LayerNorm().vjp(backend.put(params, xs), backend.put(x, xs))
    chex.assert_trees_all_equal((y, pullback(dy)), backend.to_numpy((sy, spullback(backend.put(dy, xs)))))


def test_np_inside_a_layer_fails_under_jit():
    """Why the example's comment says never `np.` in a layer: the traced input cannot become NumPy."""

    def init(key, in_shape, dtype="float32"):
        return tuple(in_shape), ()

    def vjp(params, x, *, rng=None):
        y = np.sqrt(x * x + 1.0)
        return y, lambda dy: ((), dy * x / y)

    host_only = layers.layer_from_vjp(init, vjp, stochastic=False)
    x = jnp.ones((2, 3), jnp.float32)
    with pytest.raises(jax.errors.TracerArrayConversionError):
        jax.jit(lambda x_: host_only.apply((), x_))(x)
    # outside jit it runs, but the result has left jax for the host
    assert type(host_only.apply((), x)) is np.ndarray
    params = backend.put({"gamma": np.ones(3, np.float32), "beta": np.zeros(3, np.float32)}, "jax")
    y = jax.jit(LayerNorm().apply)(params, x)  # the example's layer, written with xp, traces
    chex.assert_tree_all_finite(y)


def test_a_wrong_width_is_named_and_placed_in_serial():
    _, params = LayerNorm().init(random.key(0), (4,))
    with pytest.raises(ValueError, match=r"LayerNorm: expected input of shape \(N, 4\), got \(2, 3\)"):
        LayerNorm().apply(params, np.ones((2, 3), np.float32))
    net = example.model(hidden=4)
    _, net_params = net.init(random.key(0), (2,))
    bad = (net_params[0], {"gamma": np.ones(5, np.float32), "beta": np.zeros(5, np.float32)}, *net_params[2:])
    with pytest.raises(ValueError, match=r"serial layer 1: LayerNorm"):
        net.apply(bad, np.ones((2, 2), np.float32))


def test_serial_vjp_through_layernorm_matches_central_differences():
    rng = np.random.default_rng(5)
    net = example.model(hidden=4)
    _, params = net.init(random.key(2), (2,), "float64")
    params = (params[0], random_params(rng, 4), *params[2:])
    assert gradcheck.check_layer(net, params, rng.standard_normal((5, 2)), tol=1e-6) <= 1e-6


# --- the loss -------------------------------------------------------------------------------


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_loss_vjp_matches_float64_central_differences(smoothing):
    rng = np.random.default_rng(6)
    logits = readonly(3.0 * rng.standard_normal((5, 4)))
    labels = readonly(np.array([0, 3, 1, 2, 3]))
    assert gradcheck.check_loss(smoothed_ce(smoothing), logits, labels, tol=1e-6) <= 1e-6


def test_no_smoothing_is_the_built_in_cross_entropy():
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((6, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 2, 1, 0])
    ours, our_pullback = smoothed_ce(0.0).vjp(logits, labels)
    theirs, their_pullback = losses.softmax_cross_entropy.vjp(logits, labels)
    chex.assert_trees_all_close((ours, our_pullback()), (theirs, their_pullback()), rtol=1e-6, atol=1e-7)
    chex.assert_trees_all_equal_dtypes((ours, our_pullback()), (theirs, their_pullback()))


def test_float32_stays_float32_whatever_the_smoothing_scalar():
    logits = np.zeros((2, 3), np.float32)
    for smoothing in (0.1, np.float64(0.1), np.float32(0.1)):
        value, pullback = smoothed_ce(smoothing).vjp(logits, np.array([0, 2]))
        assert value.dtype == np.float32 and pullback().dtype == np.float32
        assert pullback(np.float64(2.0)).dtype == np.float32


def test_smoothing_has_its_closed_form():
    # equal logits: log p = -log C for every class, whatever the targets
    loss = smoothed_ce(0.2).value(np.zeros((4, 5)), np.array([0, 1, 2, 3]))
    np.testing.assert_allclose(float(loss), np.log(5.0), rtol=1e-12)


class SmoothedLossOnJaxTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_pullback_matches_jax_vjp_of_value(self):
        rng = np.random.default_rng(8)
        loss = smoothed_ce(0.1)
        logits = jnp.asarray(rng.standard_normal((5, 3)))
        labels = jnp.asarray(np.array([0, 2, 1, 1, 0]))

        def ours(z, t):
            value, pullback = loss.vjp(z, t)
            return value, pullback(jnp.asarray(0.7))

        def theirs(z, t):
            value, pullback = jax.vjp(lambda z_: loss.value(z_, t), z)
            return value, pullback(jnp.asarray(0.7))[0]

        chex.assert_trees_all_close(self.variant(ours)(logits, labels), theirs(logits, labels),
                                    rtol=1e-10, atol=1e-12)


def test_loss_names_bad_targets():
    loss = smoothed_ce(0.1)
    logits = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match=r"label_smoothed_cross_entropy: labels must be in \[0, 3\)"):
        loss.value(logits, np.array([0, 1, 3]))
    with pytest.raises(ValueError, match="label_smoothed_cross_entropy: labels must be in"):
        loss.vjp(logits, np.array([-1, 1, 2]))
    with pytest.raises(TypeError, match="labels must be integers"):
        loss.value(logits, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="expected logits"):
        loss.value(logits, np.array([0, 1]))
    with pytest.raises(ValueError, match="smoothing must be in"):
        smoothed_ce(1.0)


# --- training -------------------------------------------------------------------------------


def test_training_on_numpy_and_jax_gives_the_same_loss_history():
    """Same initial params, same batches; float32 round-off of two libraries (HISTORY_RTOL, 1e-5,
    explained in the example) is all that may differ. jax runs fit's compiled epochs (jax.jit)."""
    ref = example.train_on("numpy", 30, progress=False)
    got = example.train_on("jax", 30, progress=False)
    assert len(ref["losses"]) == len(got["losses"]) == 30
    np.testing.assert_allclose(got["losses"], ref["losses"], rtol=example.HISTORY_RTOL)
    np.testing.assert_allclose(got["loss"], ref["loss"], rtol=example.HISTORY_RTOL)
    assert got["accuracy"] == ref["accuracy"]
    assert ref["losses"][-1] < 0.8 * ref["losses"][0]  # and it does learn


def test_trained_params_agree_between_numpy_and_jax():
    x, t = spiral.load_data(one_hot=False)
    x = x.astype(np.float32)
    net, loss, optimizer = example.model(), smoothed_ce(0.1), optim.sgd(1.0)
    step = train.TrainStep(net, loss, optimizer)
    state = train.init_state(net, optimizer, random.key(0), (2,))
    ref, _ = train.fit(step, state, x, t, epochs=10, batch_size=30, progress=False)
    got, _ = train.fit(step, backend.put(state, "jax"), *backend.put((x, t), "jax"), epochs=10, batch_size=30,
                       progress=False)
    got_params = backend.to_numpy(got.params)
    chex.assert_trees_all_close(ref.params, got_params, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_equal_dtypes(ref.params, got_params)
    chex.assert_tree_all_finite(got_params)
    assert tree.structure(ref.params) == tree.structure(got_params)


def test_fit_checks_labels_against_the_user_loss_only_through_a_train_step():
    x, t = spiral.load_data(one_hot=False)
    x, bad = x.astype(np.float32), t.copy()
    bad[17] = 3  # one label past the 3 classes
    net, loss, optimizer = example.model(), smoothed_ce(0.1), optim.sgd(1.0)
    step = train.TrainStep(net, loss, optimizer)
    state = backend.put(train.init_state(net, optimizer, random.key(0), (2,)), "jax")
    jx, jbad = backend.put((x, bad), "jax")
    # a TrainStep shows fit its loss: the labels are checked once, before the first (jitted) step
    with pytest.raises(ValueError, match=r"label_smoothed_cross_entropy: labels must be in \[0, 3\)"):
        train.fit(step, state, jx, jbad, epochs=1, batch_size=30, progress=False)

    # a plain function hides model and loss; inside jit the loss cannot read values: it trains silently
    def plain(s, batch):
        return step(s, batch)

    trained, history = train.fit(plain, state, jx, jbad, epochs=1, batch_size=30, eval_interval=10,
                                 progress=False)
    assert int(trained.step) == 10 and len(history["loss"]) == 1


# --- the example and the docs ---------------------------------------------------------------


def test_example_runs_in_smoke_mode(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["FUNCNET_SMOKE"] = "1"
    result = subprocess.run([sys.executable, str(EXAMPLE), "--out", str(tmp_path), "--no-progress"], env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    assert "gradcheck LayerNorm: worst relative error" in result.stdout
    assert "[numpy] 3 epochs" in result.stdout and "[jax] 3 epochs" in result.stdout
    assert "loss histories, jax vs numpy" in result.stdout
    png = tmp_path / "10_custom_layer_loss.png"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_docs_show_the_examples_layernorm_verbatim():
    docs = (ROOT / "docs" / "extending.md").read_text()
    assert "## Your own layer" in docs and "## Your own loss" in docs
    for function in (LayerNorm, smoothed_ce):
        source = inspect.getsource(function)
        assert source in docs, f"docs/extending.md does not show {function.__name__} as the example has it"


# --- a user's layer and a user's optimizer together -----------------------------------------------


def test_the_users_layernorm_and_the_docs_lion_train_the_spiral_on_numpy_and_jax():
    # both written only with the public API (the example's LayerNorm, docs/extending.md's Lion),
    # trained by fit inside serial; the two backends give the same losses to float32 rounding
    from test_optim_rules import DOC

    backend_or_skip("jax")
    x, t = spiral.load_data(dtype="float32")
    histories = {}
    for name in ("numpy", "jax"):
        model = layers.serial(layers.Affine(10), LayerNorm(), layers.Sigmoid(), layers.Affine(3))
        opt = DOC["lion"](0.01)
        step = train.TrainStep(model, losses.softmax_cross_entropy, opt)
        state = train.init_state(model, opt, random.key(0), (2,), backend=name)
        data = (x, t) if name == "numpy" else backend.put((x, t), "jax")
        final, history = train.fit(step, state, *data, epochs=30, batch_size=30, eval_interval=10, progress=False)
        assert type(final.opt_state).__name__ == "LionState"
        histories[name] = history["loss"]
    assert histories["numpy"][-1] < 0.8 * histories["numpy"][0]  # it learns
    # 300 steps of float32 on two backends; Lion's sign makes tiny differences stay tiny
    np.testing.assert_allclose(histories["jax"], histories["numpy"], rtol=1e-4)
