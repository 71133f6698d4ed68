"""Where a small step's time goes: NumPy calls per step, their unit cost, and cProfile's view.

* :func:`array_calls` counts the NumPy calls one step makes (every ufunc, operators included,
  and every ``np.*`` array function; not indexing, ``.T``, ``.copy()`` or ``.argmax()``) by
  running the step on an ``ndarray`` subclass that counts what it is asked to do.
* :func:`call_costs` times single NumPy calls at the small step's shapes.
* :func:`cprofile_step` is cProfile's table of funcnet's step (calls per step, own time).
"""

from __future__ import annotations

import cProfile
import pstats
import time
from collections import Counter
from typing import Any

import numpy as np

from benchmarks import reference, workloads
from benchmarks.workloads import Workload
from funcnet import tree

_counts: Counter = Counter()
_depth = 0


def _plain(a: Any) -> Any:
    return a.view(np.ndarray) if isinstance(a, Counted) else a


class Counted(np.ndarray):
    """An ndarray that counts the top-level NumPy calls made on it (nested ones are not counted)."""

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        global _depth
        if _depth == 0:
            _counts[ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}"] += 1
        if out is not None:
            kwargs["out"] = tuple(_plain(o) for o in out)
        _depth += 1
        try:
            result = getattr(ufunc, method)(*(_plain(i) for i in inputs), **kwargs)
        finally:
            _depth -= 1
        if out is not None:
            return out[0] if len(out) == 1 else out
        return result.view(Counted) if isinstance(result, np.ndarray) else result

    def __array_function__(self, func, types, args, kwargs):
        global _depth
        if _depth == 0:
            _counts[func.__name__] += 1
        _depth += 1
        try:
            result = super().__array_function__(func, types, args, kwargs)
        finally:
            _depth -= 1
        return result.view(Counted) if type(result) is np.ndarray else result


def _counted(tree_: Any) -> Any:
    return tree.map(lambda a: a.view(Counted) if isinstance(a, np.ndarray) and a.ndim else a, tree_)


def _count(steps, n: int) -> Counter:
    steps(2)  # warm caches (first-call look-ups) before counting
    _counts.clear()
    steps(n)
    per_step = Counter({k: v / n for k, v in _counts.items()})
    _counts.clear()
    return per_step


def array_calls(w: Workload, n: int = 20) -> dict[str, Counter]:
    """NumPy calls per step of funcnet's step and of the reference, by function."""
    step, state = workloads.funcnet_setup(w)
    x, t = workloads.data(w)
    batches = [(_counted(bx), _counted(bt)) for bx, bt in workloads.batches(w, x, t)]
    fn_state = state._replace(params=_counted(state.params))

    def funcnet_steps(k):
        nonlocal fn_state
        for i in range(k):
            fn_state, _ = step(fn_state, batches[i % len(batches)])

    model = reference.MLP([(_counted(W), _counted(b)) for W, b in workloads.weights(state.params)])
    opt = reference.SGD(w.lr)

    def reference_steps(k):
        for i in range(k):
            reference.train_step(model, opt, *batches[i % len(batches)])

    return {"funcnet": _count(funcnet_steps, n), "reference": _count(reference_steps, n)}


def _per_call_us(fn, n: int) -> float:
    fn()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def call_costs(n: int = 2000) -> dict[str, float]:
    """Microseconds per call (best of 5) of NumPy calls at the small step's shapes (batch 30, float32)."""
    rng = np.random.default_rng(0)
    h = rng.standard_normal((30, 10), dtype=np.float32)
    x = rng.standard_normal((30, 2), dtype=np.float32)
    W = rng.standard_normal((2, 10), dtype=np.float32)
    b = rng.standard_normal(10, dtype=np.float32)
    onehot = np.eye(10, dtype=np.int32)[rng.integers(0, 10, 30)]
    return {
        "a * b (ufunc operator)": _per_call_us(lambda: h * h, n),
        "np.exp(a)": _per_call_us(lambda: np.exp(h), n),
        "a + b (row broadcast)": _per_call_us(lambda: h + b, n),
        "np.matmul(x, W)": _per_call_us(lambda: np.matmul(x, W), n),
        "np.sum(a, axis=0)": _per_call_us(lambda: np.sum(h, axis=0), n),
        "np.add.reduce(a, axis=0)": _per_call_us(lambda: np.add.reduce(h, axis=0), n),
        "np.max(a, axis=1, keepdims=True)": _per_call_us(lambda: np.max(h, axis=1, keepdims=True), n),
        "np.where(c, a, b)": _per_call_us(lambda: np.where(h >= 0, h, b), n),
        "np.astype(int32 -> float32)": _per_call_us(lambda: np.astype(onehot, np.float32), n),
        "str(a.dtype)": _per_call_us(lambda: str(h.dtype), n),
        "python function call": _per_call_us(lambda: None, n),
    }


