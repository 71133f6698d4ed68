"""funcnet.datasets.spiral: the book's numbers bit for bit, label and dtype options, no global state."""

import numpy as np
import pytest

from funcnet.datasets import spiral


def book_load_data(seed=1984):
    """The book's ``dataset/spiral.py``, a scalar loop, with its global ``np.random`` replaced by a
    private legacy ``RandomState(seed)`` drawn in the same order (one ``randn()`` per point)."""
    rs = np.random.RandomState(seed)
    N, DIM, CLS_NUM = 100, 2, 3
    x = np.zeros((N * CLS_NUM, DIM))
    t = np.zeros((N * CLS_NUM, CLS_NUM), dtype=np.int32)
    for j in range(CLS_NUM):
        for i in range(N):
            rate = i / N
            radius = 1.0 * rate
            theta = j * 4.0 + 4.0 * rate + rs.randn() * 0.2
            ix = N * j + i
            x[ix] = np.array([radius * np.sin(theta), radius * np.cos(theta)]).flatten()
            t[ix, j] = 1
    return x, t


def test_equals_the_books_formula_bit_for_bit():
    x, t = spiral.load_data()
    bx, bt = book_load_data()
    assert x.shape == (300, 2) and t.shape == (300, 3)
    assert x.dtype == np.float64 and t.dtype == np.int32
    assert np.array_equal(x, bx)
    assert np.array_equal(t, bt)


@pytest.mark.parametrize("seed", [0, 7, 2**31 - 1])
def test_other_seeds_follow_the_same_recipe(seed):
    x, t = spiral.load_data(seed)
    bx, bt = book_load_data(seed)
    assert np.array_equal(x, bx) and np.array_equal(t, bt)


def test_same_seed_same_data_and_different_seeds_differ():
    a, _ = spiral.load_data(5)
    b, _ = spiral.load_data(5)
    c, _ = spiral.load_data(6)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_labels_instead_of_one_hot():
    x, t = spiral.load_data()
    x2, labels = spiral.load_data(one_hot=False)
    assert labels.shape == (300,)
    assert np.issubdtype(labels.dtype, np.integer)
    assert np.array_equal(x2, x)
    assert np.array_equal(labels, np.argmax(t, axis=1))
    assert np.array_equal(np.bincount(labels), [100, 100, 100])
    assert np.array_equal(labels, np.repeat(np.arange(3), 100))


def test_one_hot_rows():
    _, t = spiral.load_data()
    assert np.array_equal(np.sum(t, axis=1), np.ones(300))
    assert set(np.unique(t).tolist()) == {0, 1}


@pytest.mark.parametrize("dtype", ["float32", np.float32, "float16", "float64"])
def test_dtype_option(dtype):
    x, t = spiral.load_data(dtype=dtype)
    reference, book_t = book_load_data()
    assert x.dtype == np.dtype(dtype)
    assert np.array_equal(x, reference.astype(dtype))  # computed in float64, then cast once
    assert np.array_equal(t, book_t)


def test_points_lie_on_the_arms():
    x, _ = spiral.load_data()
    radius = np.hypot(x[:, 0], x[:, 1])
    np.testing.assert_allclose(radius, np.tile(np.arange(100) / 100, 3), rtol=0, atol=1e-15)


def test_global_random_state_untouched():
    before = np.random.get_state()  # whatever it is (conftest seeds it for the session)
    spiral.load_data()
    spiral.load_data(one_hot=False, dtype="float32")
    after = np.random.get_state()
    assert before[0] == after[0]
    assert np.array_equal(before[1], after[1])
    assert before[2:] == after[2:]


def test_arrays_are_fresh():
    x1, t1 = spiral.load_data()
    x2, t2 = spiral.load_data()
    assert not np.shares_memory(x1, x2) and not np.shares_memory(t1, t2)
