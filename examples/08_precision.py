"""Seed 1-5-1, bit precision: float64 against float32, and float16 as a storage format.

* the seed's training run in float64 and in float32: time, final loss, accuracy;
* memory (``nbytes``) of params and activations, for the seed's net and for a wider one;
* the time of training steps of the wider net, where arithmetic (not Python) dominates;
* float16 checkpoints: file size against float32, the largest change of a weight after loading,
  and the accuracy of the reloaded net.

    python examples/08_precision.py [--epochs N] [--steps N] [--out DIR] [--show]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import _common
import numpy as np

from funcnet import Affine, Sigmoid, SoftmaxWithLoss, checkpoint, optim, random, serial, train, tree
from funcnet.datasets import spiral
from funcnet.models import TwoLayerNet

DTYPES = ("float64", "float32")
WIDE = {"batch": 2048, "in": 256, "hidden": 512, "classes": 10}


def nbytes(t) -> int:
    return sum(leaf.nbytes for leaf in tree.leaves(t))


def activations(layers, params, x) -> int:
    """Bytes of the input and every layer's output for one forward pass (what backward keeps)."""
    total = x.nbytes
    for layer, p in zip(layers, params, strict=True):
        x = layer.apply(p, x)
        total += x.nbytes
    return total


def spiral_run(dtype: str, epochs: int, progress: bool) -> dict:
    x, t = spiral.load_data(dtype=dtype)
    model = TwoLayerNet(2, 10, 3)
    optimizer = optim.sgd(1.0)
    step = train.make_train_step(model, SoftmaxWithLoss, optimizer)
    # both runs start from the same weights (drawn in float32, then cast) so that only the
    # arithmetic differs; funcnet draws float64 params with a float64 recipe of their own
    state32 = train.init_state(model, optimizer, random.key(0), (2,), dtype="float32")
    params = tree.map(lambda w: w.astype(dtype), state32.params)
    state = train.TrainState(params, optimizer.init(params), state32.key, 0)
    layers = (Affine(10), Sigmoid(), Affine(3))  # TwoLayerNet's layers, for the activations' sizes
    memory = {"params": nbytes(state.params), "activations": activations(layers, state.params, x)}
    started = time.perf_counter()
    state, history = _common.fit(step, state, x, t, epochs=epochs, batch_size=30, eval_interval=10,
                                 progress=progress, label=dtype)
    seconds = time.perf_counter() - started
    result = train.evaluate(model, state.params, x, t)
    return {"state": state, "model": model, "x": x, "t": t, "losses": history["loss"], "seconds": seconds,
            **memory, **result}


def wide_steps(dtype: str, steps: int) -> dict:
    k_x, k_t, k_init = random.split(random.key(8), 3)
    x = random.normal(k_x, (WIDE["batch"], WIDE["in"]), dtype)
    t = np.asarray(random.permutation(k_t, WIDE["batch"]) % WIDE["classes"])
    layers = (Affine(WIDE["hidden"]), Sigmoid(), Affine(WIDE["classes"]))
    model = serial(*layers)
    optimizer = optim.sgd(0.1)
    step = train.make_train_step(model, SoftmaxWithLoss, optimizer)
    state = train.init_state(model, optimizer, k_init, (WIDE["in"],), dtype=dtype)
    memory = {"params": nbytes(state.params), "activations": activations(layers, state.params, x)}
    state, _ = step(state, (x, t))  # warm-up
    started = time.perf_counter()
    for _ in range(steps):
        state, metrics = step(state, (x, t))
    seconds = (time.perf_counter() - started) / steps
    return {"state": state, "step_ms": 1000 * seconds, "loss": float(metrics["loss"]), **memory}


def storage(params, folder: Path, name: str) -> dict:
    """Save float32 params as float32 and as float16; sizes and the round trip's largest change."""
    full, half = folder / f"{name}_float32.safetensors", folder / f"{name}_float16.safetensors"
    checkpoint.save(full, params)
    checkpoint.save(half, params, dtype="float16", metadata={"note": "float16 storage of float32 weights"})
    loaded = checkpoint.load(half, like=params)  # back to float32, the template's dtype
    error = max(float(np.max(np.abs(a - b))) for a, b in zip(tree.leaves(params), tree.leaves(loaded), strict=True))
    assert all(leaf.dtype == np.float32 for leaf in tree.leaves(loaded))
    return {"float32": full.stat().st_size, "float16": half.stat().st_size, "max_abs_diff": error,
            "loaded": loaded}


def table(rows: list[tuple[str, str, str]]) -> None:
    print(f"{'':34s} {'float64':>12s} {'float32':>12s}")
    for name, a, b in rows:
        print(f"{name:34s} {a:>12s} {b:>12s}")


