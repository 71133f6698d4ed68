"""The training step as a value: ``TrainStep(model, loss, optimizer)(state, batch)``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from funcnet import tree
from funcnet.backend import is_complex, namespace
from funcnet.layers import Layer
from funcnet.losses import Loss
from funcnet.train.plan import MAX_PLANS, build_plan, plan_key, plannable
from funcnet.train.state import TrainState, check_parts, step_key

__all__ = ["TrainStep", "make_train_step"]


@dataclass(frozen=True, eq=False)
class TrainStep:
    """One pure training step: forward, loss, backward, update.

    ``step(state, (x, t)) -> (state, {"loss": scalar})``. It is a value: :func:`~funcnet.train.fit`
    reads ``model``, ``loss`` and ``optimizer`` from it to check the data once, before the first
    step. On the jax backend ``jax.jit(step)`` compiles it unchanged. ``x`` is cast to the
    params' dtype at this boundary.

    On NumPy, a batch whose shapes and dtypes the step has already run (checked) goes through a
    plan behind a guard (:mod:`funcnet.train.plan`): the same operations without the per-call
    checks, bit for bit the same results; anything the guard does not recognise takes the
    checked path, so the errors are the same either way.

    Attributes:
        model: the Layer being trained.
        loss: the Loss of its logits.
        optimizer: the Optimizer that updates the params.

    Example:
        >>> import numpy as np
        >>> import funcnet as fn
        >>> step = fn.TrainStep(fn.Affine(3), fn.softmax_cross_entropy, fn.optim.sgd(0.1))
        >>> state = fn.init_state(step.model, step.optimizer, fn.random.key(0), (2,))
        >>> state, metrics = step(state, (np.ones((4, 2), np.float32), np.array([0, 1, 2, 0])))
        >>> state.step, float(metrics["loss"]) > 0
        (1, True)
    """

    model: Layer
    loss: Loss
    optimizer: Any
    # what a plan can run of the model (None: nothing, every call takes the checked path), found
    # once; and the plans made so far, one per batch signature (None: that signature cannot have one)
    _plannable: Any = field(init=False, repr=False, compare=False)
    _plans: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_parts("TrainStep", model=self.model, optimizer=self.optimizer, loss=self.loss)
        object.__setattr__(self, "_plannable", plannable(self.model, self.loss))  # frozen: set once, here

    def __call__(self, state: TrainState, batch: Any) -> tuple[TrainState, dict[str, Any]]:
        if self._plannable is not None and type(batch) is tuple and len(batch) == 2:
            x, t = batch
            if type(x) is np.ndarray and type(t) is np.ndarray:
                plans = self._plans
                key = plan_key(x, t)
                plan = plans.get(key, False)
                if plan:
                    out = plan(state, x, t)
                    if out is not None:
                        params, opt_state, value = out
                        return state._replace(params=params, opt_state=opt_state, step=state.step + 1), \
                            {"loss": value}
                result = self._checked(state, batch)
                if plan is False and len(plans) < MAX_PLANS:  # a new signature: plan it (None: cannot)
                    plans[key] = build_plan(self._plannable, self.optimizer, state, x, t)
                return result
        return self._checked(state, batch)

    def _plan_for(self, x: Any, t: Any) -> Any:
        """The plan made for batches like ``(x, t)`` (NumPy arrays), or None; `fit`'s epoch runner asks."""
        return self._plans.get(plan_key(x, t)) if self._plannable is not None else None

    def _checked(self, state: TrainState, batch: Any) -> tuple[TrainState, dict[str, Any]]:
        """The fully checked step: every check, every error message."""
        if not isinstance(batch, tuple | list) or len(batch) != 2:
            raise TypeError(f"step: batch must be a pair (x, t), got {type(batch).__name__}")
        x, t = batch
        model = self.model
        params = state.params
        x = as_params_dtype("step", x, tree.any_leaf(params))
        rng = step_key(state) if model.stochastic else None
        logits, pullback = model.vjp(params, x, rng=rng)
        value, loss_pullback = self.loss.vjp(logits, t)
        dlogits = loss_pullback(1.0)
        # the gradient with respect to the data is never used: skip it where the model can
        grads = pullback(dlogits, input_grad=False)[0] if model.skips_input_grad else pullback(dlogits)[0]
        # the pullbacks hold every activation: let them go before the update allocates new params
        del logits, pullback, loss_pullback, dlogits
        params, opt_state = self.optimizer.update(params, grads, state.opt_state)
        return state._replace(params=params, opt_state=opt_state, step=state.step + 1), {"loss": value}


def make_train_step(model: Layer, loss: Loss, optimizer: Any) -> TrainStep:
    """The training step of ``model`` on ``loss`` with ``optimizer``: ``TrainStep(model, loss, optimizer)``.

    Args:
        model: the Layer to train.
        loss: a Loss such as :data:`funcnet.losses.softmax_cross_entropy`.
        optimizer: an Optimizer such as ``optim.sgd(1.0)``.

    Returns:
        A :class:`TrainStep`.

    Raises:
        TypeError: an argument is of the wrong kind (a constructor not called, arguments swapped).

    Example:
        >>> import funcnet as fn
        >>> net = fn.TwoLayerNet(2, 10, 3)
        >>> step = fn.make_train_step(net, fn.softmax_cross_entropy, fn.optim.sgd(1.0))
        >>> type(step).__name__
        'TrainStep'
    """
    return TrainStep(model, loss, optimizer)


def as_params_dtype(where: str, x: Any, leaf: Any) -> Any:
    """``x`` cast to ``leaf``'s dtype; the checks run only when a cast is needed (free otherwise)."""
    if not hasattr(x, "dtype"):
        raise TypeError(f"{where}: x must be an array, got {type(x).__name__}")
    if leaf is None:
        return x
    try:
        # dtypes of two libraries are never equal (array_api_strict warns when asked)
        same = type(x.dtype) is type(leaf.dtype) and x.dtype == leaf.dtype
    except Exception:  # NumPy's dtype cannot even be compared with array_api_strict's
        same = False
    if same:
        return x
    try:
        xp = namespace(x, leaf)
    except TypeError as err:
        raise TypeError(f"{where}: {err}") from None
    if is_complex(x.dtype):
        raise TypeError(f"{where}: x must be real numbers, got dtype {x.dtype}")
    return xp.astype(x, leaf.dtype)
