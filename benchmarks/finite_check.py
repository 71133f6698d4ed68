"""The cost of fit's finite-state check against a large-MLP step: ``python -m benchmarks.finite_check``.

fit checks the params and the optimizer state (``train.nonfinite_leaf``) at every record (every
``eval_interval`` steps) and at the end of a run. This times that check and the step it guards,
interleaved in one process, on the large workload (784-1024-1024-10, Sigmoid, batch 256, float32)
with SGD and Adam (whose state is twice the params), and prints the ratios.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import funcnet as fn
from funcnet.train import nonfinite_leaf


def measure(optimizer: fn.optim.Optimizer, rounds: int) -> tuple[float, float]:
    """Median seconds of one step and of one check, interleaved."""
    model = fn.serial(fn.Affine(1024), fn.Sigmoid(), fn.Affine(1024), fn.Sigmoid(), fn.Affine(10))
    step = fn.TrainStep(model, fn.softmax_cross_entropy, optimizer)
    state = fn.init_state(model, optimizer, fn.random.key(0), (784,))
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((256, 784)).astype(np.float32), rng.integers(0, 10, 256)
    for _ in range(3):
        state, _ = step(state, (x, t))
    steps, checks = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        state, _ = step(state, (x, t))
        stepped = time.perf_counter()
        assert nonfinite_leaf(state) is None
        checks.append(time.perf_counter() - stepped)
        steps.append(stepped - started)
    return float(np.median(steps)), float(np.median(checks))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.finite_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=15, help="interleaved step+check rounds (default 15)")
    args = p.parse_args(argv)
    print("| optimizer | step | check | check / step | check / 20 steps (one record) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, opt in (("sgd", fn.optim.sgd(0.1)), ("adam", fn.optim.adam(0.001))):
        step, check = measure(opt, args.rounds)
        print(f"| {name} | {step * 1e3:.2f} ms | {check * 1e3:.3f} ms | {check / step:.4f} | {check / step / 20:.4f} |")


if __name__ == "__main__":
    main()
