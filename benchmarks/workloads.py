"""The two workloads, their data, and funcnet's model and initial state for each.

* ``small``: the seed's spiral training (2-10-3, Sigmoid, SoftmaxWithLoss, SGD lr 1.0, batch 30,
  300 epochs): 10 steps an epoch on tiny arrays, so the time is per-call overhead.
* ``large``: an MLP 784-1024-1024-10 (Sigmoid), batch 256, float32, random data: the time is GEMMs.

Every implementation starts from funcnet's initial params (copied), so all of them compute the
same thing.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from funcnet import layers, random, train, tree
from funcnet.datasets import spiral
from funcnet.losses import SoftmaxWithLoss
from funcnet.models import TwoLayerNet

try:
    from funcnet.optim import sgd
except ImportError:  # optim.py not there yet: the same pure SGD, locally
    from typing import NamedTuple

    class _SGD(NamedTuple):
        init: Any
        update: Any

    def sgd(lr):
        return _SGD(lambda params: (), lambda p, g, s: (tree.map(lambda a, b: a - lr * b, p, g), s))


@dataclass(frozen=True)
class Workload:
    name: str
    sizes: tuple[int, ...]  # input, hidden..., classes
    batch_size: int
    lr: float
    dtype: str = "float32"
    epochs: int = 300  # for the end-to-end fit (small only)
    n: int = 300  # examples
    w_init: str = "book"
    seed: int = 0
    torch_threads: int | None = None  # PyTorch intra-op threads (None: its default)

    @property
    def iters(self) -> int:
        return self.n // self.batch_size


# Tiny ops gain nothing from threads: PyTorch runs the small workload on one (with two, its
# OpenMP synchronisation alone makes a step several times slower on this 2-core machine).
SMALL = Workload("small", (2, 10, 3), batch_size=30, lr=1.0, torch_threads=1)
LARGE = Workload("large", (784, 1024, 1024, 10), batch_size=256, lr=0.01, n=4 * 256, w_init="glorot")

QUICK_SMALL = replace(SMALL, epochs=3)
QUICK_LARGE = replace(LARGE, sizes=(64, 128, 128, 10), batch_size=32, n=4 * 32)


def data(w: Workload) -> tuple[np.ndarray, np.ndarray]:
    """``(x, t)`` on the host: x in ``w.dtype``, t one-hot int32 (as the seed's spiral data)."""
    if w.sizes[0] == 2 and w.sizes[-1] == 3 and w.n == 300:
        x, t = spiral.load_data()
        return x.astype(w.dtype), t
    rng = np.random.default_rng(w.seed)
    x = rng.standard_normal((w.n, w.sizes[0])).astype(w.dtype)
    labels = rng.integers(0, w.sizes[-1], w.n)
    t = (labels[:, None] == np.arange(w.sizes[-1])).astype(np.int32)
    return x, t


def model(w: Workload) -> layers.Layer:
    """funcnet's net: Affine, Sigmoid, ..., Affine (``models.TwoLayerNet`` for the seed's net)."""
    if len(w.sizes) == 3 and w.w_init == "book":
        return TwoLayerNet(*w.sizes)
    parts = [layers.Affine(w.sizes[1], w_init=w.w_init)]
    for width in w.sizes[2:]:
        parts += [layers.Sigmoid(), layers.Affine(width, w_init=w.w_init)]
    return layers.serial(*parts)


def funcnet_setup(w: Workload) -> tuple[Any, train.TrainState]:
    """``(step, state)``: the pure step of funcnet's model, loss and SGD, and its initial state."""
    net, opt = model(w), sgd(w.lr)
    state = train.init_state(net, opt, random.key(w.seed), (w.sizes[0],), dtype=w.dtype)
    return train.make_train_step(net, SoftmaxWithLoss, opt), state


def weights(params: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(W, b), ...]`` host copies of a serial net's Affine params (the reference's and peers' layout)."""
    return [(np.array(p["W"]), np.array(p["b"])) for p in params if isinstance(p, dict)]


def batches(w: Workload, x: np.ndarray, t: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The consecutive batches of ``(x, t)`` in their given order."""
    b = w.batch_size
    return [(x[i * b:(i + 1) * b], t[i * b:(i + 1) * b]) for i in range(w.iters)]


def gemm_flops(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Floating-point operations of the products ``a @ b`` (2 m k n each)."""
    return float(sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in pairs))


def minimal_gemms(w: Workload, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """The operand pairs of the matrix products a step needs, with the step's shapes.

    Forward ``h_i @ W_i`` for every layer; backward ``h_i.T @ dy_i`` (dW) for every layer and
    ``dy_i @ W_i.T`` (dh) for every layer but the first (no gradient with respect to the input).
    Transposes are views, as in the layers.
    """
    b, sizes, dt = w.batch_size, w.sizes, w.dtype
    acts = [rng.standard_normal((b, d)).astype(dt) for d in sizes]
    ws = [rng.standard_normal((i, o)).astype(dt) for i, o in itertools.pairwise(sizes)]
    pairs = [(acts[i], ws[i]) for i in range(len(ws))]  # forward
    for i in reversed(range(len(ws))):
        pairs.append((acts[i].T, acts[i + 1]))  # dW_i = h_i.T @ dy_i
        if i:
            pairs.append((acts[i + 1], ws[i].T))  # dh_i = dy_i @ W_i.T
    return pairs
