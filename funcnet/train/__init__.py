"""Training: the state, the step as a value, ``fit`` and evaluation.

``step(state, batch) -> (state, metrics)`` is a pure function of its arguments; on the jax
backend ``jax.jit(step)`` compiles it unchanged. `fit` is a loop around it that is itself
a function of the state, so a resumed run sees exactly the batches an uninterrupted one would.
"""

# in the order a reader meets them: the state, the step, fit, evaluation; then the parts fit is made of
from funcnet.train.state import NonFiniteLossError, TrainingInterrupted, TrainState, init_state, step_key  # isort: skip
from funcnet.train.step import TrainStep, make_train_step  # isort: skip
from funcnet.train.loop import fit, nonfinite_leaf  # isort: skip
from funcnet.train.evaluation import accuracy, evaluate, predict  # isort: skip
from funcnet.train.data import Data, prepare, to_params_backend, validate_data  # isort: skip
from funcnet.train.progress import progress_bar  # isort: skip

__all__ = [  # noqa: RUF022 - the reading order, not the alphabet
    "TrainState",
    "init_state",
    "TrainStep",
    "make_train_step",
    "fit",
    "NonFiniteLossError",
    "TrainingInterrupted",
    "predict",
    "evaluate",
    "accuracy",
    "nonfinite_leaf",
    "step_key",
    "validate_data",
    "prepare",
    "to_params_backend",
    "Data",
    "progress_bar",
]
