"""Seed 1-5-2, GPU (CuPy): the same training with its arrays on the GPU, or on the CPU when there is none.

funcnet never imports an array module globally: the data and the params are moved to a backend
(``backend.put``, ``train.init_state(..., backend="cupy")``) and every function learns ``xp``
from its arguments, so the training code is the CPU code unchanged. Initial params are drawn on
the host, so the GPU run starts from exactly the CPU run's weights. Where no GPU is usable the
script prints why (``backend.why_unavailable``) and trains on NumPy instead.

    python examples/09_gpu.py [--backend cupy|jax] [--epochs N] [--out DIR] [--show]
"""

from __future__ import annotations

import time

import _common
import numpy as np

from funcnet import SoftmaxWithLoss, backend, optim, plot, random, train, tree
from funcnet.datasets import spiral
from funcnet.models import TwoLayerNet


def run(name: str, epochs: int, progress: bool) -> dict:
    x, t = spiral.load_data()
    x = x.astype(np.float32)
    x, t = backend.put((x, t), name)  # the data set on the device (a no-op for numpy)
    model = TwoLayerNet(2, 10, 3)
    optimizer = optim.sgd(1.0)
    step = train.make_train_step(model, SoftmaxWithLoss, optimizer)
    state = train.init_state(model, optimizer, random.key(0), (2,), backend=name)
    started = time.perf_counter()
    state, history = _common.fit(step, state, x, t, epochs=epochs, batch_size=30, eval_interval=10,
                                 progress=progress, label=name)
    seconds = time.perf_counter() - started
    result = train.evaluate(model, state.params, x, t)
    return {"params": backend.to_numpy(state.params), "leaf": tree.leaves(state.params)[0], "seconds": seconds,
            "losses": history["loss"], **result}


def main(argv: list[str] | None = None) -> None:
    p = _common.parser(__doc__.splitlines()[0], epochs=300)
    p.add_argument("--backend", choices=("cupy", "jax"), default="cupy",
                   help="the accelerator backend to try (default: cupy, the seed's; jax uses its default device)")
    _common.add_progress_option(p)
    args = _common.parse(p, argv)

    reason = backend.why_unavailable(args.backend)
    if reason is None:
        name = args.backend
        print(f"backend {name!r} is usable: training on it")
    else:
        name = "numpy"
        print(f"backend {args.backend!r} is not usable here: {reason}")
        print("falling back to the CPU (numpy); the code below is the same for every backend")

    if name == "jax":
        import jax

        print(f"jax devices: {', '.join(str(d) for d in jax.devices())}")
    elif name == "cupy":
        device = backend.get("cupy").cuda.Device()
        print(f"cupy device {device.id}: compute capability {device.compute_capability}")

    result = run(name, args.epochs, not args.no_progress)
    leaf = result["leaf"]
    print(f"[{name}] params live in {type(leaf).__module__}.{type(leaf).__name__} ({leaf.dtype})")
    print(f"[{name}] {args.epochs} epochs in {result['seconds']:.2f} s: final loss {result['losses'][-1]:.4f}, "
          f"on all data: loss {result['loss']:.4f}, accuracy {result['accuracy']:.3f}")

    if name != "numpy":
        reference = run("numpy", args.epochs, not args.no_progress)
        worst = max(float(np.max(np.abs(a - b)))
                    for a, b in zip(tree.leaves(result["params"]), tree.leaves(reference["params"]), strict=True))
        print(f"[numpy] {args.epochs} epochs in {reference['seconds']:.2f} s: loss {reference['loss']:.4f}, "
              f"accuracy {reference['accuracy']:.3f}")
        print(f"largest difference of the final params, {name} vs numpy: {worst:.2e} "
              "(same start and batches; float32 round-off differs between libraries)")

    path = args.out / "09_gpu_loss.png"
    plot.loss_curve(result["losses"], eval_interval=10, path=path, show=args.show,
                    title=f"training loss on backend {name!r}")
    _common.saved(path)


if __name__ == "__main__":
    _common.run(main)
