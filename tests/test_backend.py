"""funcnet.backend: naming backends, saying why one is unusable, moving trees between them."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types

import array_api_strict
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet import backend


@pytest.fixture
def fresh_cache(monkeypatch):
    """An empty module cache, so ``get`` looks again (and the real cache is restored after)."""
    monkeypatch.setattr(backend, "_MODULES", {})


def _fake_cupy(monkeypatch, **attrs):
    """Install a stand-in ``cupy`` module that find_spec and import_module both see."""
    fake = types.ModuleType("cupy")
    fake.__spec__ = importlib.machinery.ModuleSpec("cupy", None)
    for name, value in attrs.items():
        setattr(fake, name, value)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    return fake


# --- get / available / why_unavailable ------------------------------------------------------


@pytest.mark.parametrize(("name", "module"), [("numpy", np), ("array_api_strict", array_api_strict),
                                              ("jax", jnp)])
def test_get_returns_the_array_module(name, module):
    assert backend.get(name) is module
    assert backend.name_of(module) == name


def test_get_passes_a_module_through():
    assert backend.get(np) is np


def test_unknown_backend_name_is_a_value_error_listing_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown backend 'torch'; expected one of numpy, cupy, jax"):
        backend.get("torch")


def test_backend_name_of_the_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match="backend name must be a str, got int"):
        backend.get(3)


def test_available_lists_the_cpu_backends():
    usable = backend.available()
    assert {"numpy", "array_api_strict", "jax"} <= set(usable)
    assert all(backend.why_unavailable(name) is None for name in usable)


def test_why_unavailable_is_none_for_a_usable_backend():
    assert backend.why_unavailable("numpy") is None
    assert backend.why_unavailable("jax") is None


@pytest.fixture
def no_cupy(monkeypatch, fresh_cache):
    """cupy not installed: not imported, and find_spec does not find it."""
    real_find_spec = importlib.util.find_spec
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "cupy" else real_find_spec(name, *a))


def test_cupy_not_installed(no_cupy):
    reason = backend.why_unavailable("cupy")
    assert reason is not None and "'cupy' is not installed" in reason
    assert "cupy" not in backend.available()
    with pytest.raises(backend.BackendUnavailableError, match="not installed"):
        backend.get("cupy")


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="cupy is installed here")
def test_cupy_not_installed_on_this_machine(fresh_cache):
    assert "not installed" in backend.why_unavailable("cupy")


def test_cupy_installed_without_a_device(monkeypatch, fresh_cache):
    _fake_cupy(monkeypatch, is_available=lambda: False)
    reason = backend.why_unavailable("cupy")
    assert reason == "backend 'cupy' is installed but no usable CUDA device was found"
    assert "not installed" not in reason
    assert "cupy" not in backend.available()


def test_cupy_whose_cuda_check_fails(monkeypatch, fresh_cache):
    def broken():
        raise RuntimeError("cudaErrorInsufficientDriver")

    _fake_cupy(monkeypatch, is_available=broken)
    assert backend.why_unavailable("cupy") == (
        "backend 'cupy' is installed but CUDA failed: cudaErrorInsufficientDriver")

# --- namespace ------------------------------------------------------------------------------


def test_namespace_of_each_backend(xp):
    a = xp.asarray([1.0, 2.0])
    assert backend.namespace(a) is xp
    assert backend.namespace(a, 2.0, None, 3, a) is xp  # Python scalars and None are ignored


def test_namespace_under_jit_is_jax_numpy():
    seen = []

    @jax.jit
    def f(x):
        seen.append(backend.namespace(x))
        assert backend.is_traced(x)
        return x

    f(jnp.ones(2))
    assert seen == [jnp]


def test_mixing_two_backends_is_a_type_error_naming_both():
    with pytest.raises(TypeError, match=r"two backends mixed in one call: numpy and jax\.numpy"):
        backend.namespace(np.ones(2), jnp.ones(2))
    with pytest.raises(TypeError, match="array_api_strict"):
        backend.namespace(array_api_strict.ones(2), np.ones(2))


def test_namespace_without_arrays_is_a_type_error():
    with pytest.raises(TypeError, match="no arrays given"):
        backend.namespace(1.0, None)


# --- put / to_numpy -------------------------------------------------------------------------

DTYPES = ("float16", "float32", "float64", "int32", "int64", "uint32", "bool")


@pytest.mark.parametrize("dtype", DTYPES)
def test_put_and_to_numpy_round_trip_keeps_values_and_dtypes(xp, dtype):
    if dtype == "float16" and xp is array_api_strict:
        with pytest.raises(TypeError, match="float16"):  # the strict namespace has no float16
            backend.put(np.ones(2, dtype), xp)
        return
    host = {"a": np.arange(6).reshape(2, 3).astype(dtype), "b": (np.ones(2, dtype),)}
    moved = backend.put(host, xp)
    for leaf in (moved["a"], moved["b"][0]):
        assert backend.namespace(leaf) is xp
    back = backend.to_numpy(moved)
    for got, want in ((back["a"], host["a"]), (back["b"][0], host["b"][0])):
        assert isinstance(got, np.ndarray)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_put_by_name_and_by_module_agree():
    host = np.arange(3.0, dtype=np.float32)
    assert isinstance(backend.put(host, "jax"), jax.Array)
    assert isinstance(backend.put(host, jnp), jax.Array)


def test_put_between_backends(xp):
    start = backend.put(np.arange(4, dtype=np.float32), "array_api_strict")
    moved = backend.put(start, xp)
    assert backend.namespace(moved) is xp
    assert backend.to_numpy(moved).dtype == np.float32


def test_put_on_the_same_backend_does_not_copy(xp):
    a = xp.asarray([1.0, 2.0])
    assert backend.put(a, xp) is a


def test_put_keeps_the_tree_structure():
    host = {"W": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)}
    moved = backend.put(((host, ()), [host["b"]]), "jax")
    assert moved[0][1] == ()
    assert set(moved[0][0]) == {"W", "b"}
    assert isinstance(moved[1], list) and moved[1][0].shape == (3,)


def test_put_refuses_float64_to_jax_without_x64(monkeypatch):
    monkeypatch.setattr(jax, "config", types.SimpleNamespace(jax_enable_x64=False))
    with pytest.raises(TypeError, match="float64 leaf cannot move to jax without jax_enable_x64"):
        backend.put({"W": np.ones(2, np.float64)}, "jax")
    moved = backend.put({"W": np.ones(2, np.float32)}, "jax")  # float32 is fine
    assert moved["W"].dtype == jnp.float32


def test_put_float64_to_jax_with_x64_stays_float64():
    assert jax.config.jax_enable_x64  # conftest turns it on
    assert backend.put(np.ones(2, np.float64), "jax").dtype == jnp.float64


def test_to_numpy_of_scalars():
    out = backend.to_numpy({"s": 1.5, "n": np.float32(2.0)})
    assert out["s"].dtype == np.float64 and out["n"].dtype == np.float32


# --- dtype predicates -----------------------------------------------------------------------


def test_dtype_predicates_on_every_backend(xp):
    assert backend.is_floating(xp.float32) and backend.is_floating(xp.float64)
    assert not backend.is_floating(xp.int32)
    assert backend.is_integer(xp.int64) and backend.is_integer(xp.uint32)
    assert not backend.is_integer(xp.float32) and not backend.is_integer(xp.bool)
    assert not backend.is_traced(xp.ones(2))


# --- the cupy probe: a real computation, and the CUDA error it raised -----------------------

DRIVER_ERROR = "cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version"


class _CUDARuntimeError(RuntimeError):
    pass


def test_cupy_that_sees_a_gpu_but_fails_on_first_use(monkeypatch, fresh_cache):
    def first_use(*args, **kwargs):
        raise _CUDARuntimeError(DRIVER_ERROR)

    _fake_cupy(monkeypatch, is_available=lambda: True, float32="float32", arange=first_use)
    reason = backend.why_unavailable("cupy")
    assert reason is not None and DRIVER_ERROR in reason
    assert "first computation" in reason and "_CUDARuntimeError" in reason
    assert "[ctk]" in reason and "CUDA toolkit" in reason
    assert "cupy" not in backend.available()


def test_cupy_whose_matmul_fails_is_unavailable(monkeypatch, fresh_cache):
    # the arrays are made, the first cuBLAS call fails: as with a missing CUDA toolkit
    class FakeArray:
        def reshape(self, *shape):
            return self

    def no_cublas(a, b):
        raise _CUDARuntimeError("CUBLAS_STATUS_NOT_INITIALIZED")

    _fake_cupy(monkeypatch, is_available=lambda: True, float32="float32",
               arange=lambda n, dtype=None: FakeArray(), matmul=no_cublas, sum=lambda a: a)
    assert "CUBLAS_STATUS_NOT_INITIALIZED" in backend.why_unavailable("cupy")


def test_cupy_not_installed_says_how_to_install_it(no_cupy):
    reason = backend.why_unavailable("cupy")
    assert 'pip install -e ".[gpu]"' in reason  # the README's form
    assert "funcnet[gpu]" not in reason
    assert "CuPy 14's [ctk] extra" in reason and "CUDA toolkit" in reason


# --- recognising backends -------------------------------------------------------------------


def test_predicates_and_name_of_use_the_namespaces():
    import array_api_compat.numpy as compat_numpy

    assert backend.is_numpy(np) and backend.is_numpy(compat_numpy)
    assert backend.is_jax(jnp) and not backend.is_jax(np)
    assert backend.is_array_api_strict(array_api_strict) and not backend.is_array_api_strict(np)
    assert backend.is_cupy(types.ModuleType("cupy")) and backend.is_cupy(types.ModuleType("array_api_compat.cupy"))
    assert not backend.is_cupy(np)
    assert backend.name_of(compat_numpy) == "numpy"
    assert backend.name_of(types.ModuleType("array_api_compat.cupy")) == "cupy"
    assert backend.name_of(types.ModuleType("torch")) == "torch"


def test_no_module_name_strings_and_no_import_circle():
    import ast
    from pathlib import Path

    from funcnet import random, tree

    for module in (backend, random):
        assert "__module__" not in Path(module.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(Path(tree.__file__).read_text())):
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert not any(name.startswith("funcnet") for name in imported), imported


# --- put with a cold type cache: no trip through the host -----------------------------------

COLD_PUT = """
import numpy as np
from funcnet import backend
assert set(backend._NAMESPACE_BY_TYPE) == {np.ndarray}, backend._NAMESPACE_BY_TYPE  # cold
def no_host_copy(x):
    raise AssertionError(f"copied through the host: {type(x).__name__}")
backend._to_host = no_host_copy
xp = backend.get(NAME)
a = xp.asarray(np.arange(3, dtype=np.float32))
assert backend.put(a, NAME) is a
assert backend.put({"w": a}, xp)["w"] is a
print("ok")
"""


@pytest.mark.parametrize("name", ["array_api_strict", "jax"])
def test_put_on_the_same_backend_does_not_copy_with_a_cold_cache(name):
    import subprocess

    done = subprocess.run([sys.executable, "-c", f"NAME = {name!r}\n" + COLD_PUT], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


def test_put_a_tracer_to_jax_keeps_it():
    @jax.jit
    def f(x):
        assert backend.put(x, "jax") is x
        return x

    f(jnp.ones(2))
