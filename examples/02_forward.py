"""Seed 1-2, inference: the forward pass of the seed's network, by hand and with funcnet's layers.

The seed's cell ``h = np.matmul(x, W1) + b1`` (b1 broadcast over the batch), then the same
with an ``Affine`` layer, then the network of figure 1-7 (Affine, Sigmoid, Affine) as
``serial`` layers. Every random number comes from a ``funcnet.random`` key: NumPy's global
random state is never used. The figure shows the two activation functions of the seed.

    python examples/02_forward.py [--out DIR] [--show]
"""

from __future__ import annotations

import _common
import numpy as np

from funcnet import Affine, ReLU, Sigmoid, initializers, ops, random, serial


def by_hand(key) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    print("== the seed's cell: input -> hidden ==")
    k_w, k_b, k_x = random.split(key, 3)
    W1 = random.normal(k_w, (2, 4))  # weights      (np.random.randn(2, 4) in the seed)
    b1 = random.normal(k_b, (4,))  # bias            (np.random.randn(4))
    x = random.normal(k_x, (10, 2))  # 10 inputs     (np.random.randn(10, 2))
    h = np.matmul(x, W1) + b1  # b1 is broadcast over the 10 rows
    print(f"W1 {W1.shape}, b1 {b1.shape}, x {x.shape}")
    print(f"h = np.matmul(x, W1) + b1 -> h.shape = {h.shape}")
    h_nodes = ops.add.apply(ops.matmul.apply(x, W1), b1)  # the MatMul node, then a broadcasting add
    np.testing.assert_array_equal(h, h_nodes)
    print("funcnet.ops: add(matmul(x, W1), b1) gives the same h")
    return x, W1, b1, h


def with_layers(x, W1, b1, h) -> None:
    print("\n== the same with funcnet layers ==")
    affine = Affine(4)
    out_shape, _ = affine.init(random.key(0), (2,))  # shapes per example: (2,) -> (4,)
    print(f"Affine(4).init(key, (2,)) -> out_shape {out_shape}, params {{'W': (2, 4), 'b': (4,)}}")
    params = {"W": W1, "b": b1}  # a layer's params are a plain dict: the seed's W1, b1 fit in
    np.testing.assert_array_equal(affine.apply(params, x), h)
    print("Affine(4).apply({'W': W1, 'b': b1}, x) equals h")
    a = Sigmoid().apply((), h)
    print(f"Sigmoid().apply((), h): shape {a.shape}, values in ({a.min():.3f}, {a.max():.3f})")


def figure_1_7(key, x) -> None:
    print("\n== figure 1-7: 2 inputs -> 4 hidden (sigmoid) -> 3 outputs ==")
    randn = initializers.normal(1.0)  # the seed's np.random.randn weights and biases
    net = serial(Affine(4, w_init=randn, b_init=randn), Sigmoid(), Affine(3, w_init=randn, b_init=randn))
    out_shape, params = net.init(key, (2,))
    for i, p in enumerate(params):
        described = ", ".join(f"{name} {v.shape} {v.dtype}" for name, v in dict(p).items()) or "no params ()"
        print(f"layer {i}: {described}")
    s = net.apply(params, x)
    print(f"scores = net.apply(params, x): shape {s.shape} (out_shape per example {out_shape})")
    print("scores[:3] =")
    print(np.array2string(s[:3], precision=4))
    again = net.apply(params, x)
    np.testing.assert_array_equal(s, again)
    print("applying it again gives the same scores: nothing is kept between calls")


def draw_activations(path, show: bool) -> None:
    import matplotlib.pyplot as plt

    z = np.linspace(-6.0, 6.0, 241)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4), layout="constrained")
    for ax, layer, name, formula in ((axes[0], Sigmoid(), "Sigmoid", r"$h(x) = 1 / (1 + e^{-x})$"),
                                     (axes[1], ReLU(), "ReLU", r"$h(x) = \max(x, 0)$")):
        ax.plot(z, layer.apply((), z), linewidth=2)
        ax.axhline(0.0, color="gray", linewidth=0.5)
        ax.axvline(0.0, color="gray", linewidth=0.5)
        ax.set_title(f"{name}: {formula}")
        ax.set_xlabel("x")
        ax.set_ylabel("h(x)")
        ax.grid(alpha=0.3)
    _common.save_figure(fig, path, show)


def main(argv: list[str] | None = None) -> None:
    args = _common.parse(_common.parser(__doc__.splitlines()[0]), argv)
    key = random.key(1)
    k_data, k_net = random.split(key)
    x, W1, b1, h = by_hand(k_data)
    with_layers(x, W1, b1, h)
    figure_1_7(k_net, x)
    print()
    draw_activations(args.out / "02_activations.png", args.show)


if __name__ == "__main__":
    _common.run(main)