def cprofile_step(w: Workload, n: int = 2000, top: int = 25) -> dict:
    """cProfile of ``n`` funcnet steps: total Python calls per step and the top functions by own time."""
    step, state = workloads.funcnet_setup(w)
    x, t = workloads.data(w)
    batches = workloads.batches(w, x, t)
    for i in range(20):
        state, _ = step(state, batches[i % len(batches)])

    def run():
        nonlocal state
        for i in range(n):
            state, _ = step(state, batches[i % len(batches)])

    return _cprofile(run, n, top)


def cprofile_fit(fit, epochs: int, top: int = 15) -> dict:
    """cProfile of one warm ``fit()`` (per epoch), e.g. funcnet's JAX fit with the epoch compiled."""
    fit()
    return _cprofile(fit, epochs, top)


def _cprofile(run, n: int, top: int) -> dict:
    prof = cProfile.Profile()
    prof.enable()
    run()
    prof.disable()
    stats = pstats.Stats(prof)
    total = stats.total_tt
    rows = []
    for (filename, line, func), (_, ncalls, tottime, cumtime, _) in stats.stats.items():
        short = filename.split("/funcnet/")[-1] if "/funcnet/" in filename else filename.rsplit("/", 1)[-1]
        where = f"{short}:{line}({func})" if line else func
        rows.append({"function": where, "calls_per_unit": ncalls / n, "tottime_share": tottime / total,
                     "tottime_us_per_unit": tottime / n * 1e6, "cumtime_us_per_unit": cumtime / n * 1e6})
    rows.sort(key=lambda r: -r["tottime_share"])
    calls = sum(s[1] for s in stats.stats.values())
    return {"units": n, "python_calls_per_unit": calls / n, "profiled_us_per_unit": total / n * 1e6,
            "top": rows[:top]}


def phases(w: Workload, n: int = 2000) -> dict[str, dict[str, float]]:
    """Microseconds per call (best of 5) of each phase of one step, funcnet's and the reference's.

    funcnet: ``model.vjp`` (forward), ``loss.vjp``, the two pullbacks (backward), ``optimizer.update``
    (the checked path's parts); the whole step minus these is the step's own glue. ``planned``: the
    parts of the plan that answers the same step (its guard, fused core, flat update, assembly). The reference: ``predict``, the loss
    layer's ``forward``, ``backward``, ``SGD.update``.
    """
    step, state = workloads.funcnet_setup(w)
    x, t = workloads.data(w)
    bx, bt = workloads.batches(w, x, t)[0]
    model, loss, opt = step.model, step.loss, step.optimizer
    params = state.params
    logits, pullback = model.vjp(params, bx)
    _, loss_pullback = loss.vjp(logits, bt)
    dlogits = loss_pullback(1.0)
    grads, _ = pullback(dlogits)
    fn = {
        "forward": _per_call_us(lambda: model.vjp(params, bx), n),
        "loss": _per_call_us(lambda: loss.vjp(logits, bt), n),
        "backward": _per_call_us(lambda: pullback(loss_pullback(1.0)), n),
        "update": _per_call_us(lambda: opt.update(params, grads, state.opt_state), n),
        "step": _per_call_us(lambda: step._checked(state, (bx, bt)), n),
    }
    fn["glue"] = fn["step"] - fn["forward"] - fn["loss"] - fn["backward"] - fn["update"]

    step(state, (bx, bt))  # checked: the plan for this batch is made
    plan = step._plan_for(bx, bt)
    flat = plan.flatten(state)
    new_flat = plan.update(flat, plan.core(flat.leaves, bx, bt)[0])
    core_us = _per_call_us(lambda: plan.core(flat.leaves, bx, bt), n)
    planned = {
        "guard (flatten)": _per_call_us(lambda: plan.flatten(state), n),
        "forward, loss, backward (core)": core_us,
        # SGD writes into the grads it is given: each update gets fresh ones, and the core is subtracted
        "update (flat)": _per_call_us(lambda: plan.update(flat, plan.core(flat.leaves, bx, bt)[0]), n) - core_us,
        "assemble": _per_call_us(lambda: plan.assemble(new_flat), n),
        "step": _per_call_us(lambda: step(state, (bx, bt)), n),
    }
    planned["glue"] = planned["step"] - sum(v for k, v in planned.items() if k != "step")

    ref = reference.MLP(workloads.weights(params))
    ref_opt = reference.SGD(0.0)  # the update's cost without moving the params
    scores = ref.predict(bx)
    ref.loss_layer.forward(scores, bt)
    ours = {
        "forward": _per_call_us(lambda: ref.predict(bx), n),
        "loss": _per_call_us(lambda: ref.loss_layer.forward(scores, bt), n),
        "backward": _per_call_us(ref.backward, n),
        "update": _per_call_us(lambda: ref_opt.update(ref.params, ref.grads), n),
        "step": _per_call_us(lambda: reference.train_step(ref, ref_opt, bx, bt), n),
    }
    ours["glue"] = ours["step"] - ours["forward"] - ours["loss"] - ours["backward"] - ours["update"]
    return {"funcnet": fn, "reference": ours, "planned": planned}
