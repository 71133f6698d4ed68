"""Section 1-1 of the seed (shapes, element-wise ops, broadcasting, matrix products) and the
chain-rule example of section 1-3, run through funcnet."""

import builtins

import numpy as np
import pytest

from funcnet import layers, ops, random


def test_shape():
    # the seed's A of shape (3, 2), through funcnet: shapes out are what the seed reads off
    A = np.array([[1, 2], [3, 4], [5, 6]])
    assert ops.sum.apply(A, axis=0).shape == (2,)
    assert ops.sum.apply(A, axis=1, keepdims=True).shape == (3, 1)
    assert ops.matmul.apply(A, np.ones((2, 4), np.int64)).shape == (3, 4)
    out_shape, params = layers.MatMul(4).init(random.key(0), (2,), "float64")
    assert out_shape == (4,) and params["W"].shape == (2, 4)
    assert layers.MatMul(4).apply(params, A.astype(np.float64)).shape == (3, 4)
    with pytest.raises(ValueError, match=r"expected shapes \(N, D\) and \(D, H\), got \(3, 2\) and \(3, 2\)"):
        ops.matmul.apply(A, A)


def test_elementwise_and_scalar_broadcast():
    A = np.array([[1, 2], [3, 4]])
    B = np.array([[5, 6], [7, 8]])
    np.testing.assert_array_equal(ops.add.apply(A, B), [[6, 8], [10, 12]])
    np.testing.assert_array_equal(ops.multiply.apply(A, B), [[5, 12], [21, 32]])
    np.testing.assert_array_equal(ops.multiply.apply(A, 10), [[10, 20], [30, 40]])


def test_broadcast_of_three_dimensional_arrays():
    A = np.arange(10).reshape(2, 1, 5)
    B = np.arange(20).reshape(2, 2, 5)
    expected = [[[0, 1, 4, 9, 16], [0, 6, 14, 24, 36]],
                [[50, 66, 84, 104, 126], [75, 96, 119, 144, 171]]]
    np.testing.assert_array_equal(ops.multiply.apply(A, B), expected)


def test_broadcast_error_names_both_shapes():
    A = np.arange(10).reshape(2, 5, 1)
    B = np.arange(20).reshape(2, 2, 5)
    with pytest.raises(ValueError, match=r"\(2, 5, 1\) \(2, 2, 5\)"):
        ops.multiply.apply(A, B)
    with pytest.raises(ValueError, match="could not be broadcast"):
        ops.multiply.vjp(A, B)


def test_matrix_product():
    A = np.array([[1, 2], [3, 4]])
    B = np.array([[5, 6], [7, 8]])
    product = ops.matmul.apply(A, B)
    np.testing.assert_array_equal(product, [[19, 22], [43, 50]])
    # every entry is the seed's row-times-column sum (1*5 + 2*7 = 19, 3*5 + 4*7 = 43)
    for i in range(2):
        for j in range(2):
            assert product[i, j] == builtins.sum(int(A[i, k]) * int(B[k, j]) for k in range(2))
    # the same product as funcnet's MatMul layer with W = B, and the MatMul node's backward
    W = B.astype(np.float64)
    np.testing.assert_array_equal(layers.MatMul(2).apply({"W": W}, A.astype(np.float64)), [[19, 22], [43, 50]])
    y, pullback = ops.matmul.vjp(A, B)
    dx, dW = pullback(np.ones((2, 2), np.int64))
    np.testing.assert_array_equal(y, [[19, 22], [43, 50]])
    np.testing.assert_array_equal(dx, [[11, 15], [11, 15]])  # dy @ B.T: row sums of B
    np.testing.assert_array_equal(dW, [[4, 4], [6, 6]])  # A.T @ dy: column sums of A


@pytest.mark.parametrize(("x", "y"), [(1.0, 2.0), (-3.5, 0.25), (0.0, 0.0)])
def test_chain_rule_z_equals_x_plus_y_squared(x, y):
    x, y = np.float64(x), np.float64(y)
    t, add_pullback = ops.add.vjp(np.asarray(x), np.asarray(y))
    z, square_pullback = ops.square.vjp(t)
    assert z == (x + y) ** 2
    dt = square_pullback(np.asarray(1.0))  # dz/dt = 2t
    dx, dy = add_pullback(dt)  # dt/dx = dt/dy = 1
    assert dx == 2 * (x + y) and dy == 2 * (x + y)
