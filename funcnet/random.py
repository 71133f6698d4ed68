"""Pure, splittable random keys.

A key is a ``uint32`` array of shape ``(2,)`` (the layout of a raw ``jax.random`` key), an
immutable value that can be stored in a checkpoint. The same key always gives the same numbers.

* On the host (NumPy keys) :func:`split` and :func:`fold_in` are a splitmix64 hash of the key,
  and draws come from a Philox generator keyed by it: fixed recipes, independent of NumPy's
  global state and of the backend the numbers are moved to.
* When the key is a ``jax`` array (inside ``jax.jit`` in particular) every function uses
  ``jax.random`` with the same key, so a training step traces. Its numbers differ from the host
  recipe; this is why Dropout masks may differ between backends.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from funcnet.backend import is_integer

Key = Any  # a uint32 array of shape (2,)

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_SPLIT_TAG = 0x5EED5EED5EED5EED
_FOLD_TAG = 0xF01DF01DF01DF01D


def _mix64(z: int) -> int:
    """The splitmix64 finaliser: a bijective, well-mixing hash of a 64-bit integer."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _is_jax(x: Any) -> bool:
    return type(x).__module__.startswith("jax")


def _as_int(key: Key) -> int:
    if type(key).__module__.startswith("cupy"):
        key = key.get()
    elif not isinstance(key, np.ndarray):
        key = np.asarray(key)
    if key.shape != (2,) or key.dtype != np.uint32:
        raise TypeError(f"a key is a uint32 array of shape (2,), got {key.dtype} {key.shape}")
    hi, lo = int(key[0]), int(key[1])
    return (hi << 32) | lo


def _from_int(z: int) -> np.ndarray:
    return np.array([(z >> 32) & 0xFFFFFFFF, z & 0xFFFFFFFF], dtype=np.uint32)


def _count(name: str, what: str, n: Any) -> int:
    """``n`` as a non-negative Python int, or a TypeError/ValueError naming ``what``."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise TypeError(f"{name}: {what} must be an int, got {type(n).__name__} {n!r}")
    if n < 0:
        raise ValueError(f"{name}: {what} must be >= 0, got {n}")
    return int(n)


def _shape(name: str, shape: Any) -> tuple[int, ...]:
    """``shape`` as a tuple of non-negative ints (a bare int is a 1-d shape, as in NumPy)."""
    dims = (shape,) if isinstance(shape, int | np.integer) else shape
    try:
        dims = tuple(dims)
    except TypeError:
        raise TypeError(f"{name}: shape must be a tuple of ints, got {shape!r}") from None
    if any(isinstance(d, bool) or not isinstance(d, int | np.integer) for d in dims):
        raise TypeError(f"{name}: shape must be a tuple of ints, got {shape!r}")
    if any(d < 0 for d in dims):
        raise ValueError(f"{name}: shape must not have negative sizes, got {shape!r}")
    return tuple(int(d) for d in dims)


def _float_dtype(name: str, dtype: Any) -> np.dtype:
    """``dtype`` as a NumPy floating dtype: integer or complex draws would be silently wrong."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name}: dtype must be a floating dtype, got {dtype!r}") from None
    if dtype.kind != "f":
        raise TypeError(f"{name}: dtype must be a floating dtype (float16, float32, float64), got {dtype}")
    return dtype


def _fold_data(data: Any) -> int:
    """``fold_in``'s data as an int: a Python or NumPy integer, or a 0-d integer array (a step count)."""
    if isinstance(data, int | np.integer) and not isinstance(data, bool):
        return int(data)
    dtype, shape = getattr(data, "dtype", None), getattr(data, "shape", None)
    if shape == () and dtype is not None and is_integer(dtype):
        return int(data)
    raise TypeError(f"fold_in: data must be an integer (an int or a 0-d integer array), "
                    f"got {type(data).__name__} {data!r:.80}")


def key(seed: int) -> np.ndarray:
    """A key from an integer seed (the same layout as ``jax.random.PRNGKey(seed)``)."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return _from_int(seed)


def split(key: Key, n: int = 2) -> Any:
    """``n`` new independent keys, as an array of shape ``(n, 2)``."""
    if _is_jax(key):
        import jax

        return jax.random.split(key, n)
    n = _count("split", "n", n)
    base = _mix64(_as_int(key) ^ _SPLIT_TAG)
    if n == 0:
        return np.zeros((0, 2), dtype=np.uint32)
    return np.stack([_from_int(_mix64((base + (i + 1) * _GOLDEN) & _MASK64)) for i in range(n)])


def fold_in(key: Key, data: Any) -> Any:
    """A new key that is a pure function of ``key`` and the integer ``data``."""
    if _is_jax(key) or _is_jax(data):
        import jax

        return jax.random.fold_in(key, data)
    data = _fold_data(data)
    base = _mix64(_as_int(key) ^ _FOLD_TAG)
    return _from_int(_mix64((base + (data & _MASK64) * _GOLDEN) & _MASK64))


def _generator(key: Key) -> np.random.Generator:
    return np.random.Generator(np.random.Philox(key=_as_int(key)))


def _move(host: np.ndarray, xp: ModuleType | None) -> Any:
    return host if xp is None or xp is np else xp.asarray(host)


def normal(key: Key, shape: tuple[int, ...], dtype: Any = "float32", xp: ModuleType | None = None) -> Any:
    """Standard normal draws. Host recipe: Philox, drawn in float32 or float64 (float16: cast from float32)."""
    dtype, shape = _float_dtype("normal", dtype), _shape("normal", shape)
    if _is_jax(key):
        import jax

        return jax.random.normal(key, shape, dtype)
    draw_dtype = np.float64 if dtype == np.float64 else np.float32
    host = _generator(key).standard_normal(shape, dtype=draw_dtype)
    return _move(host.astype(dtype, copy=False), xp)


def uniform(key: Key, shape: tuple[int, ...], dtype: Any = "float32", minval: float = 0.0,
            maxval: float = 1.0, xp: ModuleType | None = None) -> Any:
    """Uniform draws in ``[minval, maxval)``."""
    dtype, shape = _float_dtype("uniform", dtype), _shape("uniform", shape)
    if _is_jax(key):
        import jax

        return jax.random.uniform(key, shape, dtype, minval, maxval)
    draw_dtype = np.float64 if dtype == np.float64 else np.float32
    host = _generator(key).random(shape, dtype=draw_dtype)
    host = host * (maxval - minval) + minval
    return _move(host.astype(dtype, copy=False), xp)


def bernoulli(key: Key, p: float, shape: tuple[int, ...], xp: ModuleType | None = None) -> Any:
    """Boolean draws that are True with probability ``p``."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"bernoulli probability must be in [0, 1], got {p}")
    if _is_jax(key):
        import jax

        return jax.random.bernoulli(key, p, shape)
    if xp is not None and xp.__name__.startswith(("cupy", "array_api_compat.cupy")):
        # a mask every step: drawn on the device instead of copied there (its numbers differ
        # from the host recipe's, as masks may between backends)
        import cupy

        return cupy.random.default_rng(_as_int(key)).random(shape, dtype=cupy.float32) < p
    return _move(_generator(key).random(shape, dtype=np.float32) < p, xp)


def permutation(key: Key, n: int, xp: ModuleType | None = None) -> Any:
    """A random permutation of ``range(n)`` (int64 on the host)."""
    if _is_jax(key):
        import jax

        return jax.random.permutation(key, n)
    return _move(_generator(key).permutation(_count("permutation", "n", n)), xp)
