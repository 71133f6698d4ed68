"""Shared fixtures: the ``xp`` backend fixture, read-only trees, and global-state guards."""

from __future__ import annotations

import os

import numpy as np
import pytest

from funcnet import backend, tree

try:  # float64 on jax (gradient references) needs x64; float32 stays float32 under it
    import jax

    jax.config.update("jax_enable_x64", True)
except ImportError:  # pragma: no cover - jax is in the test extra
    jax = None

BACKENDS = ("numpy", "array_api_strict", "jax", "cupy")
# On CI every backend but cupy must be there: a missing one is a broken install, not a skip.
REQUIRED_IN_CI = ("numpy", "array_api_strict", "jax")


def backend_or_skip(name: str):
    reason = backend.why_unavailable(name)
    if reason is None:
        return backend.get(name)
    if os.environ.get("CI") and name in REQUIRED_IN_CI:
        pytest.fail(f"backend {name} must be usable in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(params=BACKENDS)
def xp(request):
    """Each array backend in turn; cupy is skipped with its reason where no GPU is usable."""
    return backend_or_skip(request.param)


@pytest.fixture
def np_rng():
    return np.random.default_rng(0)


def readonly(t):
    """A copy of a tree of NumPy arrays with every leaf marked read-only."""

    def freeze(x):
        x = np.array(x)
        x.flags.writeable = False
        return x

    return tree.map(freeze, t)


_SENTINEL = 20261128


@pytest.fixture(autouse=True, scope="session")
def _global_numpy_random_state_untouched():
    """No funcnet function may read or change NumPy's legacy global generator."""
    np.random.seed(_SENTINEL)
    before = np.random.get_state()[1].copy()
    yield
    after = np.random.get_state()[1]
    assert np.array_equal(before, after), "NumPy's global random state was used by the suite"
