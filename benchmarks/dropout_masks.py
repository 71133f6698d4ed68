"""The cost of Dropout's counter-based masks against the host Philox draw they replaced.

    python -m benchmarks.dropout_masks            # NumPy, 1000x1000 and 256x1024 masks
    python -m benchmarks.dropout_masks --backend jax

The Threefry-2x32 hash of ``funcnet.random.bernoulli`` runs in uint32 Array API operations
on the arrays' own backend; the old recipe drew float32 uniforms from NumPy's Philox on the
host (and copied the mask to the device). Times are the best of a few repeats.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from funcnet import backend, random

SHAPES = ((1000, 1000), (256, 1024))


def host_philox_mask(key: np.ndarray, p: float, shape: tuple[int, ...]) -> np.ndarray:
    """The mask recipe before the counter hash: Philox float32 uniforms on the host, ``< p``."""
    return np.random.Generator(np.random.Philox(key=random._as_int(key))).random(shape, dtype=np.float32) < p


def best_seconds(fn, sync, number: int = 5, repeat: int = 5) -> float:
    return min(timeit.repeat(lambda: sync(fn()), number=number, repeat=repeat)) / number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="numpy", choices=("numpy", "jax", "cupy", "array_api_strict"))
    args = parser.parse_args(argv)
    xp = backend.get(args.backend)
    sync = (lambda out: out.block_until_ready()) if args.backend == "jax" else (lambda out: out)
    key = random.key(1)
    for shape in SHAPES:
        new = best_seconds(lambda shape=shape: random.bernoulli(key, 0.5, shape, xp=xp), sync)
        old = best_seconds(lambda shape=shape: host_philox_mask(key, 0.5, shape), lambda out: out)
        print(f"{shape[0]}x{shape[1]}: counter hash on {args.backend} {new * 1e3:.2f} ms, "
              f"host Philox {old * 1e3:.2f} ms, ratio {new / old:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
