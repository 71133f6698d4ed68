"""Whole epochs as one ``jax.jit``-compiled ``lax.scan`` of the step (the jax backend's fit)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from funcnet import tree
from funcnet.backend import sum_of_sums

__all__: list[str] = []  # fit's machinery: nothing public here


@functools.lru_cache(maxsize=8)  # compiled programs are large: the oldest go first
def epoch_runner(step: Callable, iters: int, batch_size: int) -> Callable:
    """``runner(state, x, t, perms) -> (state, losses, total)``: ``jax.jit`` of a ``lax.scan`` over
    epochs (one row of ``perms`` each) of a ``lax.scan`` of ``step`` over that epoch's batches;
    ``total`` is the sum of every floating leaf of the new params and optimizer state (finite
    exactly when they all are, unless a sum overflows)."""
    import jax
    import jax.numpy as jnp

    used = iters * batch_size

    def one_epoch(carry, perm):
        state, x, t = carry
        # the book's order: shuffle the whole set, then cut consecutive batches, tail dropped
        xb = jnp.reshape(jnp.take(x, perm[:used], axis=0), (iters, batch_size, *x.shape[1:]))
        tb = jnp.reshape(jnp.take(t, perm[:used], axis=0), (iters, batch_size, *t.shape[1:]))

        def body(s, batch):
            s, metrics = step(s, batch)
            return s, metrics["loss"]

        state, losses = jax.lax.scan(body, state, (xb, tb))
        return (state, x, t), losses

    @jax.jit
    def runner(state, x, t, perms):
        (state, _, _), losses = jax.lax.scan(one_epoch, (state, x, t), perms)
        # fit's finite check of the new state, computed with it: reading it after the call
        # costs nothing, where a check issued after the next call's dispatch would wait for it
        floats = [a for a in tree.leaves((state.params, state.opt_state)) if jnp.issubdtype(a.dtype, jnp.floating)]
        return state, losses, sum_of_sums(floats)

    return runner
