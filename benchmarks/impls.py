"""The implementations side by side, each built the same way from a workload.

``build(name, workload)`` gives an :class:`Impl`: ``steps(k)`` runs ``k`` training steps on the
workload's batches (cycling) and waits until they are done; ``fit()`` runs the whole
``workload.epochs`` training loop end to end and returns its last recorded loss (the mean of
the last 10 steps, as the seed's loop prints). All of them start from funcnet's initial params.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from benchmarks import reference, workloads
from benchmarks.workloads import Workload
from funcnet import ops, train, tree
from funcnet.backend import largest_finite

EVAL_INTERVAL = 10  # the seed's loop records the mean loss every 10 iterations


class Impl(NamedTuple):
    name: str
    steps: Callable[[int], None]
    fit: Callable[[], float] | None = None


class UnavailableError(RuntimeError):
    """The implementation's library is not installed here."""


def _cycle(items):
    i = 0
    while True:
        yield items[i % len(items)]
        i += 1


def _common(w: Workload):
    step, state = workloads.funcnet_setup(w)
    x, t = workloads.data(w)
    return step, state, x, t, workloads.weights(state.params)


# --- the reference --------------------------------------------------------------------------


def reference_impl(w: Workload, with_fit: bool = True) -> Impl:
    _, _, x, t, init = _common(w)
    model, opt = reference.MLP(init), reference.SGD(w.lr)
    batches = _cycle(workloads.batches(w, x, t))

    def steps(k):
        for _ in range(k):
            reference.train_step(model, opt, *next(batches))

    if not with_fit:  # keep no initial copy for fit (peak-memory runs)
        return Impl("reference (book, NumPy)", steps)

    def fit():
        losses = reference.train(reference.MLP(init), reference.SGD(w.lr), x, t, max_epoch=w.epochs,
                                 batch_size=w.batch_size, permutation=reference.local_permutation(w.seed, len(x)),
                                 eval_interval=EVAL_INTERVAL)
        return float(losses[-1])

    return Impl("reference (book, NumPy)", steps, fit)


# --- funcnet --------------------------------------------------------------------------------


def funcnet_numpy(w: Workload, with_fit: bool = True) -> Impl:
    step, state0, x, t, _ = _common(w)
    batches = _cycle(workloads.batches(w, x, t))
    state = state0

    def steps(k):
        nonlocal state
        for _ in range(k):
            state, _ = step(state, next(batches))

    if not with_fit:  # keep no initial copy for fit (peak-memory runs)
        return Impl("funcnet, NumPy", steps)

    def fit():
        _, history = train.fit(step, state0, x, t, epochs=w.epochs, batch_size=w.batch_size,
                               eval_interval=EVAL_INTERVAL, progress=False, log=False)
        return float(history["loss"][-1])

    return Impl("funcnet, NumPy", steps, fit)


def inline_floor(w: Workload, with_fit: bool = True) -> Impl:
    """The floor of a bit-identical NumPy step: the NumPy calls of funcnet's planned step for the
    seed's net (Affine, Sigmoid, Affine, softmax cross-entropy on one-hot targets, SGD), written
    inline with no checks, no guard and no trees. Checked here to give funcnet's params bit for bit."""
    if len(w.sizes) != 3:
        raise UnavailableError("the inline floor is written for one hidden layer (the small workload)")
    step, state, x, t, _ = _common(w)
    dt = np.dtype(w.dtype)
    f = dt.type
    one, lr, scale = np.asarray(f(1.0)), np.asarray(f(w.lr)), np.asarray(f(1.0 / w.batch_size))
    clip = ops.sigmoid_clip(np, dt)
    pos, neg, floor = np.asarray(f(clip)), np.asarray(f(-clip)), np.asarray(f(-largest_finite(dt)))
    n = w.batch_size

    def inline_step(params, bx, bt):
        (w1, b1), (w2, b2) = params
        h = np.matmul(bx, w1) + b1
        y = np.divide(one, np.add(one, np.exp(np.negative(np.minimum(np.maximum(h, neg), pos)))))
        s = np.matmul(y, w2) + b2
        z = s - np.maximum.reduce(s, axis=1, keepdims=True)
        np.maximum(z, floor, out=z)
        e = np.exp(z)
        total = np.add.reduce(e, axis=1, keepdims=True)
        tt = bt.astype(dt)
        loss = np.add.reduce(tt * (np.log(total) - z), axis=None) / n
        dy = (e / total - tt) * scale
        gw2, gb2 = np.matmul(y.T, dy), np.add.reduce(dy, axis=0)
        dy = np.matmul(dy, w2.T)
        dy = np.multiply(dy, np.multiply(y, np.subtract(one, y)))
        gw1, gb1 = np.matmul(bx.T, dy), np.add.reduce(dy, axis=0)
        # SGD as the plan runs it: the new params written into the step's own grads
        return [tuple(np.subtract(p, np.multiply(g, lr, out=g), out=g) for p, g in ((w1, gw1), (b1, gb1))),
                tuple(np.subtract(p, np.multiply(g, lr, out=g), out=g) for p, g in ((w2, gw2), (b2, gb2)))], loss

    batch_list = workloads.batches(w, x, t)
    params = [(p["W"], p["b"]) for p in state.params if isinstance(p, dict)]
    check, ours = params, state
    for bx, bt in batch_list[:3]:  # the floor counts only if it computes what funcnet computes
        check, _ = inline_step(check, bx, bt)
        ours, _ = step(ours, (bx, bt))
    if not all(np.array_equal(a, b) for pair, want in zip(check, workloads.weights(ours.params), strict=True)
               for a, b in zip(pair, want, strict=True)):
        raise RuntimeError("the inline floor does not give funcnet's params bit for bit")
    batches = _cycle(batch_list)

    def steps(k):
        nonlocal params
        for _ in range(k):
            params, _ = inline_step(params, *next(batches))

    return Impl("same NumPy calls inline (floor)", steps)


