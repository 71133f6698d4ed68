"""Reproducibility: same seed, same bits; no global random state; resume equals never stopping.

* The same short training in two fresh processes (different ``PYTHONHASHSEED``) and in this
  one writes byte-identical checkpoints; another seed gives other params.
* No public function that uses randomness reads or changes NumPy's legacy global generator or
  Python's ``random`` module (conftest checks NumPy's once for the whole suite; this checks each
  function, and that scrambling the global generators changes no result).
* For every optimizer (plain, with a schedule as lr, with clipping) fit 2 epochs, save, load,
  fit 2 more equals fit 4 epochs, bit for bit: the optimizer's state and step travel in the file.
"""

from __future__ import annotations

import os
import random as pyrandom
import subprocess
import sys
import textwrap
from pathlib import Path

import chex
import numpy as np
import pytest
from conftest import OPTIMIZER_SETUPS

from funcnet import checkpoint, initializers, layers, optim, random, recipes, train, tree
from funcnet.datasets import spiral
from funcnet.losses import softmax_cross_entropy
from funcnet.models import TwoLayerNet
from funcnet.trainer import Trainer

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def data():
    return spiral.load_data(dtype="float32")


def dropout_net() -> layers.Layer:
    return layers.serial(layers.Affine(12), layers.ReLU(), layers.Dropout(0.25), layers.Affine(12),
                         layers.Tanh(), layers.Affine(3))


# ------------------------------------------------------------------ across processes and runs

_TRAIN = textwrap.dedent("""
    import sys
    from funcnet import checkpoint, layers, optim, random, train
    from funcnet.datasets import spiral
    from funcnet.losses import softmax_cross_entropy

    def run(seed, path):
        x, t = spiral.load_data(dtype="float32")
        model = layers.serial(layers.Affine(12), layers.ReLU(), layers.Dropout(0.25), layers.Affine(12),
                              layers.Tanh(), layers.Affine(3))
        opt = optim.adam(0.01)
        step = train.make_train_step(model, softmax_cross_entropy, opt)
        state = train.init_state(model, opt, random.key(seed), (2,))
        state, history = train.fit(step, state, x, t, epochs=3, batch_size=30, eval_interval=5, progress=False)
        checkpoint.save(path, state, metadata={"losses": repr(history["loss"])})

    if __name__ == "__main__":
        run(int(sys.argv[1]), sys.argv[2])
""")


def _in_a_fresh_process(tmp_path: Path, seed: int, hash_seed: str) -> bytes:
    path = tmp_path / f"seed{seed}-hash{hash_seed}.safetensors"
    env = {**os.environ, "PYTHONHASHSEED": hash_seed,
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    subprocess.run([sys.executable, "-c", _TRAIN, str(seed), str(path)], env=env, check=True, timeout=120,
                   capture_output=True)
    return path.read_bytes()


def test_the_same_seed_gives_the_same_bytes_across_processes_and_runs(tmp_path):
    a = _in_a_fresh_process(tmp_path, 11, "0")
    b = _in_a_fresh_process(tmp_path, 11, "4242")
    assert a == b
    # and in this process, twice (the module-level function, not a copy of it)
    namespace: dict = {}
    exec(compile(_TRAIN, "<train>", "exec"), namespace)
    namespace["run"](11, str(tmp_path / "here1"))
    namespace["run"](11, str(tmp_path / "here2"))
    assert (tmp_path / "here1").read_bytes() == (tmp_path / "here2").read_bytes() == a
    # another seed: other params, other losses
    other = _in_a_fresh_process(tmp_path, 12, "0")
    assert other != a
    fresh = train.init_state(dropout_net(), optim.adam(0.01), random.key(0), (2,))
    loaded_a = checkpoint.load(tmp_path / "seed11-hash0.safetensors", fresh)
    loaded_other = checkpoint.load(tmp_path / "seed12-hash0.safetensors", fresh)
    for p, q in zip(tree.leaves(loaded_a.params), tree.leaves(loaded_other.params), strict=True):
        assert not np.array_equal(p, q)
    assert checkpoint.read_metadata(tmp_path / "seed11-hash0.safetensors")["losses"] != \
        checkpoint.read_metadata(tmp_path / "seed12-hash0.safetensors")["losses"]


def test_different_seeds_differ_everywhere_randomness_enters(data):
    x, t = data
    model, opt = dropout_net(), optim.sgd(0.1)
    step = train.make_train_step(model, softmax_cross_entropy, opt)
    a, b = (train.init_state(model, opt, random.key(s), (2,)) for s in (1, 2))
    assert not np.array_equal(a.key, b.key)
    for p, q in zip(tree.leaves(a.params), tree.leaves(b.params), strict=True):
        assert np.array_equal(p, q) == (not np.any(p))  # only the zero biases agree
    # same params, other key: other shuffles and masks, so other results
    b_same_params = b._replace(params=a.params)
    run_a, _ = train.fit(step, a, x, t, epochs=1, batch_size=30, progress=False)
    run_b, _ = train.fit(step, b_same_params, x, t, epochs=1, batch_size=30, progress=False)
    assert not np.array_equal(run_a.params[0]["W"], run_b.params[0]["W"])
    # Dropout: other keys, other masks; the same key, the same mask
    drop = layers.Dropout(0.5)
    ones = np.ones((64, 64), np.float32)
    assert not np.array_equal(drop.apply((), ones, rng=random.key(1)), drop.apply((), ones, rng=random.key(2)))
    np.testing.assert_array_equal(drop.apply((), ones, rng=random.key(1)), drop.vjp((), ones, rng=random.key(1))[0])


# -------------------------------------------------------------------------- global random state


def _every_random_using_function(data) -> list:
    """Call every public function that draws random numbers; return everything they gave."""
    x, t = data
    key = random.key(3)
    out = [random.key(5), random.split(key, 3), random.fold_in(key, 7), random.normal(key, (4, 3)),
           random.normal(key, (4,), "float64"), random.uniform(key, (5,), minval=-1.0, maxval=2.0),
           random.bernoulli(key, 0.3, (6,)), random.permutation(key, 9)]
    out += [initializers.get(name)(key, (3, 4), "float32") for name in sorted(initializers.BY_NAME)]
    out += [initializers.normal(0.5)(key, (2, 2))]
    for model in (layers.Affine(3), layers.MatMul(2), dropout_net(), TwoLayerNet(2, 5, 3)):
        out.append(model.init(key, (2,)))
    drop = layers.Dropout(0.4)
    out += [drop.apply((), x, rng=key), drop.vjp((), x, rng=key)[0], dropout_net().apply(
        dropout_net().init(key, (2,))[1], x, rng=key)]
    out.append(spiral.load_data())
    out.append(spiral.load_data(seed=7, one_hot=False))
    model, opt = dropout_net(), optim.adam(0.01)
    step = train.make_train_step(model, softmax_cross_entropy, opt)
    state = train.init_state(model, opt, key, (2,))
    out.append(step(state, (x[:30], t[:30])))
    out.append(train.fit(step, state, x, t, epochs=2, batch_size=30, progress=False)[0])
    out.append(train.step_key(state))
    trainer = Trainer(TwoLayerNet(2, 6, 3), optim.Momentum(0.1), seed=4)
    trainer.fit(x, t, max_epoch=1, batch_size=30, progress=False, log=False)
    out.append(trainer.state)
    out.append(recipes.spiral_experiment({"epochs": 1}, seed=3)["loss"])
    return out


def _numpy_state_equal(a, b) -> bool:
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2:] == b[2:]


