"""funcnet.initializers and losses.validate_targets given hostile arguments: clear errors, no
silent zeros."""

from __future__ import annotations

import numpy as np
import pytest

from funcnet import initializers, losses, random


@pytest.mark.parametrize("stddev", [-1.0, float("nan"), float("inf"), True, "0.01"])
def test_normal_refuses_a_stddev_that_is_not_a_finite_number_at_least_0(stddev):
    with pytest.raises(ValueError, match=r"initializers.normal: stddev must be a finite number >= 0"):
        initializers.normal(stddev)


def test_normal_accepts_numpy_scalars_and_zero():
    assert initializers.normal(np.float32(0.5))(random.key(0), (2,)).shape == (2,)
    np.testing.assert_array_equal(initializers.normal(0)(random.key(0), (2,)), [0.0, 0.0])


@pytest.mark.parametrize("name", ["glorot", "he", "lecun", "book"])
@pytest.mark.parametrize("dtype", ["int32", "int64", "bool"])
def test_random_initialisers_refuse_a_non_floating_dtype(name, dtype):
    # normals cast to integers were silently all zeros
    with pytest.raises(TypeError, match=rf"weights must be floating point, got dtype {dtype}"):
        initializers.get(name)(random.key(0), (3, 4), dtype)


@pytest.mark.parametrize("name", ["glorot", "he", "lecun"])
@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0,), (2, 0, 4)])
def test_zero_size_weights_are_empty_not_a_zero_division(name, shape):
    w = initializers.get(name)(random.key(0), shape, "float32")
    assert w.shape == shape and w.dtype == np.float32


def test_validate_targets_of_0d_targets_says_there_is_no_batch_axis():
    with pytest.raises(ValueError, match=r"validate_targets: targets need a batch axis, got shape \(\)"):
        losses.validate_targets(losses.softmax_cross_entropy, np.array(5), (3,))
