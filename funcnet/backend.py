"""Array backends: which exist, which are usable, and moving trees of arrays between them.

The array module (``xp``) is never global. Code learns it from its arrays with
`namespace`, which is one dictionary look-up on the hot path. Backends are recognised
with array_api_compat's namespace predicates (`is_numpy`, `is_jax`, `is_cupy`,
`is_array_api_strict`), never by module-name strings.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from funcnet import tree

__all__ = [
    "IN_PLACE_MIN_SIZE",
    "NAMES",
    "BackendUnavailableError",
    "available",
    "dtype_kind",
    "get",
    "is_array_api_strict",
    "is_complex",
    "is_cupy",
    "is_floating",
    "is_integer",
    "is_jax",
    "is_numpy",
    "is_traced",
    "largest_finite",
    "name_of",
    "namespace",
    "numpy_dtype",
    "put",
    "reduce_max",
    "reduce_sum",
    "sum_of_sums",
    "to_numpy",
    "why_unavailable",
]

NAMES = ("numpy", "cupy", "jax", "array_api_strict")
GPU_INSTALL = 'pip install -e ".[gpu]"'
GPU_NEEDS = "CuPy 14's [ctk] extra (cupy-cuda12x[ctk]) or a CUDA toolkit, and an NVIDIA GPU with its driver"


class BackendUnavailableError(RuntimeError):
    """A backend was asked for that is not installed or cannot run here.

    Examples:
        >>> issubclass(BackendUnavailableError, RuntimeError)
        True
    """


def _probe_cupy(cupy: ModuleType) -> None:
    """A tiny real computation (a matmul and a reduction, read back): ``cupy.is_available()``
    only counts devices, while a too-old driver or a missing CUDA toolkit (cuBLAS, NVRTC) fails
    on first use. Raises BackendUnavailableError with the underlying CUDA error's text."""
    try:
        a = cupy.arange(4, dtype=cupy.float32).reshape(2, 2)
        total = float(cupy.sum(cupy.matmul(a, a)))
    except Exception as err:
        raise BackendUnavailableError(
            f"backend 'cupy' is installed and sees a GPU, but a first computation on it failed "
            f"({type(err).__name__}: {err}); it needs {GPU_NEEDS}"
        ) from err
    if total != 44.0:  # [[0, 1], [2, 3]] squared is [[2, 3], [6, 11]]
        raise BackendUnavailableError(
            f"backend 'cupy' computed a wrong result in its first computation (sum {total}, expected 44)"
        )


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
            raise BackendUnavailableError("backend 'jax' is not installed (pip install -e \".[jax]\")")
        return importlib.import_module("jax.numpy")
    if name == "cupy":
        if importlib.util.find_spec("cupy") is None:
            raise BackendUnavailableError(
                f"backend 'cupy' is not installed ({GPU_INSTALL}; it needs {GPU_NEEDS})"
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
        _probe_cupy(cupy)
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
    """The array module of a backend by name.

    Args:
        name: ``"numpy"``, ``"cupy"``, ``"jax"`` or ``"array_api_strict"``; a module passes through.

    Returns:
        The array module (``array_api_compat.cupy`` for cupy, ``jax.numpy`` for jax).

    Raises:
        BackendUnavailableError: the backend cannot run here; the message says why.
        ValueError: an unknown name.
        TypeError: ``name`` is neither a str nor a module.

    Examples:
        >>> get("numpy").__name__
        'numpy'
    """
    if isinstance(name, ModuleType):
        return name
    if not isinstance(name, str):
        raise TypeError(f"backend name must be a str, got {type(name).__name__}")
    if name not in _MODULES:
        _MODULES[name] = _load(name)
    return _MODULES[name]


def available() -> list[str]:
    """The names of the backends that can run on this machine.

    Returns:
        A list of backend names, in the order of `NAMES`.

    Examples:
        >>> "numpy" in available()
        True
    """
    usable = []
    for name in NAMES:
        try:
            get(name)
        except BackendUnavailableError:
            continue
        usable.append(name)
    return usable


def why_unavailable(name: str) -> str | None:
    """None when the backend is usable, otherwise the reason it is not.

    Args:
        name: a backend name.

    Returns:
        None, or one line saying what is missing (and for cupy the underlying CUDA error).

    Raises:
        ValueError: an unknown name.

    Examples:
        >>> why_unavailable("numpy") is None
        True
    """
    try:
        get(name)
    except BackendUnavailableError as err:
        return str(err)
    return None


# array_api_compat's own predicates of a namespace (bare modules and its wrappers alike; cupy is
# never imported to answer), re-exported under short names, and by backend name for name_of
is_numpy = array_api_compat.is_numpy_namespace
is_cupy = array_api_compat.is_cupy_namespace
is_jax = array_api_compat.is_jax_namespace
is_array_api_strict = array_api_compat.is_array_api_strict_namespace
_NAMESPACE_PREDICATES: dict[str, Any] = {"numpy": is_numpy, "cupy": is_cupy, "jax": is_jax,
                                         "array_api_strict": is_array_api_strict}


# type(array) -> its namespace. One dict look-up per call instead of array_api_compat's
# inspection, which matters on the small-batch hot path.
_NAMESPACE_BY_TYPE: dict[type, ModuleType] = {np.ndarray: np}


def _namespace_of_type(kind: type, example: Any) -> ModuleType:
    if array_api_compat.is_cupy_array(example):
        xp = get("cupy")  # the array_api_compat wrapper, never bare cupy
    elif hasattr(example, "__array_namespace__"):
        xp = example.__array_namespace__()
    else:
        xp = array_api_compat.array_namespace(example)
    if is_traced(example):
        return xp  # tracer classes are many and short-lived: do not grow the cache with them
    _NAMESPACE_BY_TYPE[kind] = xp
    return xp


def namespace(*arrays: Any) -> ModuleType:
    """The array module shared by ``arrays`` (Python scalars and None are ignored).

    Args:
        *arrays: arrays of one backend, Python scalars, None.

    Returns:
        Their array module (cupy's array_api_compat wrapper for cupy arrays).

    Raises:
        TypeError: arrays of two backends are mixed, or no array is given.

    Examples:
        >>> namespace(np.ones(2), 1.0) is np
        True
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
    """The backend name of an array module (``numpy``, ``cupy``, ``jax``, ``array_api_strict``).

    Args:
        xp: an array module.

    Returns:
        Its backend name; the module's own name for a module funcnet does not know.

    Examples:
        >>> name_of(get("numpy"))
        'numpy'
    """
    for name, check in _NAMESPACE_PREDICATES.items():
        if check(xp):
            return name
    return xp.__name__


def _to_host(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, np.generic | int | float | bool | complex):
        return np.asarray(x)
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_jax_array(x):
        return np.asarray(x)
    if hasattr(x, "__dlpack__"):
        return np.from_dlpack(x)  # array_api_strict and any other DLPack-speaking host array
    return np.asarray(x)  # anything else (a str, an object): callers name what they cannot use


def to_numpy(tree_: Any) -> Any:
    """A tree with every array leaf copied (or viewed) as a host NumPy array.

    Args:
        tree_: a tree of arrays of any backend (and Python scalars).

    Returns:
        The same structure with NumPy leaves.

    Examples:
        >>> to_numpy({"a": 1.5})
        {'a': array(1.5)}
    """
    return tree.map(_to_host, tree_)


def _backend_of_leaf(leaf: Any) -> ModuleType | None:
    """The array module of a device leaf, or None for host values (NumPy, Python scalars)."""
    if isinstance(leaf, np.ndarray | np.generic | int | float | bool | complex):
        return None
    try:
        return namespace(leaf)
    except TypeError:
        return None


def put(tree_: Any, to: str | ModuleType) -> Any:
    """A tree with every array leaf moved to backend ``to``.

    A leaf already on ``to`` is returned as it is (no copy, never through the host).
    Dtypes are kept; on jax, float64 needs ``jax_enable_x64`` (jax's own rule), and a float64
    leaf that would silently become float32 raises instead.

    Args:
        tree_: a tree of arrays of any backend (and Python scalars).
        to: a backend name or an array module.

    Returns:
        The same structure with leaves on ``to``.

    Raises:
        BackendUnavailableError: ``to`` cannot run here.
        TypeError: a float64 leaf would silently become float32 on jax.

    Examples:
        >>> x = np.ones(2)
        >>> put(x, "numpy") is x
        True
    """
    xp = get(to)
    name = name_of(xp)

    def move(leaf: Any) -> Any:
        if _NAMESPACE_BY_TYPE.get(type(leaf)) is xp:
            return leaf  # already there: no copy
        source = _backend_of_leaf(leaf)
        if source is not None and name_of(source) == name:
            return leaf  # already there, its type not cached yet: still no copy
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

    return tree.map(move, tree_)


def is_traced(x: Any) -> bool:
    """True for a jax tracer (inside ``jax.jit``): its values cannot be read, only its shape.

    Args:
        x: anything.

    Returns:
        Whether ``x`` is a jax tracer (False whenever jax was never imported).

    Examples:
        >>> is_traced(np.ones(2))
        False
    """
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(x, jax.core.Tracer)


_KINDS: dict[tuple[type, Any], str] = {}


def dtype_kind(dtype: Any) -> str:
    """NumPy's kind letter (``f``, ``c``, ``i``, ``u``, ``b``, ...) of a dtype of any backend.

    Cached, since layers ask on every call; keyed by the dtype's type first, so that
    array_api_strict dtypes are never compared with NumPy's.

    Args:
        dtype: a dtype (or its name) of any backend.

    Returns:
        One letter, as ``numpy.dtype(...).kind``.

    Examples:
        >>> dtype_kind("float32")
        'f'
    """
    key = (type(dtype), dtype)
    kind = _KINDS.get(key)
    if kind is None:
        kind = _KINDS[key] = numpy_dtype(dtype).kind
    return kind


_LARGEST: dict[tuple[type, Any], float] = {}


def largest_finite(dtype: Any) -> float:
    """The largest finite number of a floating dtype of any backend, cached (hot paths read it).

    Keyed by the dtype's type too, so array_api_strict's dtypes are never compared with NumPy's.

    Args:
        dtype: a floating dtype of any backend.

    Returns:
        Its largest finite value, as a Python float.

    Raises:
        TypeError: not a dtype NumPy knows.
        ValueError: not a floating dtype.

    Examples:
        >>> largest_finite(np.float16)
        65504.0
    """
    key = (type(dtype), dtype)
    largest = _LARGEST.get(key)
    if largest is None:
        largest = _LARGEST[key] = float(np.finfo(numpy_dtype(dtype)).max)
    return largest


def numpy_dtype(dtype: Any) -> np.dtype:
    """NumPy's dtype for a dtype of any backend (a name, NumPy's, jax's, array_api_strict's).

    Args:
        dtype: a dtype or a dtype's name.

    Returns:
        The NumPy dtype of the same name.

    Raises:
        TypeError: not a dtype NumPy knows.

    Examples:
        >>> numpy_dtype("int32")
        dtype('int32')
    """
    try:
        return np.dtype(dtype)
    except TypeError:  # array_api_strict's own dtype objects, named like NumPy's
        return np.dtype(str(dtype).rsplit(".", 1)[-1])


def is_floating(dtype: Any) -> bool:
    """True for a real floating dtype of any backend.

    Args:
        dtype: a dtype of any backend.

    Returns:
        Whether it is float16, float32 or float64.

    Examples:
        >>> is_floating(np.float32), is_floating(np.int32)
        (True, False)
    """
    return dtype_kind(dtype) == "f"


def is_complex(dtype: Any) -> bool:
    """True for a complex dtype of any backend.

    Args:
        dtype: a dtype of any backend.

    Returns:
        Whether it is complex.

    Examples:
        >>> is_complex(np.complex64)
        True
    """
    return dtype_kind(dtype) == "c"


def is_integer(dtype: Any) -> bool:
    """True for a signed or unsigned integer dtype of any backend (bool excluded).

    Args:
        dtype: a dtype of any backend.

    Returns:
        Whether it is a signed or unsigned integer dtype.

    Examples:
        >>> is_integer(np.uint32), is_integer(np.bool_)
        (True, False)
    """
    return dtype_kind(dtype) in ("i", "u")


IN_PLACE_MIN_SIZE = 16384
"""Arrays at least this large are worth writing into with NumPy's ``out=`` (into a buffer the
same function has just allocated); below it the keyword costs more than the allocation saved."""


# np.sum / np.max go through a Python wrapper that costs as much as the reduction itself on
# the small arrays of the seed's workload; the ufunc's own reduce gives the same numbers.
def reduce_sum(xp: ModuleType, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """``xp.sum(x, axis=axis, keepdims=keepdims)``, without NumPy's wrapper overhead.

    Args:
        xp: the array module of ``x``.
        x: an array.
        axis: the axis or axes to reduce (None: all).
        keepdims: keep the reduced axes with length 1.

    Returns:
        The sum.

    Examples:
        >>> reduce_sum(np, np.ones((2, 3)), axis=1).tolist()
        [3.0, 3.0]
    """
    if xp is np:
        return np.add.reduce(x, axis=axis, keepdims=keepdims)
    return xp.sum(x, axis=axis, keepdims=keepdims)


def sum_of_sums(arrays: list[Any]) -> Any:
    """The sum of every element of ``arrays`` (all of one backend), on that backend: one number that
    is finite when every element is, so one read tells that a whole state is finite (a partial sum
    that overflows makes it infinite too; callers then test the arrays one by one). NumPy may warn
    on such an overflow: call it under ``np.errstate``.

    Args:
        arrays: floating arrays.

    Returns:
        A 0-d array (0.0 for no arrays).

    Examples:
        >>> float(sum_of_sums([np.ones(3), np.full((2, 2), 0.5)]))
        5.0
    """
    if not arrays:
        return 0.0
    xp = namespace(arrays[0])
    total = reduce_sum(xp, arrays[0])
    for a in arrays[1:]:
        total = total + reduce_sum(xp, a)
    return total


def reduce_max(xp: ModuleType, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """``xp.max(x, axis=axis, keepdims=keepdims)``, without NumPy's wrapper overhead.

    Args:
        xp: the array module of ``x``.
        x: an array.
        axis: the axis or axes to reduce (None: all).
        keepdims: keep the reduced axes with length 1.

    Returns:
        The maximum.

    Examples:
        >>> reduce_max(np, np.arange(6).reshape(2, 3), axis=0).tolist()
        [3, 4, 5]
    """
    if xp is np:
        return np.maximum.reduce(x, axis=axis, keepdims=keepdims)
    return xp.max(x, axis=axis, keepdims=keepdims)
