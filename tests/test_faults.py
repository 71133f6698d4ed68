"""Faults, tried on purpose: processes killed mid-save, hostile files, training that blows up,
and training that is interrupted.

* A save killed by SIGKILL at a random moment (many trials) always leaves the previous
  checkpoint, complete and loadable, or the new one: never a torn file.
* A pickle smuggled in as a checkpoint never runs, whichever door it comes through
  (``Trainer.load``, ``examples/train_spiral.py --resume``); a checkpoint of another
  architecture or optimizer is refused with the leaf named.
* NaN or inf in the data, a diverging learning rate, overflow in float16 and float32: ``fit``
  stops with :class:`~funcnet.train.NonFiniteLossError` carrying the last finite state (or skips
  the steps with ``on_nonfinite="skip"``), and training resumes from that state.
* Ctrl-C (a KeyboardInterrupt from a callback, and a real SIGINT to a child process) hands back
  the last complete state, and resuming from it equals never stopping, bit for bit.

Broken files (truncated, flipped, empty, foreign formats) and FIFOs, through
``checkpoint.load`` and ``Trainer.load`` alike, are in test_checkpoint.py.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import chex
import numpy as np
import pytest

from funcnet import checkpoint, layers, optim, random, train, tree
from funcnet.checkpoint import CheckpointError
from funcnet.datasets import spiral
from funcnet.losses import mean_squared_error, softmax_cross_entropy
from funcnet.models import TwoLayerNet
from funcnet.trainer import Trainer

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def _env() -> dict[str, str]:
    """The environment of a child Python: funcnet importable from this checkout, no display."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "FUNCNET_SMOKE")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


@pytest.fixture(scope="module")
def data():
    x, t = spiral.load_data(dtype="float32")
    return x, t


# ------------------------------------------------------------------ SIGKILL in the middle of a save

# The helper is started once and imports funcnet once; for each trial it forks a worker that
# saves versions v, v+1, ... of a ~1 MB state to one path as fast as it can, appending v to a
# log after each save returns. The test SIGKILLs the worker after a random delay. (The helper
# is single-threaded, so forking it is safe; forking this test process, with jax's threads, is not.)
_KILL_HELPER = textwrap.dedent("""
    import os, sys
    import numpy as np
    from funcnet import checkpoint

    def state(v):
        w = np.full((256, 512), v, np.float32)
        return {"params": ({"W": w, "b": np.full(512, v, np.float32)}, (), {"W": w.T.copy()}),
                "opt_state": (np.full(7, v, np.float64), np.full((3, 3), v, np.int64)),
                "key": np.array([0, v], np.uint32), "step": v}

    print("ready", flush=True)
    for line in sys.stdin:
        path, first = line.split()
        pid = os.fork()
        if pid == 0:
            log = os.open(path + ".log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            v = int(first)
            while True:
                checkpoint.save(path, state(v))
                os.write(log, b"%d\\n" % v)
                v += 1
        print(pid, flush=True)
        os.waitpid(pid, 0)
        print("reaped", flush=True)
""")

KILL_TRIALS = 100


def _versioned_state(v: int) -> dict[str, Any]:
    w = np.full((256, 512), v, np.float32)
    return {"params": ({"W": w, "b": np.full(512, v, np.float32)}, (), {"W": np.ascontiguousarray(w.T)}),
            "opt_state": (np.full(7, v, np.float64), np.full((3, 3), v, np.int64)),
            "key": np.array([0, v], np.uint32), "step": v}


def _single_version(loaded: dict[str, Any]) -> int:
    """The version every leaf of ``loaded`` holds; fails when the leaves disagree (a torn state)."""
    v = loaded["step"]
    for path, leaf in tree.leaves_with_paths(loaded):
        if path == "key":
            assert leaf.tolist() == [0, v], path
        else:
            assert np.all(np.asarray(leaf) == v), f"leaf {path} is not all {v}: a torn checkpoint"
    return v


