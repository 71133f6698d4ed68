"""Array backends: which exist, which are usable, and moving trees of arrays between them.

The array module (``xp``) is never global. Code learns it from its arrays with
:func:`namespace`, which is one dictionary look-up on the hot path.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any

import numpy as np

from funcnet import tree

NAMES = ("numpy", "cupy", "jax", "array_api_strict")


class BackendUnavailableError(RuntimeError):
    """A backend was asked for that is not installed or cannot run here."""


def _load(name: str) -> ModuleType:
    if name == "numpy":
        return np
    if name == "array_api_strict":
        if importlib.util.find_spec("array_api_strict") is None:
            raise BackendUnavailableError(
                "backend 'array_api_strict' is not installed (pip install array-api-strict)"
            )
        return importlib.import_module("array_api_strict")
    if name == "jax":
        if importlib.util.find_spec("jax") is None:
            raise BackendUnavailableError("backend 'jax' is not installed (pip install 'funcnet[jax]')")
        return importlib.import_module("jax.numpy")
    if name == "cupy":
        if importlib.util.find_spec("cupy") is None:
            raise BackendUnavailableError(
                "backend 'cupy' is not installed (pip install 'funcnet[gpu]'; it needs an NVIDIA GPU)"
            )
        try:
            cupy = importlib.import_module("cupy")
        except Exception as err:  # a broken CUDA install fails at import
            raise BackendUnavailableError(f"backend 'cupy' is installed but failed to import: {err}") from err
        try:
            usable = bool(cupy.is_available())
        except Exception as err:
            raise BackendUnavailableError(f"backend 'cupy' is installed but CUDA failed: {err}") from err
        if not usable:
            raise BackendUnavailableError(
                "backend 'cupy' is installed but no usable CUDA device was found"
            )
        # cupy itself lacks parts of the Array API (astype, concat, ... in some versions);
        # array_api_compat's wrapper adds them around the same cupy arrays
        try:
            return importlib.import_module("array_api_compat.cupy")
        except ImportError as err:
            raise BackendUnavailableError(
                f"backend 'cupy' needs array_api_compat's cupy wrapper, which failed to import: {err}"
            ) from err
    raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(NAMES)}")


_MODULES: dict[str, ModuleType] = {}


def get(name: str | ModuleType) -> ModuleType:
    """The array module of a backend by name; raises a message saying why when it is unusable."""
    if isinstance(name, ModuleType):
        return name
    if not isinstance(name, str):
        raise TypeError(f"backend name must be a str, got {type(name).__name__}")
    if name not in _MODULES:
        _MODULES[name] = _load(name)
    return _MODULES[name]


def available() -> list[str]:
    """The names of the backends that can run on this machine."""
    usable = []
    for name in NAMES:
        try:
            get(name)
        except BackendUnavailableError:
            continue
        usable.append(name)
    return usable


def why_unavailable(name: str) -> str | None:
    """None when the backend is usable, otherwise the reason it is not."""
    try:
        get(name)
    except BackendUnavailableError as err:
        return str(err)
    return None


# type(array) -> its namespace. One dict look-up per call instead of array_api_compat's
# inspection, which matters on the small-batch hot path.
_NAMESPACE_BY_TYPE: dict[type, ModuleType] = {np.ndarray: np}


def _namespace_of_type(kind: type, example: Any) -> ModuleType:
    if kind.__module__.startswith("cupy"):
        xp = get("cupy")  # the array_api_compat wrapper, never bare cupy
    elif hasattr(example, "__array_namespace__"):
        xp = example.__array_namespace__()
    else:
        import array_api_compat

        xp = array_api_compat.array_namespace(example)
    if kind.__module__.startswith("jax") and "Tracer" in kind.__name__:
        return xp  # tracer classes are many and short-lived: do not grow the cache with them
    _NAMESPACE_BY_TYPE[kind] = xp
    return xp


def namespace(*arrays: Any) -> ModuleType:
    """The array module shared by ``arrays`` (Python scalars and None are ignored).

    Raises TypeError when arrays of two backends are mixed in one call.
    """
    found = None
    for a in arrays:
        if a is None or isinstance(a, int | float | bool | complex):
            continue
        kind = type(a)
        xp = _NAMESPACE_BY_TYPE.get(kind) or _namespace_of_type(kind, a)
        if found is None:
            found = xp
        elif xp is not found:
            raise TypeError(
                f"arrays of two backends mixed in one call: {found.__name__} and {xp.__name__}; "
                "move them to one backend first with funcnet.backend.put"
            )
    if found is None:
        raise TypeError("no arrays given to find an array namespace from")
    return found


def name_of(xp: ModuleType) -> str:
    """The backend name of an array module (``numpy``, ``cupy``, ``jax``, ``array_api_strict``)."""
    module = xp.__name__
    if module == "numpy":
        return "numpy"
    if module.startswith("jax"):
        return "jax"
    if module.startswith(("cupy", "array_api_compat.cupy")):
        return "cupy"
    if module.startswith("array_api_strict"):
        return "array_api_strict"
    return module


def _to_host(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, np.generic | int | float | bool):
        return np.asarray(x)
    module = type(x).__module__
    if module.startswith("cupy"):
        return x.get()
    if module.startswith("array_api_strict"):
        return np.from_dlpack(x)
    return np.asarray(x)


def to_numpy(tree_: Any) -> Any:
    """A tree with every array leaf copied (or viewed) as a host NumPy array."""
    return tree.map(_to_host, tree_)


def put(tree_: Any, to: str | ModuleType) -> Any:
    """A tree with every array leaf moved to backend ``to`` (a name or an array module).

    Dtypes are kept; on jax, float64 needs ``jax_enable_x64`` (jax's own rule), and a float64
    leaf that would silently become float32 raises instead.
    """
    xp = get(to)
    name = name_of(xp)

    def move(leaf: Any) -> Any:
        if _NAMESPACE_BY_TYPE.get(type(leaf)) is xp:
            return leaf  # already there: no copy
        host = _to_host(leaf)
        if name == "numpy":
            return host
        if name == "jax":
            import jax

            if host.dtype == np.float64 and not jax.config.jax_enable_x64:
                raise TypeError(
                    "a float64 leaf cannot move to jax without jax_enable_x64 "
                    "(it would silently become float32); cast it or enable x64"
                )
            return xp.asarray(host)
        return xp.asarray(host)

    return tree.map(move, tree_)


def is_traced(x: Any) -> bool:
    """True for a jax tracer (inside ``jax.jit``): its values cannot be read, only its shape."""
    kind = type(x)
    return kind.__module__.startswith("jax") and "Tracer" in kind.__name__


_KINDS: dict[tuple[type, Any], str] = {}


def dtype_kind(dtype: Any) -> str:
    """NumPy's kind letter (``f``, ``c``, ``i``, ``u``, ``b``, ...) of a dtype of any backend.

    Cached, since layers ask on every call; keyed by the dtype's type first, so that
    array_api_strict dtypes are never compared with NumPy's.
    """
    key = (type(dtype), dtype)
    kind = _KINDS.get(key)
    if kind is None:
        kind = _KINDS[key] = numpy_dtype(dtype).kind
    return kind


def numpy_dtype(dtype: Any) -> np.dtype:
    """NumPy's dtype for a dtype of any backend (a name, NumPy's, jax's, array_api_strict's)."""
    try:
        return np.dtype(dtype)
    except TypeError:  # array_api_strict's own dtype objects, named like NumPy's
        return np.dtype(str(dtype).rsplit(".", 1)[-1])


def is_floating(dtype: Any) -> bool:
    """True for a real floating dtype of any backend."""
    return dtype_kind(dtype) == "f"


def is_complex(dtype: Any) -> bool:
    """True for a complex dtype of any backend."""
    return dtype_kind(dtype) == "c"


def is_integer(dtype: Any) -> bool:
    """True for a signed or unsigned integer dtype of any backend (bool excluded)."""
    return dtype_kind(dtype) in ("i", "u")


IN_PLACE_MIN_SIZE = 16384
"""Arrays at least this large are worth writing into with NumPy's ``out=`` (into a buffer the
same function has just allocated); below it the keyword costs more than the allocation saved."""


# np.sum / np.max go through a Python wrapper that costs as much as the reduction itself on
# the small arrays of the seed's workload; the ufunc's own reduce gives the same numbers.
def reduce_sum(xp: ModuleType, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """``xp.sum(x, axis=axis, keepdims=keepdims)``, without NumPy's wrapper overhead."""
    if xp is np:
        return np.add.reduce(x, axis=axis, keepdims=keepdims)
    return xp.sum(x, axis=axis, keepdims=keepdims)


def reduce_max(xp: ModuleType, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """``xp.max(x, axis=axis, keepdims=keepdims)``, without NumPy's wrapper overhead."""
    if xp is np:
        return np.maximum.reduce(x, axis=axis, keepdims=keepdims)
    return xp.max(x, axis=axis, keepdims=keepdims)
