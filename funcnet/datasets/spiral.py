"""The book's spiral data set: three interleaved arms of 100 points each.

For class ``j`` and ``i = 0..99``: ``rate = i / 100``, ``radius = rate``,
``theta = 4 j + 4 rate + 0.2 z`` with ``z`` the next standard normal draw of a legacy
``RandomState(seed)``, and the point is ``(radius sin theta, radius cos theta)``. The draws are
taken in the book's order from a private generator, so the numbers equal the book's bit for bit
while NumPy's global random state is left alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["DIM", "N", "load_data"]

N = 100  # points per class
DIM = 2
CLS_NUM = 3


def load_data(seed: int = 1984, *, one_hot: bool = True, dtype: Any = "float64") -> tuple[np.ndarray, np.ndarray]:
    """``(x, t)``: x of shape (300, 2); t one-hot int32 (300, 3), or int32 labels (300,) with ``one_hot=False``.

    The points come class by class: rows ``100 j`` to ``100 j + 99`` are class ``j``.
    Every call makes new arrays.

    Args:
        seed: the seed of the legacy ``RandomState`` the angles' noise is drawn from; the
            default 1984 gives the book's data set. An int in ``[0, 2**32 - 1]`` (None
            seeds it from the OS, so the data differ at every call).
        one_hot: give ``t`` as one-hot rows (the book's) rather than class indices.
        dtype: the floating dtype of ``x``; ``x`` is computed in float64 and cast.

    Returns:
        ``(x, t)``: ``x`` of shape (300, 2) and ``dtype``; ``t`` int32, of shape (300, 3)
        one-hot, or (300,) with the class indices 0, 1, 2 when ``one_hot=False``.

    Raises:
        ValueError: ``seed`` outside ``[0, 2**32 - 1]``.
        TypeError: ``seed`` not an integer (None would draw different data every call), or
            ``dtype`` not a floating dtype (an integer one would truncate every point to 0).

    Examples:
        >>> x, t = load_data()
        >>> x.shape, x.dtype, t.shape, t.dtype
        ((300, 2), dtype('float64'), (300, 3), dtype('int32'))
        >>> x[1].round(6), t[0]
        (array([-0.000977,  0.009952]), array([1, 0, 0], dtype=int32))
        >>> t.sum(axis=0).tolist()
        [100, 100, 100]
        >>> x, labels = load_data(one_hot=False, dtype="float32")
        >>> x.dtype, labels.shape, labels[::100]
        (dtype('float32'), (300,), array([0, 1, 2], dtype=int32))
        >>> load_data(seed=-1)
        Traceback (most recent call last):
        ...
        ValueError: spiral.load_data: seed must be in [0, 2**32 - 1], got -1
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"spiral.load_data: seed must be an int (the same seed, the same data), got {seed!r}")
    if not 0 <= seed <= 2**32 - 1:
        raise ValueError(f"spiral.load_data: seed must be in [0, 2**32 - 1], got {seed}")
    if np.dtype(dtype).kind != "f":
        raise TypeError(f"spiral.load_data: dtype must be a floating dtype, got {np.dtype(dtype)}")
    draws = np.random.RandomState(seed).standard_normal(N * CLS_NUM)  # randn() x 300, in order
    rate = np.arange(N) / N
    j = np.repeat(np.arange(CLS_NUM, dtype=np.float64), N)
    rate = np.tile(rate, CLS_NUM)
    theta = j * 4.0 + 4.0 * rate + draws * 0.2
    radius = 1.0 * rate
    x = np.stack([radius * np.sin(theta), radius * np.cos(theta)], axis=1).astype(dtype)
    labels = np.repeat(np.arange(CLS_NUM, dtype=np.int32), N)
    if not one_hot:
        return x, labels
    t = (labels[:, None] == np.arange(CLS_NUM)).astype(np.int32)
    return x, t