def _jax():
    if importlib.util.find_spec("jax") is None:
        raise UnavailableError("jax is not installed")
    import jax
    import jax.numpy as jnp

    return jax, jnp


def funcnet_jax(w: Workload, with_fit: bool = True) -> Impl:
    """``jax.jit`` of the very same step; ``fit`` scans each epoch under jit (``compile_epoch=True``)."""
    jax, jnp = _jax()
    step, state0, x, t, _ = _common(w)
    state0 = tree.map(jnp.asarray, state0)
    xj, tj = jnp.asarray(x), jnp.asarray(t)
    batches = _cycle([(jnp.asarray(bx), jnp.asarray(bt)) for bx, bt in workloads.batches(w, x, t)])
    jstep = jax.jit(step)
    state = state0

    def steps(k):
        nonlocal state
        for _ in range(k):
            state, _ = jstep(state, next(batches))
        jax.block_until_ready(state)

    if not with_fit:  # keep no initial copy for fit (peak-memory runs)
        return Impl("funcnet, JAX (jit)", steps)

    def fit(epochs=w.epochs):
        _, history = train.fit(step, state0, xj, tj, epochs=epochs, batch_size=w.batch_size,
                               eval_interval=EVAL_INTERVAL, progress=False, log=False, compile_epoch=True)
        return float(history["loss"][-1]) if history["loss"] else float("nan")

    return Impl("funcnet, JAX (jit)", steps, fit)


# --- peers ----------------------------------------------------------------------------------


def stax_optax(w: Workload, with_fit: bool = True) -> Impl:
    """jax.example_libraries.stax for the net, optax.sgd, a jitted step; the loop in Python."""
    jax, jnp = _jax()
    if importlib.util.find_spec("optax") is None:
        raise UnavailableError("optax is not installed")
    import optax
    from jax.example_libraries import stax

    _, _, x, t, init = _common(w)
    parts = [stax.Dense(w.sizes[1])]
    for width in w.sizes[2:]:
        parts += [stax.Sigmoid, stax.Dense(width)]
    _, apply_fn = stax.serial(*parts)
    params0 = []
    for i, (W, b) in enumerate(init):
        params0 += [(), (jnp.asarray(W), jnp.asarray(b))] if i else [(jnp.asarray(W), jnp.asarray(b))]
    opt = optax.sgd(w.lr)
    t = t.astype(x.dtype)

    def loss_fn(params, bx, bt):
        return optax.softmax_cross_entropy(apply_fn(params, bx), bt).mean()

    @jax.jit
    def jstep(params, opt_state, bx, bt):
        loss, grads = jax.value_and_grad(loss_fn)(params, bx, bt)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    batches = _cycle([(jnp.asarray(bx), jnp.asarray(bt)) for bx, bt in workloads.batches(w, x, t)])
    carry = (params0, opt.init(params0))

    def steps(k):
        nonlocal carry
        params, opt_state = carry
        for _ in range(k):
            params, opt_state, _ = jstep(params, opt_state, *next(batches))
        carry = jax.block_until_ready((params, opt_state))

    if not with_fit:  # keep no initial copy for fit (peak-memory runs)
        return Impl("JAX stax + optax (jit)", steps)

    def fit():
        params, opt_state = params0, opt.init(params0)
        perm = reference.local_permutation(w.seed, len(x))
        b, pending, recorded = w.batch_size, [], []
        for epoch in range(w.epochs):
            idx = perm(epoch)
            xs, ts = x[idx], t[idx]
            for it in range(w.iters):
                params, opt_state, loss = jstep(params, opt_state, xs[it * b:(it + 1) * b], ts[it * b:(it + 1) * b])
                pending.append(loss)
                if len(pending) == EVAL_INTERVAL:
                    recorded.append(float(np.mean([float(v) for v in pending])))
                    pending = []
        return recorded[-1]

    return Impl("JAX stax + optax (jit)", steps, fit)


