"""Ready-made experiments for `funcnet.experiments.sweep`: the seed's runs as pure functions.

An experiment is ``fn(config, seed) -> {metric: value, ..., "history": [...]}`` drawing all its
randomness from ``funcnet.random.key(seed)``. `spiral_experiment` is the seed's model on the
spiral data set, with the settings of `SPIRAL_DEFAULTS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from funcnet import optim, random, train
from funcnet.datasets import spiral
from funcnet.losses import softmax_cross_entropy
from funcnet.models import TwoLayerNet

__all__ = ["SPIRAL_DEFAULTS", "spiral_experiment"]

SPIRAL_DEFAULTS: dict[str, Any] = {"hidden": 10, "lr": 1.0, "epochs": 300, "batch_size": 30, "eval_interval": 10}
"""The settings of `spiral_experiment` and their defaults (the book's run)."""


def spiral_experiment(config: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The seed's run: TwoLayerNet(2, hidden, 3) and SGD(lr) on the spiral, from ``random.key(seed)``.

    Args:
        config: any of the settings of `SPIRAL_DEFAULTS` (``hidden``, ``lr``, ``epochs``,
            ``batch_size``, ``eval_interval``); the others keep their defaults.
        seed: the run's seed: initial params and every epoch's shuffle come from it.

    Returns:
        ``{"loss": final loss on the data, "accuracy": ..., "history": [mean loss per record]}``.

    Raises:
        ValueError: a setting that is not one of `SPIRAL_DEFAULTS`.
        KeyboardInterrupt: Ctrl-C during training (a run cut short is never returned as a result).

    Examples:
        >>> out = spiral_experiment({"epochs": 1}, seed=0)
        >>> sorted(out), len(out["history"])
        (['accuracy', 'history', 'loss'], 1)
    """
    unknown = set(config) - set(SPIRAL_DEFAULTS)
    if unknown:
        raise ValueError(f"spiral_experiment: unknown settings {sorted(unknown)}; "
                         f"known: {list(SPIRAL_DEFAULTS)}")
    c = {**SPIRAL_DEFAULTS, **config}
    x, t = spiral.load_data(dtype="float32")
    model, optimizer = TwoLayerNet(2, c["hidden"], 3), optim.SGD(lr=c["lr"])
    step = train.make_train_step(model, softmax_cross_entropy, optimizer)
    state = train.init_state(model, optimizer, random.key(seed), (2,))
    # Ctrl-C raises TrainingInterrupted (a KeyboardInterrupt) out of fit: a cut-short run is no result
    state, history = train.fit(step, state, x, t, epochs=c["epochs"], batch_size=c["batch_size"],
                               eval_interval=c["eval_interval"], progress=False)
    result = train.evaluate(model, state.params, x, t)
    return {"loss": result["loss"], "accuracy": result["accuracy"], "history": history["loss"]}
