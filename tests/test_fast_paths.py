"""NumPy's in-place fast paths (large arrays) give exactly what the generic Array API code gives,
and never write to anything a caller can see."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import backend_or_skip, readonly

from funcnet import backend, layers, ops, optim, random

BIG = (200, 100)  # 20,000 elements: above backend.IN_PLACE_MIN_SIZE
assert BIG[0] * BIG[1] >= backend.IN_PLACE_MIN_SIZE


@pytest.fixture
def strict():
    return backend_or_skip("array_api_strict")


@pytest.fixture
def out_calls(monkeypatch):
    """The NumPy ufuncs called with ``out=`` during the test, by name."""
    seen: list[str] = []
    for name in ("add", "subtract", "divide", "multiply"):
        real = getattr(np, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            if "out" in kwargs:
                seen.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(np, name, spy)
    return seen


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_its_gradient_match_the_generic_path(strict, np_rng, dtype, out_calls):
    x = readonly((np_rng.standard_normal(BIG) * 30).astype(dtype))
    dy = readonly(np_rng.standard_normal(BIG).astype(dtype))
    y, pullback = ops.sigmoid.vjp(x)
    dx = pullback(dy)
    y_ref, pullback_ref = ops.sigmoid.vjp(backend.put(x, strict))
    np.testing.assert_array_equal(y, backend.to_numpy(y_ref))
    np.testing.assert_array_equal(dx, backend.to_numpy(pullback_ref(backend.put(dy, strict))))
    assert not np.shares_memory(y, x) and not np.shares_memory(dx, dy) and not np.shares_memory(dx, y)
    assert "divide" in out_calls and "multiply" in out_calls  # the in-place branches did run


def test_affine_bias_add_matches_the_generic_path(strict, np_rng, out_calls):
    layer = layers.Affine(100)
    _, params = layer.init(random.key(0), (200,))
    params = readonly({"W": params["W"], "b": np_rng.standard_normal(100).astype(np.float32)})
    x = readonly(np_rng.standard_normal((300, 200)).astype(np.float32))
    y = layer.apply(params, x)
    np.testing.assert_array_equal(y, backend.to_numpy(layer.apply(backend.put(params, strict), backend.put(x, strict))))
    assert not np.shares_memory(y, x) and not np.shares_memory(y, params["W"])
    assert out_calls == ["add"]  # the bias was added in place, into the fresh product


def test_sgd_update_matches_the_generic_path(strict, np_rng, out_calls):
    params = readonly({"W": np_rng.standard_normal(BIG).astype(np.float32)})
    grads = readonly({"W": np_rng.standard_normal(BIG).astype(np.float32)})
    opt = optim.sgd(0.1)
    new, _ = opt.update(params, grads, opt.init(params))
    ref, _ = opt.update(backend.put(params, strict), backend.put(grads, strict), opt.init(backend.put(params, strict)))
    np.testing.assert_array_equal(new["W"], backend.to_numpy(ref["W"]))
    assert not np.shares_memory(new["W"], params["W"]) and not np.shares_memory(new["W"], grads["W"])
    assert out_calls == ["subtract"]  # p - lr * g written into the fresh lr * g


def test_small_arrays_take_the_plain_path(np_rng, out_calls):
    x = np_rng.standard_normal((30, 10)).astype(np.float32)
    y, pullback = ops.sigmoid.vjp(x)
    pullback(np.ones_like(y))
    assert out_calls == []
