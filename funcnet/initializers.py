"""Weight initialisers: ``init(key, shape, dtype) -> host NumPy array``.

Every initialiser draws on the host with :mod:`funcnet.random` (in float64 for float64,
otherwise in float32, scaled, then cast), so the same key gives the same weights on every
backend once the params are moved there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from funcnet import random

Initializer = Callable[[Any, tuple[int, ...], Any], np.ndarray]


def _scaled_normal(stddev: float, key: Any, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    dtype = np.dtype(dtype)
    draw = np.float64 if dtype == np.float64 else np.float32
    return (random.normal(key, shape, draw) * stddev).astype(dtype, copy=False)


def normal(stddev: float = 0.01) -> Initializer:
    """``stddev * randn``; ``normal(0.01)`` is the book's initialiser."""
    return lambda key, shape, dtype="float32": _scaled_normal(stddev, key, shape, dtype)


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) < 2:
        return shape[0] if shape else 1, shape[0] if shape else 1
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def glorot_normal() -> Initializer:
    """Xavier/Glorot: stddev ``sqrt(2 / (fan_in + fan_out))``; the default for Affine and MatMul."""

    def init(key: Any, shape: tuple[int, ...], dtype: Any = "float32") -> np.ndarray:
        fan_in, fan_out = _fans(shape)
        return _scaled_normal(math.sqrt(2.0 / (fan_in + fan_out)), key, shape, dtype)

    return init


def he_normal() -> Initializer:
    """He/Kaiming: stddev ``sqrt(2 / fan_in)``, for ReLU networks."""

    def init(key: Any, shape: tuple[int, ...], dtype: Any = "float32") -> np.ndarray:
        fan_in, _ = _fans(shape)
        return _scaled_normal(math.sqrt(2.0 / fan_in), key, shape, dtype)

    return init


def lecun_normal() -> Initializer:
    """stddev ``sqrt(1 / fan_in)`` (the book's "Xavier" of volume 1)."""

    def init(key: Any, shape: tuple[int, ...], dtype: Any = "float32") -> np.ndarray:
        fan_in, _ = _fans(shape)
        return _scaled_normal(math.sqrt(1.0 / fan_in), key, shape, dtype)

    return init


def zeros() -> Initializer:
    """All zeros (biases)."""
    return lambda key, shape, dtype="float32": np.zeros(shape, dtype=np.dtype(dtype))


book = normal(0.01)
"""The book's ``0.01 * np.random.randn(...)``."""

BY_NAME: dict[str, Callable[[], Initializer]] = {
    "glorot": glorot_normal,
    "xavier": glorot_normal,
    "he": he_normal,
    "lecun": lecun_normal,
    "book": lambda: book,
    "zeros": zeros,
}


def get(init: str | Initializer) -> Initializer:
    """An initialiser from a name (``glorot``, ``he``, ``lecun``, ``book``, ``zeros``) or itself."""
    if callable(init):
        return init
    if init not in BY_NAME:
        raise ValueError(f"unknown initialiser {init!r}; expected one of {sorted(BY_NAME)}")
    return BY_NAME[init]()
