"""Interleaved timing: every round runs each contender once (A B C, then B C A, ...), after warm-up.

Rounds rotate the order so that no contender always follows the same one. Results are the
median time of each, and for ratios the median over rounds of the same-round ratio, which
cancels drift (other processes, clock changes) that hits one round as a whole.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def interleaved(contenders: dict[str, Callable[[], Any]], *, rounds: int, warmup: int = 1,
                repeat: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each contender, one sample per round; a sample averages ``repeat`` calls."""
    names = list(contenders)
    for name in names:
        for _ in range(warmup):
            contenders[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            fn = contenders[name]
            start = time.perf_counter()
            for _ in range(repeat):
                fn()
            samples[name].append((time.perf_counter() - start) / repeat)
    return samples


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def ratio(samples: dict[str, list[float]], name: str, base: str) -> float:
    """The median over rounds of ``samples[name][r] / samples[base][r]``."""
    return statistics.median(a / b for a, b in zip(samples[name], samples[base], strict=True))


def spread(xs: list[float]) -> float:
    """The interquartile range relative to the median (0.05 = 5 %), a noise indicator."""
    if len(xs) < 4:
        return float("nan")
    q = statistics.quantiles(xs, n=4)
    return (q[2] - q[0]) / statistics.median(xs)
