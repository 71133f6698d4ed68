"""Trainer: the seed's three lines, and that it is only a shell over the pure core."""

from __future__ import annotations

import chex
import numpy as np
import pytest

from funcnet import Trainer, optim, random, train
from funcnet.datasets import spiral
from funcnet.losses import softmax_cross_entropy
from funcnet.models import TwoLayerNet


@pytest.fixture(scope="module")
def data():
    return spiral.load_data()


def test_the_seeds_three_lines(data, tmp_path, capsys):
    x, t = data
    max_epoch, batch_size = 300, 30
    model = TwoLayerNet(input_size=2, hidden_size=10, output_size=3)
    optimizer = optim.SGD(lr=1.0)

    trainer = Trainer(model, optimizer)
    trainer.fit(x, t, max_epoch, batch_size, eval_interval=10)
    trainer.plot(path=tmp_path / "loss.png")

    assert len(trainer.loss_list) == 300 and trainer.loss_list[-1] < 0.15
    assert trainer.current_epoch == 300
    assert (tmp_path / "loss.png").stat().st_size > 1000
    assert trainer.evaluate(x, t)["accuracy"] >= 0.95
    assert capsys.readouterr().out.count("| epoch ") == 300


def test_trainer_equals_the_pure_functions(data):
    x, t = data
    model, opt = TwoLayerNet(2, 10, 3), optim.sgd(1.0)
    trainer = Trainer(model, opt, seed=5)
    trainer.fit(x, t, 5, 30, eval_interval=10, log=False, progress=False)
    state = train.init_state(model, opt, random.key(5), (2,))
    state, history = train.fit(train.make_train_step(model, softmax_cross_entropy, opt), state, x, t,
                               epochs=5, batch_size=30, eval_interval=10, progress=False)
    chex.assert_trees_all_equal(trainer.params, state.params)
    assert trainer.loss_list == history["loss"]


def test_fit_twice_continues(data):
    x, t = data
    a = Trainer(TwoLayerNet(2, 10, 3), optim.SGD(lr=1.0))
    a.fit(x, t, 4, 30, eval_interval=10, log=False, progress=False)
    b = Trainer(TwoLayerNet(2, 10, 3), optim.SGD(lr=1.0))
    b.fit(x, t, 2, 30, eval_interval=10, log=False, progress=False)
    b.fit(x, t, 2, 30, eval_interval=10, log=False, progress=False)
    chex.assert_trees_all_equal(a.params, b.params)
    assert a.loss_list == b.loss_list and b.current_epoch == 4


def test_max_grad_clips(data):
    x, t = data
    free = Trainer(TwoLayerNet(2, 10, 3), optim.SGD(lr=1.0))
    free.fit(x, t, 3, 30, eval_interval=10, log=False, progress=False)
    clipped = Trainer(TwoLayerNet(2, 10, 3), optim.SGD(lr=1.0))
    clipped.fit(x, t, 3, 30, max_grad=1e-3, eval_interval=10, log=False, progress=False)
    moved = [np.abs(c - s).max() for c, s in zip(
        [p["W"] for p in clipped.params if p], [p["W"] for p in Trainer(
            TwoLayerNet(2, 10, 3), optim.SGD(lr=1.0)).init((2,)).params if p], strict=True)]
    assert max(moved) <= 30 * 1e-3 * 1.0 + 1e-6  # 30 steps of at most lr * max_grad each
    assert not np.allclose(free.params[0]["W"], clipped.params[0]["W"])


def test_save_and_load_round_trip(data, tmp_path):
    x, t = data
    trainer = Trainer(TwoLayerNet(2, 10, 3), optim.SGD(lr=1.0))
    trainer.fit(x, t, 2, 30, eval_interval=10, log=False, progress=False)
    trainer.save(tmp_path / "state.safetensors")
    other = Trainer(TwoLayerNet(2, 10, 3), optim.SGD(lr=1.0))
    other.load(tmp_path / "state.safetensors")  # the example shape is in the file
    chex.assert_trees_all_equal(trainer.params, other.params)
    assert int(other.state.step) == int(trainer.state.step) == 20
    assert other.loss_list == trainer.loss_list and len(other.loss_list) == 2
    assert other.current_epoch == trainer.current_epoch == 2
    # and it goes on exactly as the one that never stopped
    trainer.fit(x, t, 1, 30, eval_interval=10, log=False, progress=False)
    other.fit(x, t, 1, 30, eval_interval=10, log=False, progress=False)
    chex.assert_trees_all_equal(trainer.params, other.params)
    assert other.loss_list == trainer.loss_list


def test_load_refuses_a_file_not_written_by_trainer(data, tmp_path):
    from funcnet import checkpoint

    checkpoint.save(tmp_path / "plain.safetensors", {"x": np.ones(2)})
    with pytest.raises(checkpoint.CheckpointError, match=r"not saved by Trainer\.save"):
        Trainer(TwoLayerNet(2, 10, 3), optim.sgd(1.0)).load(tmp_path / "plain.safetensors")


@pytest.mark.parametrize("call", ["save", "predict", "evaluate"])
def test_before_fit_the_error_says_to_fit_first(data, tmp_path, call):
    x, t = data
    trainer = Trainer(TwoLayerNet(2, 10, 3), optim.sgd(1.0))
    calls = {"save": lambda: trainer.save(tmp_path / "s"), "predict": lambda: trainer.predict(x),
             "evaluate": lambda: trainer.evaluate(x, t)}
    with pytest.raises(RuntimeError, match=f"Trainer.{call}: .*call fit"):
        calls[call]()
    assert not (tmp_path / "s").exists()


def test_another_batch_size_trains_whole_epochs(data):
    # 2 epochs at 30, then 1 at 10: the third epoch is all 30 of its batches of 10
    x, t = data
    trainer = Trainer(TwoLayerNet(2, 10, 3), optim.sgd(1.0))
    trainer.fit(x, t, 2, 30, eval_interval=10, log=False, progress=False)
    trainer.fit(x, t, 1, 10, eval_interval=10, log=False, progress=False)
    assert int(trainer.state.step) == 20 + 30
    assert trainer.current_epoch == 3


def test_an_interrupt_keeps_the_last_complete_state_and_is_not_swallowed(data, monkeypatch):
    x, t = data
    trainer = Trainer(TwoLayerNet(2, 10, 3), optim.sgd(1.0))
    trainer.fit(x, t, 1, 30, eval_interval=10, log=False, progress=False)
    calls = {"n": 0}
    real_update = trainer.optimizer.update

    def update(params, grads, state):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real_update(params, grads, state)

    trainer.optimizer = trainer.optimizer._replace(update=update)
    trainer._steps.clear()
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(x, t, 2, 30, eval_interval=5, log=False, progress=False)
    assert int(trainer.state.step) == 15 and trainer.state.offset == 150
    assert len(trainer.loss_list) == 2  # a record at step 10 (first fit) and at step 15 (second)


@pytest.mark.parametrize(("args", "match"), [
    ((TwoLayerNet, optim.sgd(1.0)), "model must be a Layer, got function .*constructor"),
    ((TwoLayerNet(2, 10, 3), optim.sgd), "optimizer must have init and update.*constructor"),
    ((optim.sgd(1.0), TwoLayerNet(2, 10, 3)), "model must be a Layer, got Optimizer"),
])
def test_constructors_and_swapped_arguments_are_named(args, match):
    with pytest.raises(TypeError, match=match):
        Trainer(*args)
