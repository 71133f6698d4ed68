"""Ready-made models of the seed."""

from __future__ import annotations

from funcnet.layers import Affine, Layer, Sigmoid, serial

__all__ = ["TwoLayerNet"]


def TwoLayerNet(input_size: int, hidden_size: int, output_size: int) -> Layer:
    """The seed's net: Affine, Sigmoid, Affine, with the book's ``0.01 * randn`` weights and zero biases.

    Train it on logits with `funcnet.losses.softmax_cross_entropy` (the book's
    SoftmaxWithLoss). ``init(key, (input_size,))`` gives ``((output_size,), params)``.
    """
    net = serial(Affine(hidden_size, w_init="book"), Sigmoid(), Affine(output_size, w_init="book"))

    def init(key, in_shape=(input_size,), dtype="float32"):
        if tuple(in_shape) != (input_size,):
            raise ValueError(f"TwoLayerNet: built for inputs of shape ({input_size},), got {tuple(in_shape)}")
        return net.init(key, in_shape, dtype)

    return net._replace(init=init)
