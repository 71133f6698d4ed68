"""``fit``: epochs of shuffled mini-batches around a pure step, with a loss log.

``fit`` is a function of the state: the order of epoch ``e`` comes from
``random.fold_in(state.key, e)``, and where it stands from ``state.epoch`` and ``state.offset``,
so a run resumed from a saved state sees exactly the batches an uninterrupted one would have.
"""

from __future__ import annotations

import itertools
import math
import numbers
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from funcnet import random, tree
from funcnet._arguments import non_negative_int, positive_int
from funcnet.backend import is_floating, is_integer, namespace, sum_of_sums, to_numpy
from funcnet.train.compiled import epoch_runner
from funcnet.train.data import Data, prepare
from funcnet.train.progress import progress_bar
from funcnet.train.state import NonFiniteLossError, TrainingInterrupted, TrainState
from funcnet.train.step import TrainStep

__all__ = ["fit", "nonfinite_leaf"]


_UNSEEN = "by step {} though the loss was finite (a learning rate too large, or a dtype too narrow?)"


def nonfinite_leaf(state: TrainState) -> str | None:
    """The path of the first params or optimizer-state leaf holding a NaN or inf, else None.

    Args:
        state: a training state.

    Returns:
        A path such as ``"params/0/W"``, or None when everything is finite.

    Examples:
        >>> import numpy as np
        >>> from funcnet.train import TrainState, nonfinite_leaf
        >>> nonfinite_leaf(TrainState({"W": np.array([1.0, np.inf])}, (), None, 0))
        'params/W'
    """
    both = {"params": state.params, "opt_state": state.opt_state}
    floats = [leaf for leaf in tree.leaves(both) if hasattr(leaf, "dtype") and is_floating(leaf.dtype)]
    if not floats:
        return None
    # one number read back for the whole state: a NaN or inf in any leaf makes the sum of sums
    # non-finite, and the sums allocate nothing; only then (or when a sum merely overflowed) are
    # the leaves tested one by one, element by element, and their paths worked out
    with np.errstate(over="ignore", invalid="ignore"):
        if math.isfinite(float(sum_of_sums(floats))):
            return None
    for path, leaf in tree.leaves_with_paths(both):
        if hasattr(leaf, "dtype") and is_floating(leaf.dtype):
            xp = namespace(leaf)
            if not bool(xp.all(xp.isfinite(leaf))):
                return path
    return None


class _Log:
    """The loss log of one ``fit`` call and the last state known to be finite.

    A record (every ``eval_interval`` steps) appends the mean loss since the last one and checks
    the state's params and optimizer state: the one check of values that the loop makes.
    """

    def __init__(self, state: TrainState, current: int, eval_interval: int | None, iters: int, log: bool):
        self.state = self.checked = state
        self.current = current  # a host copy of state.step: no device read per step
        self.eval_interval, self.iters, self.log = eval_interval, iters, log
        self.total, self.count = 0.0, 0
        self.history: dict[str, Any] = {"loss": [], "step": [], "epoch": [], "skipped": 0}
        self.started = time.perf_counter()

    def failure(self, message: str, candidate: TrainState | None = None) -> NonFiniteLossError:
        """The error to raise, carrying ``candidate`` if it is finite, else the last checked state."""
        carried = candidate if candidate is not None and nonfinite_leaf(candidate) is None else self.checked
        return NonFiniteLossError(f"fit: {message}; the error carries the last state whose params and "
                                  f"optimizer state are finite (step {int(to_numpy(carried.step))})",
                                  carried, self.history)

    def verify(self, where: str, total: float | None = None) -> None:
        """Check the current state; it becomes the last checked one. ``total``: the sum of its
        floating leaves where a compiled call computed it (finite: nothing more to read)."""
        path = None if total is not None and math.isfinite(total) else nonfinite_leaf(self.state)
        if path is not None:
            raise self.failure(f"{path} holds NaN or infinite values {where}")
        self.checked = self.state

    def mark(self) -> tuple:
        """Where the log stands, for `undo`."""
        h = self.history
        return self.current, self.total, self.count, h["skipped"], len(h["loss"])

    def undo(self, mark: tuple) -> None:
        """Take the log back to ``mark`` (records written since are dropped; printed lines stay)."""
        self.current, self.total, self.count, self.history["skipped"], n = mark
        for column in ("loss", "step", "epoch"):
            del self.history[column][n:]

    def add(self, loss: Any, epoch: int, it: int) -> bool:
        """Count one step (``loss`` None for a skipped one); True when a record was written."""
        self.current += 1
        if loss is None:
            self.history["skipped"] += 1
        else:
            self.total, self.count = self.total + loss, self.count + 1
        if self.eval_interval is None or self.current % self.eval_interval or not self.count:
            return False
        mean = float(self.total) / self.count
        if not math.isfinite(mean):
            raise self.failure(f"the loss became {mean} by step {self.current} (epoch {epoch + 1})")
        for column, value in (("loss", mean), ("step", self.current), ("epoch", epoch + 1)):
            self.history[column].append(value)
        if self.log:
            print(f"| epoch {epoch + 1} |  iter {it + 1} / {self.iters} | "
                  f"time {int(time.perf_counter() - self.started)}[s] | loss {mean:.2f}")
        self.total, self.count = 0.0, 0
        return True


