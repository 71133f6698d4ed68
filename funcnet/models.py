"""Ready-made models of the seed."""

from __future__ import annotations

from funcnet._arguments import positive_int
from funcnet.layers import Affine, Layer, Sigmoid, serial

__all__ = ["TwoLayerNet"]


def TwoLayerNet(input_size: int, hidden_size: int, output_size: int) -> Layer:
    """The seed's net: Affine, Sigmoid, Affine, with the book's ``0.01 * randn`` weights and zero biases.

    Train it on logits with `funcnet.losses.softmax_cross_entropy` (the book's
    SoftmaxWithLoss). ``init(key, (input_size,))`` gives ``((output_size,), params)``.

    Args:
        input_size: the length of an input row (not checked here; ``init`` compares its
            ``in_shape`` with it).
        hidden_size: the width of the sigmoid layer, an int >= 1.
        output_size: the number of logits (classes), an int >= 1.

    Returns:
        A `funcnet.layers.Layer` (a `funcnet.layers.serial` of the three). Its
        ``init(key, in_shape=(input_size,), dtype="float32")`` gives
        ``((output_size,), params)``, params one entry per layer (``{"W", "b"}``, ``()``,
        ``{"W", "b"}``); it raises ``ValueError`` for another ``in_shape`` and
        ``TypeError`` for a dtype that is not floating point.

    Raises:
        ValueError: ``input_size``, ``hidden_size`` or ``output_size`` not an int >= 1 (the message
            names it).

    Examples:
        >>> import numpy as np
        >>> from funcnet import random
        >>> net = TwoLayerNet(2, 10, 3)
        >>> out_shape, params = net.init(random.key(0))
        >>> out_shape, params[0]["W"].shape, params[0]["W"].dtype, params[2]["b"]
        ((3,), (2, 10), dtype('float32'), array([0., 0., 0.], dtype=float32))
        >>> net.apply(params, np.zeros((5, 2), np.float32)).shape
        (5, 3)
        >>> net.init(random.key(0), (4,))
        Traceback (most recent call last):
        ...
        ValueError: TwoLayerNet: built for inputs of shape (2,), got (4,)
        >>> TwoLayerNet(2, 0, 3)
        Traceback (most recent call last):
        ...
        ValueError: Affine(0): out_dim must be a positive int, got 0
    """
    positive_int("TwoLayerNet", "input_size", input_size)
    net = serial(Affine(hidden_size, w_init="book"), Sigmoid(), Affine(output_size, w_init="book"))

    def init(key, in_shape=(input_size,), dtype="float32"):
        if tuple(in_shape) != (input_size,):
            raise ValueError(f"TwoLayerNet: built for inputs of shape ({input_size},), got {tuple(in_shape)}")
        return net.init(key, in_shape, dtype)

    return net._replace(init=init)
