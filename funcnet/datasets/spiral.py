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
    """``(x, t)``: x of shape (300, 2); t one-hot int32 (300, 3), or int32 labels (300,) with ``one_hot=False``."""
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
