"""Weight initialisers: ``init(key, shape, dtype) -> host NumPy array``.

Every initialiser draws on the host with `funcnet.random` (in float64 for float64,
otherwise in float32, scaled, then cast), so the same key gives the same weights on every
backend once the params are moved there.

Examples:
    >>> from funcnet import random
    >>> get("zeros")(random.key(0), (2, 3), "float32").shape
    (2, 3)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from funcnet import random

__all__ = [
    "BY_NAME",
    "Initializer",
    "book",
    "get",
    "glorot_normal",
    "he_normal",
    "lecun_normal",
    "normal",
    "zeros",
]

Initializer = Callable[[Any, tuple[int, ...], Any], np.ndarray]
"""The type of an initialiser: ``init(key, shape, dtype="float32") -> host NumPy array``.

Examples:
    >>> from funcnet import random
    >>> init: Initializer = normal(1.0)
    >>> init(random.key(0), (2,), "float64").dtype
    dtype('float64')
"""


def _scaled_normal(stddev: float, key: Any, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind != "f":  # normals cast to integers would be silent zeros
        raise TypeError(f"initializers: weights must be floating point, got dtype {dtype}")
    return (random.normal(key, shape, random.draw_dtype(dtype)) * stddev).astype(dtype, copy=False)


def normal(stddev: float = 0.01) -> Initializer:
    """``stddev * randn``; ``normal(0.01)`` is the book's initialiser.

    Args:
        stddev: the standard deviation, finite and >= 0.

    Returns:
        An `Initializer`; it raises ``TypeError`` for a dtype that is not floating.

    Raises:
        ValueError: a negative or non-finite ``stddev``.

    Examples:
        >>> from funcnet import random
        >>> w = normal(0.01)(random.key(0), (100, 100))
        >>> w.dtype, bool(abs(float(w.std()) - 0.01) < 1e-3)
        (dtype('float32'), True)
    """
    if isinstance(stddev, bool) or not (isinstance(stddev, numbers.Real) and math.isfinite(stddev) and stddev >= 0):
        raise ValueError(f"initializers.normal: stddev must be a finite number >= 0, got {stddev!r}")
    return lambda key, shape, dtype="float32": _scaled_normal(stddev, key, shape, dtype)


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    # a zero-size weight has no fan; 1 keeps the stddev finite for an array with no entries
    if len(shape) < 2:
        fan = max(shape[0], 1) if shape else 1
        return fan, fan
    receptive = math.prod(shape[:-2])
    return max(shape[-2] * receptive, 1), max(shape[-1] * receptive, 1)


def glorot_normal() -> Initializer:
    """Xavier/Glorot: stddev ``sqrt(2 / (fan_in + fan_out))``; the default for Affine and MatMul.

    Fans come from the last two axes (``(fan_in, fan_out)``), times the product of any axes
    before them.

    Returns:
        An `Initializer` drawing normals of stddev ``sqrt(2 / (fan_in + fan_out))``.

    Examples:
        >>> from funcnet import random
        >>> glorot_normal()(random.key(0), (784, 100)).shape
        (784, 100)
    """

    def init(key: Any, shape: tuple[int, ...], dtype: Any = "float32") -> np.ndarray:
        fan_in, fan_out = _fans(shape)
        return _scaled_normal(math.sqrt(2.0 / (fan_in + fan_out)), key, shape, dtype)

    return init


def _fan_in_normal(gain: float) -> Initializer:
    """Normals of stddev ``sqrt(gain / fan_in)`` (He: gain 2, LeCun: gain 1)."""

    def init(key: Any, shape: tuple[int, ...], dtype: Any = "float32") -> np.ndarray:
        fan_in, _ = _fans(shape)
        return _scaled_normal(math.sqrt(gain / fan_in), key, shape, dtype)

    return init


def he_normal() -> Initializer:
    """He/Kaiming: stddev ``sqrt(2 / fan_in)``, for ReLU networks.

    Fans come from the last two axes (``(fan_in, fan_out)``), times the product of any axes
    before them.

    Returns:
        An `Initializer` drawing normals of stddev ``sqrt(2 / fan_in)``.

    Examples:
        >>> from funcnet import random
        >>> he_normal()(random.key(0), (784, 100)).shape
        (784, 100)
    """

    return _fan_in_normal(2.0)


def lecun_normal() -> Initializer:
    """stddev ``sqrt(1 / fan_in)`` (the book's "Xavier" of volume 1).

    Fans come from the last two axes (``(fan_in, fan_out)``), times the product of any axes
    before them.

    Returns:
        An `Initializer` drawing normals of stddev ``sqrt(1 / fan_in)``.

    Examples:
        >>> from funcnet import random
        >>> lecun_normal()(random.key(0), (784, 100)).shape
        (784, 100)
    """

    return _fan_in_normal(1.0)


def zeros() -> Initializer:
    """All zeros (biases).

    Returns:
        An `Initializer` that ignores its key.

    Examples:
        >>> zeros()(None, (3,), "float64")
        array([0., 0., 0.])
    """
    return lambda key, shape, dtype="float32": np.zeros(shape, dtype=np.dtype(dtype))


book = normal(0.01)
"""The book's ``0.01 * np.random.randn(...)`` (drawn from funcnet's keys, not NumPy's global state).

Not a factory but the initialiser itself: the `Initializer` ``normal(0.01)``, built once
(``get("book")`` and ``w_init="book"`` give this same function). The same key gives the
same weights as ``normal(0.01)``.

Args:
    key: a `funcnet.random` key (``random.key(seed)``).
    shape: the array's shape.
    dtype: its dtype, floating point (default float32).

Returns:
    A host NumPy array of normals with stddev 0.01.

Raises:
    TypeError: a ``dtype`` that is not floating point, or ``key`` not a `funcnet.random`
        key.
    ValueError: a ``shape`` with a negative size.

Examples:
    >>> from funcnet import random
    >>> book(random.key(0), (2, 2)).dtype
    dtype('float32')
    >>> book(random.key(0), (2, 3))
    array([[ 0.00059911,  0.0001556 , -0.01164438],
           [-0.00132647,  0.00543877, -0.00200487]], dtype=float32)
    >>> get("book") is book
    True
    >>> book(random.key(0), (2,), "int32")
    Traceback (most recent call last):
    ...
    TypeError: initializers: weights must be floating point, got dtype int32
"""

BY_NAME: dict[str, Callable[[], Initializer]] = {
    "glorot": glorot_normal,
    "xavier": glorot_normal,
    "he": he_normal,
    "lecun": lecun_normal,
    "book": lambda: book,
    "zeros": zeros,
}
"""The initialisers by name (a name to a function of no arguments returning one).

Examples:
    >>> sorted(BY_NAME)
    ['book', 'glorot', 'he', 'lecun', 'xavier', 'zeros']
"""


def get(init: str | Initializer) -> Initializer:
    """An initialiser from a name (``glorot``, ``he``, ``lecun``, ``book``, ``zeros``) or itself.

    Args:
        init: a name from `BY_NAME`, or an initialiser (any callable, returned as is).

    Returns:
        An `Initializer`.

    Raises:
        ValueError: an unknown name, listing the known ones.

    Examples:
        >>> get("he") is not None
        True
        >>> get("uniform")
        Traceback (most recent call last):
        ...
        ValueError: unknown initialiser 'uniform'; expected one of ['book', 'glorot', 'he', 'lecun', 'xavier', 'zeros']
    """
    if callable(init):
        return init
    if init not in BY_NAME:
        raise ValueError(f"unknown initialiser {init!r}; expected one of {sorted(BY_NAME)}")
    return BY_NAME[init]()
