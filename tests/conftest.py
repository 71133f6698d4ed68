"""Shared fixtures: the ``xp`` backend fixture, read-only trees, and global-state guards."""

from __future__ import annotations

import inspect
import os

import numpy as np
import pytest

from funcnet import backend, optim, schedules, tree

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
    pytest.skip(reason)  # one summary line for all of them: see pytest_runtest_makereport below


_SKIP_LINE = inspect.getsourcelines(backend_or_skip)[1]


def _unavailable_backend(reason: str) -> bool:
    """Whether a skip's reason says a backend (cupy, no GPU, ...) cannot be used here."""
    reason = reason.removeprefix("Skipped: ")
    return any(reason == backend.why_unavailable(name) for name in BACKENDS) or "cupy" in reason.lower()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Skips for an unavailable backend are reported at one place, so ``-ra`` folds them into one
    ``SKIPPED [N] tests/conftest.py:...: cupy is not installed`` line instead of one line per
    test. They stay skips: counted as skipped, listed by ``-v``, never turned into passes."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        _, _, reason = report.longrepr
        if _unavailable_backend(str(reason)):
            report.longrepr = (__file__, _SKIP_LINE, reason)


@pytest.fixture(params=BACKENDS)
def xp(request):
    """Each array backend in turn; cupy is skipped with its reason where no GPU is usable."""
    return backend_or_skip(request.param)


@pytest.fixture
def np_rng():
    return np.random.default_rng(0)


# Every optimizer and form, with schedules and clipping: one table for the tests that run
# them all (resume equals never stopping, random trees keep their structure).
OPTIMIZER_SETUPS = {
    "sgd": lambda: optim.sgd(0.5),
    "momentum": lambda: optim.momentum(0.1),
    "nesterov/book": lambda: optim.nesterov(0.1),
    "nesterov/standard": lambda: optim.nesterov(0.1, form="standard"),
    "adagrad": lambda: optim.adagrad(0.5),
    "adagrad/optax": lambda: optim.adagrad(0.5, eps_in_sqrt=True, initial_accumulator_value=0.1),
    "rmsprop": lambda: optim.rmsprop(0.01),
    "rmsprop/eps_in_sqrt": lambda: optim.rmsprop(0.01, eps_in_sqrt=True),
    "adam/book": lambda: optim.adam(0.01),
    "adam/standard": lambda: optim.adam(0.01, form="standard", eps_root=1e-12),
    "sgd/exponential_decay": lambda: optim.sgd(schedules.exponential_decay(1.0, 0.9, 7)),
    "momentum/step_decay": lambda: optim.momentum(schedules.step_decay(0.2, 0.5, 15)),
    "adam/warmup+cosine": lambda: optim.adam(schedules.warmup(schedules.cosine_decay(0.02, 30), 12)),
    "with_clipping(sgd)": lambda: optim.with_clipping(optim.sgd(1.0), 0.5),
    "with_clipping(adam/schedule)": lambda: optim.with_clipping(
        optim.adam(schedules.exponential_decay(0.02, 0.5, 20), form="standard"), 1.0),
}


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
