"""optax's gradient transformations as funcnet optimizers (jax backend; optax imported lazily)."""

from __future__ import annotations

from typing import Any

from funcnet import tree
from funcnet.backend import is_jax, namespace
from funcnet.optim.base import Optimizer

__all__ = ["from_optax"]


def from_optax(tx: Any) -> Optimizer:
    """An optax ``GradientTransformation`` as a funcnet `Optimizer`.

    ``init(params)`` is ``tx.init(params)``; ``update(params, grads, state)`` runs
    ``tx.update(grads, state, params)`` and applies the updates with ``optax.apply_updates``. The
    state is optax's own. For params on the jax backend; optax is imported here, never when
    funcnet is.

    Args:
        tx: an optax ``GradientTransformation`` (anything with ``init`` and ``update``).

    Returns:
        The optimizer.

    Raises:
        TypeError: ``tx`` has no ``init`` and ``update``, or is a funcnet Optimizer already.
        ImportError: optax is not installed.

    Examples:
        >>> import optax, jax.numpy as jnp
        >>> from funcnet import optim
        >>> opt = optim.from_optax(optax.sgd(0.5))
        >>> p = {"w": jnp.ones(2)}
        >>> opt.update(p, {"w": jnp.ones(2)}, opt.init(p))[0]["w"].tolist()
        [0.5, 0.5]
    """
    if isinstance(tx, Optimizer):  # update(params, grads, state): the arguments would be swapped
        raise TypeError("from_optax: tx must be an optax GradientTransformation, got Optimizer (a funcnet "
                        "optimizer already)")
    if not callable(getattr(tx, "init", None)) or not callable(getattr(tx, "update", None)):
        raise TypeError(f"from_optax: tx must be an optax GradientTransformation, got {type(tx).__name__}")
    import optax

    apply_updates, tx_update = optax.apply_updates, tx.update

    def init(params):
        for path, leaf in tree.leaves_with_paths(params):
            if not is_jax(namespace(leaf)):
                raise TypeError(f"from_optax: optax optimizers run on jax arrays; params leaf {path!r} is "
                                f"{type(leaf).__name__} (init the state with backend='jax', or use funcnet's own)")
        return tx.init(params)

    def update(params, grads, state):
        updates, state = tx_update(grads, state, params)
        return apply_updates(params, updates), state

    return Optimizer(init, update)
