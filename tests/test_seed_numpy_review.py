"""Section 1-1 of the seed (shapes, element-wise ops, broadcasting, matrix products) and the
chain-rule example of section 1-3, run through funcnet."""

import numpy as np
import pytest

from funcnet import ops


def test_shape():
    A = np.array([[1, 2], [3, 4], [5, 6]])
    assert A.shape == (3, 2)


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
    np.testing.assert_array_equal(ops.matmul.apply(A, B), [[19, 22], [43, 50]])
    np.testing.assert_array_equal(A @ B, [[19, 22], [43, 50]])
    assert 1 * 5 + 2 * 7 == 19 and 3 * 5 + 4 * 7 == 43


@pytest.mark.parametrize(("x", "y"), [(1.0, 2.0), (-3.5, 0.25), (0.0, 0.0)])
def test_chain_rule_z_equals_x_plus_y_squared(x, y):
    x, y = np.float64(x), np.float64(y)
    t, add_pullback = ops.add.vjp(np.asarray(x), np.asarray(y))
    z, square_pullback = ops.square.vjp(t)
    assert z == (x + y) ** 2
    dt = square_pullback(np.asarray(1.0))  # dz/dt = 2t
    dx, dy = add_pullback(dt)  # dt/dx = dt/dy = 1
    assert dx == 2 * (x + y) and dy == 2 * (x + y)
