"""funcnet: a functional, immutable-state neural-network library on NumPy, CuPy and JAX.

Layers are pure ``(init, apply, vjp)`` triples over pytrees, losses pure ``(value, vjp)``
pairs, optimizers pure ``(init, update)`` pairs; a training step threads all state explicitly.
See ``docs/architecture.md``.
"""

from funcnet import backend, gradcheck, initializers, layers, losses, ops, random, tree
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
    SoftmaxWithLoss,
    book_softmax_cross_entropy,
    mean_squared_error,
    sigmoid_binary_cross_entropy,
    softmax_cross_entropy,
)

__version__ = "0.1.0"

__all__ = [
    "Affine",
    "Dropout",
    "Flatten",
    "Layer",
    "Loss",
    "MatMul",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "SoftmaxWithLoss",
    "Tanh",
    "backend",
    "book_softmax_cross_entropy",
    "gradcheck",
    "initializers",
    "layers",
    "losses",
    "mean_squared_error",
    "ops",
    "random",
    "serial",
    "sigmoid_binary_cross_entropy",
    "softmax_cross_entropy",
    "tree",
]