def _check_options(step: Any, state: Any, callback: Any, epochs: Any, eval_interval: Any, on_nonfinite: Any,
                   epochs_per_call: Any) -> int:
    """fit's arguments other than the data, checked; returns ``epochs`` as an int."""
    if not isinstance(state, TrainState):
        raise TypeError(f"fit: state must be a TrainState (see init_state), got {type(state).__name__}")
    if not callable(step):
        raise TypeError(f"fit: step must be a TrainStep or a function, got {type(step).__name__}")
    if callback is not None and not callable(callback):
        raise TypeError(f"fit: callback must be a function of (state, metrics) or None, got {type(callback).__name__}")
    if on_nonfinite not in ("raise", "skip"):
        raise ValueError(f"fit: on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}")
    positive_int("fit", "eval_interval", eval_interval, or_none=True)
    positive_int("fit", "epochs_per_call", epochs_per_call, or_none=True)
    return non_negative_int("fit", "epochs", epochs)


def _batch_size(batch_size: Any, n: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(f"fit: batch_size must be an int, got {type(batch_size).__name__}")
    if not 1 <= batch_size <= n:
        raise ValueError(f"fit: batch_size must be between 1 and the data size {n}, got {batch_size}")
    return int(batch_size)


def _at_boundary(state: TrainState, data: Data, host_key: Any, current: int) -> TrainState:
    """The state as the loop keeps it: ints for the counters, the key where the steps read it."""
    epoch, offset = (non_negative_int("fit", f"state.{field}", _host_int(getattr(state, field)))
                     for field in ("epoch", "offset"))
    if offset >= data.size:
        raise ValueError(f"fit: state.offset is {offset}, but an epoch has only {data.size} examples "
                         "(a state of another data set?)")
    if data.backend == "jax":
        import jax.numpy as jnp

        # one state type on every jax path: a jax key draws Dropout masks traced or not, so the
        # compiled and per-step paths (and resumes) agree
        return TrainState(*tree.map(jnp.asarray, tuple(state[:4])), epoch, offset)
    # the step's key and count live on the host: a device copy would be read every step
    return state._replace(key=host_key, step=current, epoch=epoch, offset=offset)


def _host_int(value: Any) -> Any:
    """A counter as a Python int when it is an integer of any kind (a 0-d array from a checkpoint
    too); anything else is handed on unchanged, for the check to name (1.5 is not truncated)."""
    if hasattr(value, "dtype") and getattr(value, "shape", None) == () and is_integer(value.dtype):
        return int(to_numpy(value))
    return value


def _start(state: TrainState, batch_size: int, iters: int) -> tuple[int, int]:
    """``(epoch, iteration)`` where the run resumes; a half-done epoch goes on at its offset."""
    if state.offset % batch_size:
        raise ValueError(f"fit: the state stopped {state.offset} examples into epoch {state.epoch + 1}, "
                         f"which batches of {batch_size} cannot continue; resume with a batch_size "
                         f"that divides {state.offset} (the run's own, for the same batches)")
    it = state.offset // batch_size
    return (state.epoch + 1, 0) if it >= iters else (state.epoch, it)


def _order(host_key: Any, epoch: int, n: int) -> np.ndarray:
    """Epoch ``epoch``'s order of the examples: ``permutation(fold_in(key, epoch), n)``, the documented recipe."""
    return random.permutation(random.fold_in(host_key, epoch), n)


def _use_scan(compile_epoch: bool | None, data: Data) -> bool:
    if compile_epoch is None:
        return data.backend == "jax"
    if compile_epoch and data.backend != "jax":
        raise ValueError("fit: compile_epoch=True needs data on the jax backend")
    return bool(compile_epoch)


def _after(state: TrainState, it: int, iters: int, batch_size: int) -> TrainState:
    """``state`` after iteration ``it`` of its epoch: at the next epoch's start after the last."""
    if it + 1 == iters:
        return state._replace(epoch=state.epoch + 1, offset=0)
    return state._replace(offset=(it + 1) * batch_size)


def _one_epoch(step: Callable, run: _Log, data: Data, perm: np.ndarray, start: int, batch_size: int,
               on_nonfinite: str, callback: Callable | None) -> None:
    """Iterations ``start ..`` of one epoch, through the plan's epoch runner once the step has a plan
    for these batches (`_planned_run`), else step by step; ``run.state`` is kept current."""
    xp = data.xp
    iters = data.size // batch_size
    perm = perm if xp is np else xp.asarray(perm)
    xs, ts = xp.take(data.x, perm, axis=0), xp.take(data.t, perm, axis=0)
    read_losses = data.losses_on_host or on_nonfinite == "skip"
    # a TrainStep's plan runs the rest of an epoch on flat leaves once it has one for these batches;
    # two looks an epoch, as a fit's first step may be the one that makes it, and a plan that stops
    # early leaves the rest of the epoch to the step
    looks = 2 if type(step) is TrainStep and xp is np and callback is None and on_nonfinite == "raise" else 0
    epoch = run.state.epoch
    it = start
    while it < iters:
        lo = it * batch_size
        if looks:
            looks -= 1
            plan = step._plan_for(xs[lo:lo + batch_size, ...], ts[lo:lo + batch_size, ...])
            if plan is not None and plan.update is not None:
                looks = 0
                it = _planned_run(plan, run, xs, ts, it, batch_size, iters)
                continue
        state = run.state
        out = step(state, (xs[lo:lo + batch_size, ...], ts[lo:lo + batch_size, ...]))
        try:
            new_state, metrics = out
            loss = metrics["loss"]
        except (TypeError, ValueError, KeyError, IndexError):
            loss = new_state = None
        if type(new_state) is not TrainState:
            raise TypeError(f"fit: step must return (TrainState, {{'loss': scalar, ...}}), got {type(out).__name__}"
                            + (f" of {len(out)}" if isinstance(out, tuple) else ""))
        if read_losses:
            loss = float(loss)
            if not math.isfinite(loss):
                where = f"at step {run.current + 1} (epoch {epoch + 1}, iteration {it + 1})"
                if on_nonfinite == "raise":
                    raise run.failure(f"the loss became {loss} {where}", candidate=state)
                if nonfinite_leaf(state) is not None:  # skipping cannot bring such params back
                    raise run.failure(f"the loss became {loss} {where} and the params are no longer finite")
                new_state, loss = state._replace(step=new_state.step), None  # drop the update
        run.state = _after(new_state, it, iters, batch_size)
        if run.add(loss, epoch, it):
            run.verify(_UNSEEN.format(run.current))
        if callback is not None:
            callback(run.state, metrics)
        it += 1


def _planned_run(plan: Any, run: _Log, xs: np.ndarray, ts: np.ndarray, it: int, batch_size: int, iters: int) -> int:
    """Iterations ``it ..`` of an epoch through ``plan`` alone, the state kept flat between steps;
    returns the first iteration it did not run (``iters`` at the epoch's end).

    The same steps, losses, records and errors as the per-step path: ``run.state`` is built from
    the flat state at each record and whenever this returns or raises (an interrupt included),
    always from the last complete step. A batch the plan declines (a label out of range, a rule's
    output the optimizer must name) is left to the step, whose checked path words the error.
    """
    start = run.state
    epoch = start.epoch
    flat = plan.flatten(start)
    if flat is None:
        return it
    advance = plan.advance
    done = built = (flat, it)  # the last complete step (one assignment: an interrupt never splits
    # it), and the one run.state was last built from

    def state_at(position: tuple) -> TrainState:
        flat_, next_it = position
        params, opt_state = plan.assemble(flat_)
        return _after(start._replace(params=params, opt_state=opt_state, step=start.step + next_it - it),
                      next_it - 1, iters, batch_size) if next_it > it else start

    try:
        for i in range(it, iters):
            lo = i * batch_size
            out = advance(flat, xs[lo:lo + batch_size, ...], ts[lo:lo + batch_size, ...])
            if out is None:  # declined: the step's checked path runs this batch
                return i
            new, loss = out[0], float(out[1])
            if not math.isfinite(loss):
                raise run.failure(f"the loss became {loss} at step {run.current + 1} (epoch {epoch + 1}, "
                                  f"iteration {i + 1})", candidate=state_at(done))
            flat = new
            done = (flat, i + 1)
            plan.runs += 1
            if run.add(loss, epoch, i):
                run.state, built = state_at(done), done
                with np.errstate(over="ignore", invalid="ignore"):  # an overflowing sum: the full check
                    total = float(sum_of_sums([*flat.leaves, *itertools.chain(*flat.slots)]))
                run.verify(_UNSEEN.format(run.current), total)
        return iters
    finally:
        if built is not done:
            run.state = state_at(done)


def _compiled_epochs(runner: Callable, run: _Log, data: Data, host_key: Any, first: int, count: int,
                     per_call: int, done: Callable[[int], None]) -> None:
    """Epochs ``first ..`` (``count`` of them), ``per_call`` whole epochs a compiled call.

    Each call is dispatched before the previous one's losses are read, so the host draws the
    next orders while the device runs. Non-finite losses are found once a call: the error then
    carries the state at that call's start (``run.state``, the last checked one).
    """
    flying = None  # the call dispatched last: (its epochs, its new state, its losses, its state's sum)
    for start in range(first, first + count, per_call):
        epochs = range(start, min(start + per_call, first + count))
        orders = data.xp.asarray(np.stack([_order(host_key, e, data.size) for e in epochs]))
        state, losses, total = runner(flying[1] if flying else run.state, data.x, data.t, orders)
        if flying:
            _finish_call(run, *flying)
            done(len(flying[0]))
        flying = (epochs, state, losses, total)
    if flying:
        _finish_call(run, *flying)
        done(len(flying[0]))


def _finish_call(run: _Log, epochs: range, state: TrainState, losses: Any, total: Any) -> None:
    """Read one compiled call's losses (waiting for it), record them, and take its state."""
    losses = np.asarray(losses, dtype=np.float64).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        raise run.failure(f"the loss became {losses[bad[0]]} at step {run.current + bad[0] + 1}",
                          candidate=run.state)
    iters = losses.size // len(epochs)
    new = state._replace(epoch=epochs[-1] + 1, offset=0)
    kept = run.mark()
    try:  # the call's records and its state land together: an interrupt in between undoes the records
        for k, loss in enumerate(losses):
            run.add(loss, epochs[0] + k // iters, k % iters)
        run.state = new
    except KeyboardInterrupt:
        if run.state is not new:
            run.undo(kept)
        raise
    run.verify(_UNSEEN.format(run.current), float(total))


def _per_call(count: int) -> int:
    """Compiled epochs a call when not asked: ``count // k`` for the first ``k`` of 4, 5, 6, 8, 3, 7, 2
    that divides ``count`` (calls of one size: one compile; a few of them, so that drawing the
    next call's orders overlaps the current one), else all at once (11 epochs: one call)."""
    return next((count // k for k in (4, 5, 6, 8, 3, 7, 2) if count % k == 0 and count >= k), count)


def _advance(bar: Any, run: _Log, epochs: int) -> None:
    if bar is not None:
        bar.update(epochs)
        if run.history["loss"]:
            bar.set_postfix(loss=f"{run.history['loss'][-1]:.3f}")


def fit(step: Callable, state: TrainState, x: Any, t: Any, *, epochs: int, batch_size: int,
        eval_interval: int | None = 20, progress: bool | None = None, log: bool = False,
        on_nonfinite: str = "raise", callback: Callable[[TrainState, dict], None] | None = None,
        validate: bool = True, compile_epoch: bool | None = None,
        epochs_per_call: int | None = None) -> tuple[TrainState, dict[str, Any]]:
    """Train ``epochs`` more epochs of shuffled mini-batches.

    The book's batching: ``len(x) // batch_size`` iterations an epoch, the tail dropped. Every
    ``eval_interval`` steps the mean loss since the last record is appended to
    ``history["loss"]`` (printed in the book's format with ``log=True``) and the params and
    optimizer state are checked to be finite. A state stopped mid-epoch (an interrupt) first
    finishes that epoch, which counts as one of ``epochs``.

    The data is checked once, here: with a `TrainStep` against its model
    and loss too (label range, one-hot width, probabilities). A plain function as ``step``
    hides its model and loss, so only the generic checks run (lengths, finite, real numbers):
    out-of-range labels then train silently.

    On NumPy, once a `TrainStep` has a plan for the batches (its first step makes one), each
    epoch runs through that plan with the state kept flat between steps, bit for bit the same
    steps; with a ``callback`` or ``on_nonfinite="skip"`` every step goes through the step itself.

    Args:
        step: a `TrainStep` (or any ``step(state, batch) -> (state, metrics)``).
        state: where to start (`init_state`, or a saved state).
        x: inputs ``(N, ...)``; moved to the params' backend and cast to their dtype once.
        t: labels ``(N,)`` or targets ``(N, C)``.
        epochs: how many more epochs.
        batch_size: examples a step.
        eval_interval: steps between records (None: no records, one finite check at the end).
        progress: a tqdm bar (None: on a terminal only).
        log: print the book's log line at each record.
        on_nonfinite: ``"raise"``, or ``"skip"`` to drop updates whose loss is not finite (counted in
            ``history["skipped"]``; a run whose steps were all skipped raises).
        callback: ``callback(state, metrics)`` after every step (per-step path only).
        validate: run the data checks.
        compile_epoch: on jax, run whole epochs as one compiled ``lax.scan`` (None: on jax
            unless ``callback`` or ``on_nonfinite="skip"`` needs every step). XLA fuses the
            compiled epochs differently from single steps, so the two paths (and a resume
            mid-epoch, which runs its first epoch step by step) agree to float32 rounding, not
            bit for bit; NumPy and array_api_strict resume bit for bit.
        epochs_per_call: compiled epochs per call (default: one with a progress bar, else a few
            calls of one size, e.g. 4 of 75 epochs for 300, each dispatched before the last one's
            losses are read; all at once for a count that 2 to 8 do not divide).

    Returns:
        ``(state, history)``; ``history`` has ``loss``, ``step``, ``epoch`` lists, ``skipped`` (steps
        dropped by ``on_nonfinite="skip"``) and ``time``.

    Raises:
        NonFiniteLossError: the loss, params or optimizer state became NaN or infinite; it
            carries the last state whose params and optimizer state are all finite.
        TrainingInterrupted: Ctrl-C; it is a ``KeyboardInterrupt`` carrying the last complete state.
        ValueError, TypeError: bad options or data, named.

    Examples:
        >>> import funcnet as fn
        >>> x, t = fn.datasets.spiral.load_data()
        >>> net = fn.TwoLayerNet(2, 10, 3)
        >>> step = fn.make_train_step(net, fn.softmax_cross_entropy, fn.optim.sgd(1.0))
        >>> state = fn.init_state(step.model, step.optimizer, fn.random.key(0), (2,))
        >>> state, history = fn.fit(step, state, x, t, epochs=2, batch_size=30, eval_interval=10)
        >>> state.step, state.epoch, len(history["loss"])
        (20, 2, 2)
    """
    epochs = _check_options(step, state, callback, epochs, eval_interval, on_nonfinite, epochs_per_call)
    data = prepare(step, state.params, x, t, validate=validate)
    batch_size = _batch_size(batch_size, data.size)
    iters = data.size // batch_size
    # read once, here; a count that is no whole number >= 0 is refused, never truncated
    host_key, current = to_numpy(state.key), non_negative_int("fit", "state.step", _host_int(state.step))
    state = _at_boundary(state, data, host_key, current)
    first_epoch, first_iter = _start(state, batch_size, iters)
    state = state._replace(epoch=first_epoch, offset=first_iter * batch_size)
    last_epoch = first_epoch + epochs  # a half-done epoch counts as one of them
    run = _Log(state, current, eval_interval, iters, log)
    run.verify("in the state fit was given")  # so that the state an error carries is finite
    runner = None
    if _use_scan(compile_epoch, data) and callback is None and on_nonfinite == "raise" and epochs:
        runner = epoch_runner(step, iters, batch_size)
    bar = progress_bar(progress, last_epoch, first_epoch, unit="epoch")
    try:
        epoch = first_epoch
        while epoch < last_epoch:
            if runner is None or run.state.offset:  # step by step (and a half-done epoch's rest)
                _one_epoch(step, run, data, _order(host_key, epoch, data.size), run.state.offset // batch_size,
                           batch_size, on_nonfinite, callback)
                done = 1
                _advance(bar, run, 1)
            else:
                count = last_epoch - epoch
                per_call = epochs_per_call or (1 if bar else _per_call(count))
                _compiled_epochs(runner, run, data, host_key, epoch, count, per_call,
                                 lambda n: _advance(bar, run, n))
                done = count
            epoch += done
        run.verify(_UNSEEN.format(run.current))  # inside: an interrupt here still hands the state over
    except KeyboardInterrupt as err:
        run.history["time"] = time.perf_counter() - run.started
        raise TrainingInterrupted(f"fit: interrupted at step {run.current}; the error carries the last "
                                  "complete state (resume with fit)", run.state, run.history) from err
    finally:
        if bar is not None:
            bar.close()
    ran = run.current - current
    if ran and run.history["skipped"] == ran:
        raise run.failure(f"every one of the {ran} steps had a NaN or infinite loss and was skipped")
    run.history["time"] = time.perf_counter() - run.started
    return run.state, run.history
