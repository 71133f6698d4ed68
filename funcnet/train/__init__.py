"""Training: the state, the step as a value, ``fit`` and evaluation.

``step(state, batch) -> (state, metrics)`` is a pure function of its arguments; on the jax
backend ``jax.jit(step)`` compiles it unchanged. `fit` is a loop around it that is itself
a function of the state, so a resumed run sees exactly the batches an uninterrupted one would.
"""

from funcnet.train.data import Data, prepare, to_params_backend, validate_data
from funcnet.train.evaluation import accuracy, evaluate, predict
from funcnet.train.loop import fit, nonfinite_leaf
from funcnet.train.progress import progress_bar
from funcnet.train.state import NonFiniteLossError, TrainingInterrupted, TrainState, init_state, step_key
from funcnet.train.step import TrainStep, make_train_step

__all__ = [
    "Data",
    "NonFiniteLossError",
    "TrainState",
    "TrainStep",
    "TrainingInterrupted",
    "accuracy",
    "evaluate",
    "fit",
    "init_state",
    "make_train_step",
    "nonfinite_leaf",
    "predict",
    "prepare",
    "progress_bar",
    "step_key",
    "to_params_backend",
    "validate_data",
]