def test_no_function_reads_or_changes_global_random_state(data):
    saved_numpy = np.random.get_state()
    saved_python = pyrandom.getstate()
    try:
        reference = _every_random_using_function(data)
        # nothing changed either global generator
        assert _numpy_state_equal(np.random.get_state(), saved_numpy), "NumPy's global random state changed"
        assert pyrandom.getstate() == saved_python, "Python's random module state changed"
        # and nothing read them: scrambled global generators give the same results
        np.random.seed(987654)
        pyrandom.seed(987654)
        scrambled_numpy, scrambled_python = np.random.get_state(), pyrandom.getstate()
        again = _every_random_using_function(data)
        assert _numpy_state_equal(np.random.get_state(), scrambled_numpy)
        assert pyrandom.getstate() == scrambled_python
        chex.assert_trees_all_equal(again, reference)
    finally:
        np.random.set_state(saved_numpy)  # conftest checks NumPy's global state after the suite
        pyrandom.setstate(saved_python)


# ------------------------------------------------------- resume from a checkpoint, every optimizer



@pytest.mark.parametrize("name", list(OPTIMIZER_SETUPS))
def test_two_epochs_saved_loaded_and_two_more_equal_four(tmp_path, data, name):
    x, t = data
    model, opt = dropout_net(), OPTIMIZER_SETUPS[name]()
    step = train.make_train_step(model, softmax_cross_entropy, opt)
    fresh = train.init_state(model, opt, random.key(9), (2,))
    kw = {"batch_size": 30, "eval_interval": 5, "progress": False}
    four, four_history = train.fit(step, fresh, x, t, epochs=4, **kw)
    two, two_history = train.fit(step, fresh, x, t, epochs=2, **kw)
    checkpoint.save(tmp_path / "two.safetensors", two)
    # a new process would start from a fresh template (its own init) and the file alone
    like = train.init_state(dropout_net(), OPTIMIZER_SETUPS[name](), random.key(0), (2,))
    loaded = checkpoint.load(tmp_path / "two.safetensors", like)
    chex.assert_trees_all_equal(loaded, two)
    assert int(loaded.opt_state.count) == 20 and loaded.step == 20
    resumed, resumed_history = train.fit(step, loaded, x, t, epochs=2, **kw)
    chex.assert_trees_all_equal(resumed, four)
    chex.assert_trees_all_equal_dtypes(resumed.params, fresh.params)
    assert two_history["loss"] + resumed_history["loss"] == four_history["loss"]


def test_resume_from_the_middle_of_an_epoch_through_a_checkpoint(tmp_path, data):
    x, t = data
    model, opt = dropout_net(), optim.adam(0.01, form="standard")
    step = train.make_train_step(model, softmax_cross_entropy, opt)
    fresh = train.init_state(model, opt, random.key(10), (2,))
    full, _ = train.fit(step, fresh, x, t, epochs=3, batch_size=30, progress=False)

    def stop(state, metrics):
        if state.step == 13:
            raise KeyboardInterrupt

    with pytest.raises(train.TrainingInterrupted) as caught:
        train.fit(step, fresh, x, t, epochs=3, batch_size=30, progress=False, callback=stop)
    partial = caught.value.state
    checkpoint.save(tmp_path / "mid.safetensors", partial)
    loaded = checkpoint.load(tmp_path / "mid.safetensors", fresh)
    resumed, _ = train.fit(step, loaded, x, t, epochs=2, batch_size=30, progress=False)  # rest of epoch 2, then 3
    chex.assert_trees_all_equal(resumed, full)
