"""Seed 1-1, math and Python review: shapes, element-wise ops, broadcasting, dot and matrix products.

Every cell of the seed is run twice, with NumPy and with funcnet's differentiable graph nodes
(:mod:`funcnet.ops`), and the two must agree. The figure is the seed's matrix-product picture.

    python examples/01_numpy_review.py [--out DIR] [--show]
"""

from __future__ import annotations

import _common
import numpy as np

from funcnet import ops


def cell(code: str, value: object) -> None:
    """Print a notebook cell of the seed and its output."""
    print(f">>> {code}")
    print(repr(value) if isinstance(value, np.ndarray | tuple) else value)
    print()


def same(numpy_value: np.ndarray, funcnet_value: np.ndarray) -> None:
    np.testing.assert_array_equal(numpy_value, funcnet_value)
    print("    funcnet.ops gives the same array\n")


def vectors_and_matrices() -> None:
    print("== 1. vectors and matrices ==")
    A = np.array([[1, 2], [3, 4], [5, 6]])
    cell("A = np.array([[1,2],[3,4],[5,6]]); A.shape", A.shape)
    cell("A.ndim", A.ndim)


def elementwise() -> tuple[np.ndarray, np.ndarray]:
    print("== 2. element-wise operations ==")
    A = np.array([[1, 2], [3, 4]])
    B = np.array([[5, 6], [7, 8]])
    cell("A + B", A + B)
    same(A + B, ops.add.apply(A, B))
    cell("A * B", A * B)
    same(A * B, ops.multiply.apply(A, B))
    return A, B


def broadcasting(A: np.ndarray) -> None:
    print("== 3. broadcasting ==")
    cell("A * 10", A * 10)
    same(A * 10, ops.multiply.apply(A, 10))

    A3 = np.arange(10).reshape(2, 1, 5)
    B3 = np.arange(20).reshape(2, 2, 5)
    cell("np.arange(10).reshape(2,1,5) * np.arange(20).reshape(2,2,5)", A3 * B3)
    same(A3 * B3, ops.multiply.apply(A3, B3))

    A3 = np.arange(10).reshape(2, 5, 1)
    print(">>> np.arange(10).reshape(2,5,1) * np.arange(20).reshape(2,2,5)")
    try:
        A3 * B3
    except ValueError as err:
        print(f"ValueError: {str(err).strip()}")
    try:
        ops.multiply.apply(A3, B3)
    except ValueError as err:
        print(f"    funcnet.ops raises it too -> ValueError: {err}")
    print()


def products(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    print("== 4. dot product and matrix product ==")
    a, b = np.array([1, 2, 3]), np.array([4, 5, 6])
    cell("np.dot(a, b)  # a = [1, 2, 3], b = [4, 5, 6]: 1*4 + 2*5 + 3*6", np.dot(a, b))
    dot = ops.sum.apply(ops.multiply.apply(a, b))  # the dot product as a Sum of a Multiply
    assert dot == np.dot(a, b) == 32
    print("    funcnet: ops.sum(ops.multiply(a, b)) =", int(dot), "\n")
    cell("np.matmul(A, B)", np.matmul(A, B))
    cell("A @ B", A @ B)
    same(A @ B, ops.matmul.apply(A, B))
    print(f"top-left 1*5 + 2*7 = {1 * 5 + 2 * 7}, bottom-left 3*5 + 4*7 = {3 * 5 + 4 * 7}\n")
    return A @ B


def shapes() -> None:
    print("== 5. checking shapes ==")
    x, W = np.ones((10, 2)), np.ones((2, 4))
    print(f"x {x.shape} @ W {W.shape} -> {ops.matmul.apply(x, W).shape}: the inner dimensions (2) match")
    try:
        ops.matmul.apply(np.ones((10, 3)), W)
    except ValueError as err:
        print(f"x (10, 3) @ W (2, 4) -> ValueError: {err}")
    print()


def draw_product(A: np.ndarray, B: np.ndarray, C: np.ndarray, path, show: bool) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(7.5, 3.0), layout="constrained")
    for ax, M, name in zip(axes, (A, B, C), ("A", "B", "A @ B"), strict=True):
        ax.imshow(M, cmap="Blues", vmin=0, vmax=C.max() * 1.3)
        for (i, j), v in np.ndenumerate(M):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=14)
        ax.set_title(name)
        ax.set_xticks(range(M.shape[1]))
        ax.set_yticks(range(M.shape[0]))
        ax.set_xlabel("column")
        ax.set_ylabel("row")
    fig.suptitle("matrix product: C[0, 0] = 1*5 + 2*7 = 19")
    _common.save_figure(fig, path, show)


def main(argv: list[str] | None = None) -> None:
    args = _common.parse(_common.parser(__doc__.splitlines()[0]), argv)
    vectors_and_matrices()
    A, B = elementwise()
    broadcasting(A)
    C = products(A, B)
    shapes()
    draw_product(A, B, C, args.out / "01_matrix_product.png", args.show)


if __name__ == "__main__":
    _common.run(main)
