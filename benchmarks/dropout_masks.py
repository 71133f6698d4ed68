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


def large_step_seconds(rounds: int = 7) -> tuple[float, float]:
    """Median seconds of a large-MLP step with two Dropout(0.5) layers: with the counter hash, and
    with the host Philox mask put in its place (interleaved, on NumPy)."""
    import funcnet as fn

    model = fn.serial(fn.Affine(1024), fn.Sigmoid(), fn.Dropout(0.5), fn.Affine(1024), fn.Sigmoid(),
                      fn.Dropout(0.5), fn.Affine(10))
    step = fn.TrainStep(model, fn.softmax_cross_entropy, fn.optim.sgd(0.1))
    state = fn.init_state(model, step.optimizer, random.key(0), (784,))
    rng = np.random.default_rng(0)
    batch = (rng.standard_normal((256, 784)).astype(np.float32), rng.integers(0, 10, 256))
    hashed = random.bernoulli

    def philox(key, p, shape, xp=None):
        return host_philox_mask(backend.to_numpy(key), p, shape)

    times: dict[str, list[float]] = {"hash": [], "philox": []}
    for _ in range(rounds):
        for name, draw in (("hash", hashed), ("philox", philox)):
            random.bernoulli = draw  # Dropout looks it up at every call
            try:
                times[name].append(best_seconds(lambda: step(state, batch), lambda out: out, number=3, repeat=1))
            finally:
                random.bernoulli = hashed
    return float(np.median(times["hash"])), float(np.median(times["philox"]))


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
    if args.backend == "numpy":
        new, old = large_step_seconds()
        print(f"large MLP step with two Dropout(0.5) (784-1024-1024-10, batch 256): counter hash "
              f"{new * 1e3:.2f} ms, host Philox {old * 1e3:.2f} ms, ratio {new / old:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