def draw(runs: dict, wide: dict, stored: dict, path: Path, show: bool) -> None:
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for dtype, style in zip(DTYPES, ("-", "--"), strict=True):
        losses = runs[dtype]["losses"]
        left.plot(np.arange(1, len(losses) + 1) * 10, losses, style, label=dtype)
    left.set_xlabel("iterations")
    left.set_ylabel("loss")
    left.set_title("spiral training: the two curves coincide")
    left.legend()

    names = ["step time\n(wide net)", "params", "activations", "checkpoint\nfile"]
    f64 = [wide["float64"]["step_ms"], wide["float64"]["params"], wide["float64"]["activations"], None]
    f32 = [wide["float32"]["step_ms"], wide["float32"]["params"], wide["float32"]["activations"],
           stored["float32"]]
    ratios32 = [b / a for a, b in zip(f64[:3], f32[:3], strict=True)] + [None]
    ratio16 = stored["float16"] / stored["float32"]
    positions = np.arange(len(names))
    right.bar(positions[:3] - 0.2, [1.0] * 3, width=0.4, label="float64")
    right.bar(positions[:3] + 0.2, ratios32[:3], width=0.4, label="float32")
    right.bar([positions[3] - 0.2], [1.0], width=0.4, color="C1")
    right.bar([positions[3] + 0.2], [ratio16], width=0.4, color="C2", label="float16 (storage)")
    right.axhline(0.5, color="gray", linewidth=0.5, linestyle=":")
    right.set_xticks(positions, names)
    right.set_ylabel("relative to the wider type")
    right.set_title(f"wide net {WIDE['batch']}x{WIDE['in']} -> {WIDE['hidden']} -> {WIDE['classes']}")
    right.legend(loc="upper right", fontsize="small")
    right.set_ylim(0, 1.35)
    _common.save_figure(fig, path, show)


def main(argv: list[str] | None = None) -> None:
    p = _common.parser(__doc__.splitlines()[0], epochs=300)
    p.add_argument("--steps", type=_common.positive_int, default=None,
                   help="timed training steps of the wide net (default 20; 2 when FUNCNET_SMOKE=1)")
    _common.add_progress_option(p)
    args = _common.parse(p, argv)
    steps = args.steps or (2 if _common.smoke() else 20)

    runs = {dtype: spiral_run(dtype, args.epochs, not args.no_progress) for dtype in DTYPES}
    print(f"== the seed's net on the spiral data, {args.epochs} epochs ==")
    table([
        ("params (bytes)", *(f"{runs[d]['params']:,}" for d in DTYPES)),
        ("activations, 300 examples (bytes)", *(f"{runs[d]['activations']:,}" for d in DTYPES)),
        ("training time (s)", *(f"{runs[d]['seconds']:.3f}" for d in DTYPES)),
        ("final loss (all data)", *(f"{runs[d]['loss']:.8f}" for d in DTYPES)),
        ("accuracy", *(f"{runs[d]['accuracy']:.3f}" for d in DTYPES)),
    ])
    print(f"same initial weights; the final losses differ by {abs(runs['float64']['loss'] - runs['float32']['loss']):.1e}")
    print("(so small a net is bound by Python overhead, not arithmetic: the times are alike)")

    wide = {dtype: wide_steps(dtype, steps) for dtype in DTYPES}
    print(f"\n== a wider net, batch {WIDE['batch']}, {WIDE['in']} -> {WIDE['hidden']} -> {WIDE['classes']}, "
          f"{steps} steps ==")
    table([
        ("params (bytes)", *(f"{wide[d]['params']:,}" for d in DTYPES)),
        ("activations (bytes)", *(f"{wide[d]['activations']:,}" for d in DTYPES)),
        ("one training step (ms)", *(f"{wide[d]['step_ms']:.1f}" for d in DTYPES)),
    ])
    speedup = wide["float64"]["step_ms"] / wide["float32"]["step_ms"]
    print(f"float32 uses half the memory and steps {speedup:.1f}x as fast here")

    print("\n== float16 as a storage format (checkpoint.save(..., dtype='float16')) ==")
    with tempfile.TemporaryDirectory() as folder:
        small = storage(runs["float32"]["state"].params, Path(folder), "spiral")
        big = storage(wide["float32"]["state"].params, Path(folder), "wide")
    sizes = {name: tree.size(source["float32"]["state"].params) for name, source in (("seed", runs), ("wide", wide))}
    for name, s in ((f"seed's net ({sizes['seed']} weights)", small), (f"wide net ({sizes['wide']:,} weights)", big)):
        print(f"{name}: float32 file {s['float32']:,} bytes, float16 file {s['float16']:,} bytes "
              f"({s['float16'] / s['float32']:.2f}x, the header included); largest change after loading "
              f"{s['max_abs_diff']:.2e}")
    run = runs["float32"]
    reloaded = train.evaluate(run["model"], small["loaded"], run["x"], run["t"])
    print(f"the spiral net reloaded from float16: loss {reloaded['loss']:.6f} (was {run['loss']:.6f}), "
          f"accuracy {reloaded['accuracy']:.3f} (was {run['accuracy']:.3f})")
    print()
    draw(runs, wide, big, args.out / "08_precision.png", args.show)


if __name__ == "__main__":
    _common.run(main)
