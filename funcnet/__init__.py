"""funcnet: a functional, immutable-state neural-network library on NumPy, CuPy and JAX.

Layers are pure ``(init, apply, vjp)`` triples over pytrees, losses pure ``(value, vjp)``
pairs, optimizers pure ``(init, update)`` pairs; a training step threads all state explicitly.
See ``docs/architecture.md``.
"""

from funcnet import (
    backend,
    checkpoint,
    datasets,
    experiments,
    gradcheck,
    initializers,
    layers,
    losses,
    models,
    ops,
    optim,
    random,
    schedules,
    train,
    tree,
)
from funcnet.layers import (
    Affine,
    Dropout,
    Flatten,
    Layer,
    MatMul,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
    serial,
)
from funcnet.losses import (
    Loss,
    SigmoidWithLoss,
    SoftmaxWithLoss,
    book_softmax_cross_entropy,
    mean_squared_error,
    sigmoid_binary_cross_entropy,
    softmax_cross_entropy,
)
from funcnet.models import TwoLayerNet
from funcnet.optim import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop
from funcnet.train import (
    NonFiniteLossError,
    TrainingInterrupted,
    TrainState,
    TrainStep,
    evaluate,
    fit,
    init_state,
    make_train_step,
)
from funcnet.trainer import Trainer

__version__ = "0.1.0"

__all__ = [
    "SGD",
    "AdaGrad",
    "Adam",
    "Affine",
    "Dropout",
    "Flatten",
    "Layer",
    "Loss",
    "MatMul",
    "Momentum",
    "Nesterov",
    "NonFiniteLossError",
    "RMSprop",
    "ReLU",
    "Sigmoid",
    "SigmoidWithLoss",
    "Softmax",
    "SoftmaxWithLoss",
    "Tanh",
    "TrainState",
    "TrainStep",
    "Trainer",
    "TrainingInterrupted",
    "TwoLayerNet",
    "backend",
    "book_softmax_cross_entropy",
    "checkpoint",
    "datasets",
    "evaluate",
    "experiments",
    "fit",
    "gradcheck",
    "init_state",
    "initializers",
    "layers",
    "losses",
    "make_train_step",
    "mean_squared_error",
    "models",
    "ops",
    "optim",
    "random",
    "schedules",
    "serial",
    "sigmoid_binary_cross_entropy",
    "softmax_cross_entropy",
    "train",
    "tree",
]