_TORCH_DEFAULT_THREADS: int | None = None
SINGLE_THREAD = False  # set by the suite for --single-thread: PyTorch on one thread for every workload


def torch_eager(w: Workload, with_fit: bool = True) -> Impl:
    """PyTorch eager: nn.Sequential, F.cross_entropy, torch.optim.SGD; the loop in Python."""
    if importlib.util.find_spec("torch") is None:
        raise UnavailableError("torch is not installed")
    # Idle OpenMP threads would otherwise spin for a while after each torch call and slow
    # whichever contender runs next in this process; read once, when torch loads libgomp.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    from torch.nn import functional

    global _TORCH_DEFAULT_THREADS
    if _TORCH_DEFAULT_THREADS is None:
        _TORCH_DEFAULT_THREADS = torch.get_num_threads()
    torch.set_num_threads(1 if SINGLE_THREAD else w.torch_threads or _TORCH_DEFAULT_THREADS)

    _, _, x, t, init = _common(w)
    dtype = getattr(torch, w.dtype)

    def make():
        mods = []
        for i, (W, b) in enumerate(init):
            if i:
                mods.append(torch.nn.Sigmoid())
            lin = torch.nn.Linear(W.shape[0], W.shape[1], dtype=dtype)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(W.T.copy()))
                lin.bias.copy_(torch.from_numpy(b))
            mods.append(lin)
        net = torch.nn.Sequential(*mods)
        return net, torch.optim.SGD(net.parameters(), lr=w.lr)

    xt, lt = torch.from_numpy(x), torch.from_numpy(np.argmax(t, axis=1))
    batches = _cycle([(xt[i * w.batch_size:(i + 1) * w.batch_size], lt[i * w.batch_size:(i + 1) * w.batch_size])
                      for i in range(w.iters)])
    net, opt = make()

    def one_step(net, opt, bx, bl):
        opt.zero_grad(set_to_none=True)
        loss = functional.cross_entropy(net(bx), bl)
        loss.backward()
        opt.step()
        return loss

    def steps(k):
        for _ in range(k):
            one_step(net, opt, *next(batches))

    label = f"PyTorch eager ({torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''})"
    if not with_fit:
        return Impl(label, steps)

    def fit():
        net, opt = make()
        perm = reference.local_permutation(w.seed, len(x))
        b, total, count, recorded = w.batch_size, 0.0, 0, []
        for epoch in range(w.epochs):
            idx = torch.from_numpy(perm(epoch))
            xs, ls = xt[idx], lt[idx]
            for it in range(w.iters):
                total += one_step(net, opt, xs[it * b:(it + 1) * b], ls[it * b:(it + 1) * b]).item()
                count += 1
                if count == EVAL_INTERVAL:
                    recorded.append(total / count)
                    total, count = 0.0, 0
        return recorded[-1]

    return Impl(label, steps, fit)


def gemms_only(w: Workload, with_fit: bool = True) -> Impl:
    """The step's matrix products alone, same shapes (the floor of a NumPy step)."""
    pairs = workloads.minimal_gemms(w, np.random.default_rng(w.seed))

    def steps(k):
        for _ in range(k):
            for a, b in pairs:
                np.matmul(a, b)

    return Impl("minimal GEMMs (NumPy)", steps)


BUILDERS: dict[str, Callable[..., Impl]] = {
    "reference": reference_impl,
    "funcnet-numpy": funcnet_numpy,
    "funcnet-jax": funcnet_jax,
    "stax-optax": stax_optax,
    "torch": torch_eager,
    "gemms": gemms_only,
    "inline-floor": inline_floor,
}


def build(name: str, w: Workload, *, with_fit: bool = True) -> Impl:
    """The implementation ``name`` on workload ``w``; ``with_fit=False`` keeps no initial copy for ``fit``."""
    return BUILDERS[name](w, with_fit)