def test_a_save_killed_at_a_random_moment_leaves_a_complete_checkpoint(tmp_path):
    like = _versioned_state(0)
    helper = subprocess.Popen([sys.executable, "-c", _KILL_HELPER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
    rng = np.random.default_rng()  # the moments are meant to differ from run to run
    # how long a save takes here and now (a loaded machine is slower): the kills are spread over
    # a few times that, so that a fair share lands inside a write however busy the machine is
    durations = []
    for _ in range(5):
        started = time.perf_counter()
        checkpoint.save(tmp_path / "timing.safetensors", _versioned_state(0))
        durations.append(time.perf_counter() - started)
    spread = 3 * float(np.median(durations))
    killed_mid_write = trial = 0
    try:
        assert helper.stdout.readline().strip() == "ready"
        # KILL_TRIALS kills, and more (up to four times as many) until enough landed mid-write
        while trial < KILL_TRIALS or (killed_mid_write < KILL_TRIALS // 10 and trial < 4 * KILL_TRIALS):
            trial += 1
            folder = tmp_path / f"trial{trial}"
            folder.mkdir()
            path = folder / "state.safetensors"
            first = 1000 * trial + 1
            checkpoint.save(path, _versioned_state(first - 1))  # the checkpoint that must survive
            helper.stdin.write(f"{path} {first}\n")
            helper.stdin.flush()
            pid = int(helper.stdout.readline())
            time.sleep(rng.uniform(0.0, spread))
            os.kill(pid, signal.SIGKILL)
            assert helper.stdout.readline().strip() == "reaped"

            log = folder / "state.safetensors.log"
            completed = [int(v) for v in log.read_text().split()] if log.exists() else []
            v = _single_version(checkpoint.load(path, like))
            last = completed[-1] if completed else first - 1
            # the newest completed save, or the one in flight if its rename had happened
            assert v in (last, last + 1), (v, completed[-3:])
            leftovers = sorted(p.name for p in folder.iterdir())
            extra = [name for name in leftovers if name not in ("state.safetensors", "state.safetensors.log")]
            assert all(name.startswith(".state.safetensors.") and name.endswith(".tmp") for name in extra), extra
            killed_mid_write += bool(extra)
            # a stray temporary file from the killed save is harmless to the next one
            checkpoint.save(path, _versioned_state(v + 1))
            assert _single_version(checkpoint.load(path, like)) == v + 1
    finally:
        helper.kill()
        helper.wait()
    # the trials are meaningful: a fair share of the kills landed inside a save's write
    assert killed_mid_write >= KILL_TRIALS // 10, killed_mid_write


# --------------------------------------------------------------------------- hostile checkpoints


class _Exploit:
    """Unpickling this creates the file ``target``: the proof that a pickle ran."""

    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def _pickle_file(tmp_path: Path) -> tuple[Path, Path]:
    pwned = tmp_path / "pwned"
    path = tmp_path / "state.safetensors"  # the name a user would expect
    path.write_bytes(pickle.dumps({"params": _Exploit(pwned)}, protocol=pickle.HIGHEST_PROTOCOL))
    return path, pwned


def test_a_pickle_never_runs_through_trainer_load(tmp_path):
    path, pwned = _pickle_file(tmp_path)
    trainer = Trainer(TwoLayerNet(2, 10, 3), optim.SGD(1.0))
    with pytest.raises(CheckpointError, match="pickle file, which funcnet never loads"):
        trainer.load(path)
    assert not pwned.exists()


def test_a_pickle_never_runs_through_the_demos_resume(tmp_path):
    path, pwned = _pickle_file(tmp_path)
    result = subprocess.run([sys.executable, str(EXAMPLES / "train_spiral.py"), "--out", str(tmp_path / "out"),
                             "--no-progress", "--resume", str(path)],
                            env=_env(), capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "--resume" in result.stderr and "pickle" in result.stderr
    assert not pwned.exists()


def test_a_checkpoint_of_another_architecture_or_optimizer_names_the_leaf(tmp_path, data):
    x, t = data
    trainer = Trainer(TwoLayerNet(2, 10, 3), optim.SGD(1.0))
    trainer.fit(x, t, max_epoch=1, batch_size=30, progress=False, log=False)
    trainer.save(tmp_path / "s")
    wider = Trainer(TwoLayerNet(2, 20, 3), optim.SGD(1.0))
    with pytest.raises(CheckpointError, match=r"leaf 'params/0/W' should have shape \(2, 20\), the file has \(2, 10\)"):
        wider.load(tmp_path / "s")
    adam = Trainer(TwoLayerNet(2, 10, 3), optim.Adam())
    with pytest.raises(CheckpointError, match=r"another architecture\?.*leaf 'opt_state/first_moment/0/W' of "
                                              r"`like` is missing from the file"):
        adam.load(tmp_path / "s")
    deeper = Trainer(layers.serial(layers.Affine(10), layers.Sigmoid(), layers.Affine(10), layers.Sigmoid(),
                                   layers.Affine(3)), optim.SGD(1.0))
    with pytest.raises(CheckpointError, match=r"does not fit `like`.*'params/4/W'"):
        deeper.load(tmp_path / "s")
    # none of the failed loads touched the file: the right trainer still loads it
    again = Trainer(TwoLayerNet(2, 10, 3), optim.SGD(1.0))
    again.load(tmp_path / "s")
    chex.assert_trees_all_equal(again.state, trainer.state)


# ------------------------------------------------------------------------ training that blows up


def _fit(step, state, x, t, **kw):
    kw = {"epochs": 2, "batch_size": 30, "eval_interval": 5, "progress": False} | kw
    return train.fit(step, state, x, t, **kw)


def _dropout_net():
    return layers.serial(layers.Affine(16), layers.ReLU(), layers.Dropout(0.2), layers.Affine(3))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf - inf, on purpose
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_resuming_from_the_carried_state_on_repaired_data_equals_a_clean_run(data, bad):
    x, t = data
    model, opt = _dropout_net(), optim.adam(0.01)
    step = train.make_train_step(model, softmax_cross_entropy, opt)
    state = train.init_state(model, opt, random.key(4), (2,))
    broken = x.copy()
    broken[123, 1] = bad
    with pytest.raises(train.NonFiniteLossError, match=r"the loss became (nan|inf)") as info:
        _fit(step, state, broken, t, epochs=3, validate=False)
    carried = info.value.state
    chex.assert_tree_all_finite(carried.params)
    assert 0 <= int(carried.step) < 10  # every row is in every epoch: the first one fails
    # every step before the failure saw only good rows, so the clean run passed through `carried`
    clean, _ = _fit(step, state, x, t, epochs=3)
    resumed, _ = _fit(step, carried, x, t, epochs=3 - int(carried.step) // 10)
    chex.assert_trees_all_equal(resumed, clean)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def _all_skipped(step, state, x, t, steps, **kwargs):
    """fit with on_nonfinite="skip" where every step overflows: the error, having counted them."""
    with pytest.raises(train.NonFiniteLossError, match=rf"every one of the {steps} steps .* was skipped") as info:
        _fit(step, state, x, t, on_nonfinite="skip", **kwargs)
    assert info.value.history["skipped"] == steps
    return info.value


def test_float16_training_that_overflows_stops_with_a_finite_float16_state(data):
    x, t = data
    model, opt = layers.Affine(3), optim.sgd(20.0)
    step = train.make_train_step(model, mean_squared_error, opt)
    state = train.init_state(model, opt, random.key(0), (2,), dtype="float16")
    targets = t.astype(np.float16)
    with pytest.raises(train.NonFiniteLossError, match="the loss became") as info:
        _fit(step, state, (x * 30).astype(np.float16), targets, epochs=20)
    last = info.value.state
    chex.assert_tree_all_finite(last.params)
    chex.assert_trees_all_equal_dtypes(last.params, state.params)
    assert info.value.history["loss"] == [] or all(np.isfinite(info.value.history["loss"]))
    assert f"at step {int(last.step) + 1} " in str(info.value)  # the input of the failing step
    # skipping the overflowing updates cannot get past them: a run that skipped every step is an
    # error (not a silent no-op), and what it carries is still finite and float16
    ran = (int(last.step) // 10 + 2) * 10 - int(last.step)
    skipped = _all_skipped(step, last, (x * 30).astype(np.float16), targets, ran, epochs=2)
    chex.assert_tree_all_finite(skipped.state.params)
    chex.assert_trees_all_equal_dtypes(skipped.state.params, state.params)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_float32_overflow_at_the_first_step_carries_the_initial_state_and_skip_keeps_it(data):
    x, t = data
    model, opt = layers.Affine(3), optim.momentum(0.1)
    step = train.make_train_step(model, mean_squared_error, opt)
    state = train.init_state(model, opt, random.key(1), (2,))
    huge = x * np.float32(1e30)  # finite in float32; its square is not
    targets = t.astype(np.float32)
    with pytest.raises(train.NonFiniteLossError, match="the loss became inf at step 1") as info:
        _fit(step, state, huge, targets)
    chex.assert_trees_all_equal(info.value.state, state)
    skipped = _all_skipped(step, state, huge, targets, 20)  # every update was dropped: an error
    chex.assert_trees_all_equal(skipped.state.params, state.params)
    chex.assert_trees_all_equal(skipped.state.opt_state, state.opt_state)
    assert skipped.history["loss"] == []


@pytest.mark.parametrize("make_opt", [lambda: optim.momentum(30.0), lambda: optim.nesterov(30.0, form="standard"),
                                      lambda: optim.adam(1e37), lambda: optim.rmsprop(1e37)],
                         ids=["momentum", "nesterov", "adam", "rmsprop"])
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_a_diverging_learning_rate_stops_with_a_state_to_resume_from(data, make_opt):
    x, t = data
    x, targets = x * 10, t.astype(np.float32)
    model, opt = layers.Affine(3), make_opt()
    step = train.make_train_step(model, mean_squared_error, opt)
    state = train.init_state(model, opt, random.key(2), (2,))
    with pytest.raises(train.NonFiniteLossError) as info:
        _fit(step, state, x, targets, epochs=50)
    last = info.value.state
    chex.assert_tree_all_finite(last.params)
    assert type(last.opt_state) is type(state.opt_state)
    assert f"at step {int(last.step) + 1} " in str(info.value)  # the input of the failing step
    # skipping the rest of the epoch's overflowing updates is an error that still carries a
    # finite, usable state
    resumed = _all_skipped(step, last, x, targets, 10 - int(last.step) % 10, epochs=1)
    chex.assert_tree_all_finite(resumed.state.params)
    chex.assert_trees_all_equal_shapes_and_dtypes(resumed.state.opt_state, state.opt_state)


def test_nan_in_float_targets_is_refused_at_fits_start(data):
    x, t = data
    targets = t.astype(np.float32)
    targets[5, 0] = np.nan
    model, opt = layers.Affine(3), optim.sgd(0.1)
    state = train.init_state(model, opt, random.key(0), (2,))
    with pytest.raises(ValueError, match=r"fit: t contains NaN or infinite values"):
        _fit(train.make_train_step(model, mean_squared_error, opt), state, x, targets)


# ------------------------------------------------------------------------- interrupted training


def _interrupted_fit(step, state, x, t, **kw):
    """The state and history of a fit stopped by Ctrl-C: carried by the KeyboardInterrupt fit raises
    (``TrainingInterrupted``), or, from a fit that reports it as a flag, returned with the flag set."""
    try:
        state, history = _fit(step, state, x, t, **kw)
    except KeyboardInterrupt as err:
        return err.state, err.history
    assert history["interrupted"], "fit neither raised the interrupt nor reported it"
    return state, history


@pytest.mark.parametrize("stop_at", [1, 10, 27, 40])
def test_keyboard_interrupt_from_a_callback_keeps_the_last_complete_state(data, stop_at):
    x, t = data
    model, opt = _dropout_net(), optim.adam(0.01, form="standard")
    step = train.make_train_step(model, softmax_cross_entropy, opt)
    state = train.init_state(model, opt, random.key(5), (2,))
    full, full_history = _fit(step, state, x, t, epochs=4)
    seen = []

    def interrupt(s, metrics):
        seen.append(s)
        if s.step == stop_at:
            raise KeyboardInterrupt

    partial, history = _interrupted_fit(step, state, x, t, epochs=4, callback=interrupt)
    assert partial.step == stop_at
    assert partial is seen[-1]  # the state after the step whose callback was interrupted
    assert int(partial.opt_state.count) == stop_at
    assert history["step"] == [s for s in full_history["step"] if s <= stop_at]
    rest, _ = _fit(step, partial, x, t, epochs=4 - stop_at // 10)
    chex.assert_trees_all_equal(rest, full)


_SIGINT_CHILD = textwrap.dedent("""
    import json, signal, sys
    from funcnet import checkpoint, layers, optim, random, train
    from funcnet.datasets import spiral
    from funcnet.losses import softmax_cross_entropy

    x, t = spiral.load_data(dtype="float32")
    model = layers.serial(layers.Affine(16), layers.ReLU(), layers.Dropout(0.2), layers.Affine(3))
    opt = optim.adam(0.01)
    step = train.make_train_step(model, softmax_cross_entropy, opt)
    state = train.init_state(model, opt, random.key(6), (2,))

    def started(s, metrics):
        if s.step == 1:
            print("started", flush=True)

    try:
        state, history = train.fit(step, state, x, t, epochs=10**6, batch_size=30, progress=False,
                                   callback=started)
        interrupted = history["interrupted"]  # a fit that reports Ctrl-C as a flag
    except KeyboardInterrupt as err:  # a fit that raises it, carrying the last complete state
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        state, interrupted = err.state, True
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the save below is not to be interrupted
    checkpoint.save(sys.argv[1], state)
    print(json.dumps({"interrupted": interrupted, "step": int(state.step)}), flush=True)
""")


@pytest.mark.parametrize("delay", [0.02, 0.15, 0.4])
def test_a_real_sigint_stops_fit_with_a_state_that_resumes_exactly(tmp_path, data, delay):
    x, t = data
    path = tmp_path / "interrupted.safetensors"
    child = subprocess.Popen([sys.executable, "-c", _SIGINT_CHILD, str(path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=_env())
    try:
        assert child.stdout.readline().strip() == "started", child.stderr.read()
        time.sleep(delay)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["interrupted"] and report["step"] >= 1

    model = layers.serial(layers.Affine(16), layers.ReLU(), layers.Dropout(0.2), layers.Affine(3))
    opt = optim.adam(0.01)
    step = train.make_train_step(model, softmax_cross_entropy, opt)
    fresh = train.init_state(model, opt, random.key(6), (2,))
    stopped = checkpoint.load(path, like=fresh)
    assert stopped.step == report["step"] and int(stopped.opt_state.count) == report["step"]
    epochs = stopped.step // 10 + 2  # the interrupted epoch and one more
    never_stopped, _ = _fit(step, fresh, x, t, epochs=epochs)
    resumed, _ = _fit(step, stopped, x, t, epochs=2)
    chex.assert_trees_all_equal(resumed, never_stopped)
