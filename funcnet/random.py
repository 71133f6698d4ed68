"""Pure, splittable random keys.

A key is a ``uint32`` array of shape ``(2,)`` (the layout of a raw ``jax.random`` key), an
immutable value that can be stored in a checkpoint. The same key always gives the same numbers.

* `split` and `fold_in` are a splitmix64 hash of the key. A host (NumPy) key is
  hashed with Python integers; a key on a device backend (jax, also traced inside ``jax.jit``,
  cupy, array_api_strict) with the same recipe written in ``uint32`` Array API operations, so
  one key gives the same keys on every backend.
* `bernoulli` (Dropout's masks) is counter-based: element ``i`` of the mask is a
  Threefry-2x32 (20 rounds) hash of the key and ``i``, compared with an integer threshold. It
  runs on the arrays' own backend (on the device, traced under ``jax.jit``), and one key gives
  the same mask, bit for bit, on every backend, device and batch size.
* `normal`, `uniform` and `permutation` draw on the host from a Philox
  generator keyed by the key (initial params: fixed recipes, independent of NumPy's global
  state, moved afterwards). Given a jax key they use ``jax.random`` instead, whose numbers
  differ from the host recipe.
"""

from __future__ import annotations

import math
import threading
from types import ModuleType
from typing import Any

import numpy as np

from funcnet import backend

__all__ = ["Key", "bernoulli", "draw_dtype", "fold_in", "key", "normal", "permutation", "split", "uniform"]

Key = Any  # a uint32 array of shape (2,)

_MASK32 = 0xFFFFFFFF
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_SPLIT_TAG = 0x5EED5EED5EED5EED
_FOLD_TAG = 0xF01DF01DF01DF01D
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_SMALL = 1 << 31  # Python ints below this combine with uint32 arrays on every backend (jax included)


# --- keys on the host: Python integers ----------------------------------------------------------


def _mix64(z: int) -> int:
    """The splitmix64 finaliser: a bijective, well-mixing hash of a 64-bit integer."""
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
    return z ^ (z >> 31)


def _is_host(x: Any) -> bool:
    """A NumPy array or scalar, a Python int, or a plain sequence: hashed with Python ints."""
    return isinstance(x, np.ndarray | np.generic | int | list | tuple) or not hasattr(x, "dtype")


def _as_int(key: Key) -> int:
    key = np.asarray(key)
    if key.shape != (2,) or key.dtype != np.uint32:
        got = f"{key.dtype} {key.shape}" if key.dtype != object else type(key.reshape(-1)[0]).__name__
        raise TypeError(f"a key is a uint32 array of shape (2,), got {got} (make one with random.key(seed))")
    hi, lo = int(key[0]), int(key[1])
    return (hi << 32) | lo


def _from_int(z: int) -> np.ndarray:
    return np.array([(z >> 32) & _MASK32, z & _MASK32], dtype=np.uint32)


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
    if shape == () and dtype is not None and backend.is_integer(dtype):
        return int(data)
    raise TypeError(f"fold_in: data must be an integer (an int or a 0-d integer array), "
                    f"got {type(data).__name__} {data!r:.80}")


# --- uint32 lanes in Array API operations (any backend, traceable) ------------------------------
#
# Only +, *, ^, |, &, ~, shifts and comparisons of uint32 arrays with each other and with Python
# ints below 2**31 (jax refuses larger ones next to a uint32 array): they wrap modulo 2**32 alike
# on NumPy, cupy, jax and array_api_strict. No 64-bit integer is needed anywhere.


def _add_const(x: Any, c: int) -> Any:
    """``x + c`` modulo 2**32 for a Python int ``c`` of any size."""
    c &= _MASK32
    if type(x) is np.ndarray:
        return x + c  # NumPy (NEP 50) takes any uint32-sized int in one pass: Dropout's host path
    while c >= _SMALL:  # at most twice: 2**32 - 1 = 2 * (2**31 - 1) + 1
        x, c = x + (_SMALL - 1), c - (_SMALL - 1)
    return x + c


def _xor_const(x: Any, c: int) -> Any:
    """``x ^ c`` for a Python int ``c`` in [0, 2**32)."""
    return x ^ c if c < _SMALL else ~(x ^ (c ^ _MASK32))


def _less_const(x: Any, c: int) -> Any:
    """``x < c`` for a Python int ``c`` in [0, 2**32)."""
    return x < c if c < _SMALL else ~x > (_MASK32 - c)


def _mul_lo_const(x: Any, c: int) -> Any:
    """The low 32 bits of ``x * c`` (uint32 multiplication wraps on every backend)."""
    return x * (c & 0xFFFF) + ((x * (c >> 16 & 0xFFFF)) << 16)


def _mul_wide_const(x: Any, c: int) -> tuple[Any, Any]:
    """``(hi, lo)``: all 64 bits of ``x * c`` for a 32-bit constant ``c``, in 16-bit halves."""
    a0, a1 = x & 0xFFFF, x >> 16
    b0, b1 = c & 0xFFFF, c >> 16 & 0xFFFF
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1  # each below 2**32: exact
    mid = (p00 >> 16) + (p01 & 0xFFFF) + (p10 & 0xFFFF)
    lo = (mid << 16) | (p00 & 0xFFFF)
    hi = p11 + (p01 >> 16) + (p10 >> 16) + (mid >> 16)
    return hi, lo


def _mul64_const(hi: Any, lo: Any, c: int) -> tuple[Any, Any]:
    """``(hi, lo) * c`` modulo 2**64 for a 64-bit constant ``c``."""
    c_hi, c_lo = c >> 32, c & _MASK32
    carry, low = _mul_wide_const(lo, c_lo)
    return carry + _mul_lo_const(lo, c_hi) + _mul_lo_const(hi, c_lo), low


def _add64(xp: ModuleType, a: tuple[Any, Any], b: tuple[Any, Any]) -> tuple[Any, Any]:
    low = a[1] + b[1]
    carry = xp.astype(low < a[1], xp.uint32)
    return a[0] + b[0] + carry, low


def _xorshift64(hi: Any, lo: Any, s: int) -> tuple[Any, Any]:
    """``z ^ (z >> s)`` for ``0 < s < 32``."""
    return hi ^ (hi >> s), lo ^ ((lo >> s) | (hi << (32 - s)))


def _mix64_lanes(hi: Any, lo: Any) -> tuple[Any, Any]:
    """`_mix64` on (hi, lo) uint32 lanes."""
    hi, lo = _mul64_const(*_xorshift64(hi, lo, 30), _MIX1)
    hi, lo = _mul64_const(*_xorshift64(hi, lo, 27), _MIX2)
    return _xorshift64(hi, lo, 31)


def _key_lanes(name: str, key: Any) -> tuple[ModuleType, Any, Any]:
    """``(xp, hi, lo)`` of a device key, each lane of shape (1,); the key's shape and dtype checked."""
    xp = backend.namespace(key)
    if tuple(key.shape) != (2,) or key.dtype != xp.uint32:
        raise TypeError(f"{name}: a key is a uint32 array of shape (2,), got {key.dtype} {tuple(key.shape)}")
    return xp, key[0:1], key[1:2]


def _data_lanes(xp: ModuleType, data: Any) -> tuple[Any, Any]:
    """``fold_in``'s data (an int or a 0-d integer array, traced too) as 64-bit (hi, lo) lanes."""
    if isinstance(data, int | np.integer) and not isinstance(data, bool):
        z = int(data) & _MASK64
        lo = xp.zeros((1,), dtype=xp.uint32)
        return _add_const(lo, z >> 32), _add_const(lo, z & _MASK32)
    dtype, shape = getattr(data, "dtype", None), getattr(data, "shape", None)
    if shape != () or dtype is None or not backend.is_integer(dtype):
        raise TypeError(f"fold_in: data must be an integer (an int or a 0-d integer array), "
                        f"got {type(data).__name__} {data!r:.80}")
    data = xp.reshape(backend.put(data, xp), (1,))
    lo = xp.astype(data, xp.uint32)  # two's complement: wraps like ``data & MASK64`` on the host
    if backend.numpy_dtype(dtype).itemsize == 8:
        hi = xp.astype(data >> 32, xp.uint32)
    elif backend.dtype_kind(dtype) == "i":
        hi = xp.zeros((1,), dtype=xp.uint32) - xp.astype(data < 0, xp.uint32)
    else:
        hi = xp.zeros((1,), dtype=xp.uint32)
    return hi, lo


def _split_lanes(key: Any, n: int) -> Any:
    xp, hi, lo = _key_lanes("split", key)
    base = _mix64_lanes(_xor_const(hi, _SPLIT_TAG >> 32), _xor_const(lo, _SPLIT_TAG & _MASK32))
    i = xp.arange(1, n + 1, dtype=xp.uint32)
    step = _mul64_const(xp.zeros_like(i), i, _GOLDEN)
    hi, lo = _mix64_lanes(*_add64(xp, base, step))
    return xp.stack([hi, lo], axis=1)


def _fold_lanes(key: Any, data: Any) -> Any:
    xp, hi, lo = _key_lanes("fold_in", key)
    base = _mix64_lanes(_xor_const(hi, _FOLD_TAG >> 32), _xor_const(lo, _FOLD_TAG & _MASK32))
    step = _mul64_const(*_data_lanes(xp, data), _GOLDEN)
    return xp.concat(_mix64_lanes(*_add64(xp, base, step)))


# --- Threefry-2x32: the counter-based hash of Dropout's masks ------------------------------------

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA


def _rotl(x: Any, r: int) -> Any:
    return (x << r) | (x >> (32 - r))


def _add(x: Any, k: Any) -> Any:
    return _add_const(x, k) if isinstance(k, int) else x + k


def _threefry2x32(k0: Any, k1: Any, x0: Any, x1: Any) -> tuple[Any, Any]:
    """Threefry-2x32 with 20 rounds (Salmon et al. 2011; the generator behind ``jax.random``).

    ``k0, k1`` are Python ints or 0-d uint32 arrays, ``x0, x1`` uint32 arrays (the counter).
    """
    if isinstance(k0, int):
        k2 = k0 ^ k1 ^ _PARITY
        injections = [(k1, (k2 + 1) & _MASK32), (k2, (k0 + 2) & _MASK32), (k0, (k1 + 3) & _MASK32),
                      (k1, (k2 + 4) & _MASK32), (k2, (k0 + 5) & _MASK32)]
    else:
        k2 = k0 ^ k1 ^ _PARITY
        injections = [(k1, k2 + 1), (k2, k0 + 2), (k0, k1 + 3), (k1, k2 + 4), (k2, k0 + 5)]
    x0, x1 = _add(x0, k0), _add(x1, k1)
    for i, (j0, j1) in enumerate(injections):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r) ^ x0
        x0, x1 = _add(x0, j0), _add(x1, j1)
    return x0, x1


def _threefry_bits(xp: ModuleType, k0: Any, k1: Any, n: int) -> Any:
    """``n`` uint32 words: word ``i`` is lane ``i % 2`` of Threefry-2x32 at counter ``(i // 2, 0)``.

    Word ``i`` depends on the key and ``i`` only: any prefix of a longer draw is the shorter draw.
    """
    pairs = (n + 1) // 2
    counter = xp.arange(pairs, dtype=xp.uint32)
    y0, y1 = _threefry2x32(k0, k1, counter, xp.zeros_like(counter))
    words = xp.reshape(xp.stack([y0, y1], axis=1), (2 * pairs,))
    return words if 2 * pairs == n else words[:n]


# --- the public functions -------------------------------------------------------------------------


def key(seed: int) -> np.ndarray:
    """A key from an integer seed (the same layout as ``jax.random.PRNGKey(seed)``).

    Args:
        seed: an int in ``[0, 2**64)``.

    Returns:
        A host ``uint32`` array of shape ``(2,)``: the seed's high and low 32 bits.

    Raises:
        TypeError: ``seed`` is not an int.
        ValueError: ``seed`` is out of range.

    Examples:
        >>> key(42)
        array([ 0, 42], dtype=uint32)
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return _from_int(seed)


def split(key: Key, n: int = 2) -> Any:
    """``n`` new independent keys, as an array of shape ``(n, 2)``.

    The same recipe on every backend: a jax key (traced too) gives the same keys as the host key
    with the same values, as a jax array.

    Args:
        key: a uint32 array of shape ``(2,)`` of any backend.
        n: how many keys (a non-negative int).

    Returns:
        A uint32 array of shape ``(n, 2)`` on the key's backend; row ``i`` does not depend on ``n``.

    Raises:
        TypeError: ``key`` is not a uint32 pair, or ``n`` is not an int.
        ValueError: ``n`` is negative.

    Examples:
        >>> first, second = split(key(0))
        >>> bool((split(key(0), 3)[1] == second).all())
        True
    """
    n = _count("split", "n", n)
    if not _is_host(key):
        return _split_lanes(key, n)
    base = _mix64(_as_int(key) ^ _SPLIT_TAG)
    if n <= 16:  # the few keys of a step (serial's layers): Python ints are quicker than arrays
        return np.stack([_from_int(_mix64((base + (i + 1) * _GOLDEN) & _MASK64)) for i in range(n)]) if n \
            else np.zeros((0, 2), dtype=np.uint32)
    # many keys: the same splitmix64 on a uint64 array (its arithmetic wraps, as the & _MASK64 of
    # the Python ints does), one pass for any n; a huge n fails at once (MemoryError), not hours on
    z = np.uint64(base) + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(_GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
    z = z ^ (z >> np.uint64(31))
    return np.stack([(z >> np.uint64(32)).astype(np.uint32), (z & np.uint64(_MASK32)).astype(np.uint32)], axis=1)


def fold_in(key: Key, data: Any) -> Any:
    """A new key that is a pure function of ``key`` and the integer ``data``.

    Args:
        key: a uint32 array of shape ``(2,)`` of any backend.
        data: an int, or a 0-d integer array of any backend (a traced step count under ``jax.jit``).

    Returns:
        A uint32 key of shape ``(2,)``: on the host when both inputs are, otherwise on the backend
        of the one that is not; the same values either way.

    Raises:
        TypeError: ``key`` is not a uint32 pair, or ``data`` is not an integer.

    Examples:
        >>> fold_in(key(0), 1).tolist() == fold_in(key(0), 1).tolist() != fold_in(key(0), 2).tolist()
        True
    """
    if _is_host(data) or not hasattr(data, "dtype"):  # ints, NumPy, and whatever is no array at all
        data = _fold_data(data)  # named when it is not an integer
    if _is_host(key) and isinstance(data, int):
        base = _mix64(_as_int(key) ^ _FOLD_TAG)
        return _from_int(_mix64((base + (data & _MASK64) * _GOLDEN) & _MASK64))
    if _is_host(key):
        _as_int(key)  # the key's own check, with its own message
        key = backend.put(np.asarray(key), backend.namespace(data))
    return _fold_lanes(key, data)


_REUSED = threading.local()  # one Philox generator a thread, re-keyed for every draw


def _generator(key: Key) -> np.random.Generator:
    """A Philox generator keyed by ``key``, at the start of its stream.

    Building a new ``Philox`` costs three times as much as setting the state of one that exists
    (fit draws a permutation an epoch), so each thread keeps one, with the state it is set to,
    and re-keys it (the setter copies the values out); the numbers are those of
    ``Generator(Philox(key=k))``, which the tests hold.
    """
    k = _as_int(key if type(key) is np.ndarray else backend.to_numpy(key))
    gen = getattr(_REUSED, "generator", None)
    if gen is None:  # the state first: an interrupt between the two leaves no generator without one
        _REUSED.state = {
            "bit_generator": "Philox",
            "state": {"counter": np.zeros(4, np.uint64), "key": np.zeros(2, np.uint64)},
            "buffer": np.zeros(4, np.uint64), "buffer_pos": 4, "has_uint32": 0, "uinteger": 0,
        }
        gen = _REUSED.generator = np.random.Generator(np.random.Philox(key=0))
    state = _REUSED.state
    state["state"]["key"][0] = k
    gen.bit_generator.state = state
    return gen


def _move(host: np.ndarray, xp: ModuleType | None) -> Any:
    return host if xp is None or backend.is_numpy(xp) else backend.put(host, xp)


def draw_dtype(dtype: Any) -> type:
    """The dtype the host recipe draws in for ``dtype``: float64 for float64, else float32.

    NumPy's generators draw float32 and float64 only; float16 numbers are cast from float32 draws.

    Examples:
        >>> draw_dtype("float16"), draw_dtype("float64")
        (<class 'numpy.float32'>, <class 'numpy.float64'>)
    """
    return np.float64 if np.dtype(dtype) == np.float64 else np.float32


def normal(key: Key, shape: tuple[int, ...], dtype: Any = "float32", xp: ModuleType | None = None) -> Any:
    """Standard normal draws.

    Host recipe: Philox, drawn in float32 or float64 (float16: cast from float32), then moved to
    ``xp``. A jax key draws with ``jax.random.normal`` instead.

    Args:
        key: a uint32 array of shape ``(2,)``.
        shape: the shape of the draw.
        dtype: a floating dtype.
        xp: the array module to move the draw to (default: NumPy).

    Returns:
        An array of ``shape`` and ``dtype``.

    Raises:
        TypeError: a bad key, shape or a non-floating dtype.

    Examples:
        >>> normal(key(0), (2, 3)).shape
        (2, 3)
    """
    dtype, shape = _float_dtype("normal", dtype), _shape("normal", shape)
    if _is_jax_key(key):
        import jax

        return jax.random.normal(key, shape, dtype)
    host = _generator(key).standard_normal(shape, dtype=draw_dtype(dtype))
    return _move(host.astype(dtype, copy=False), xp)


def uniform(key: Key, shape: tuple[int, ...], dtype: Any = "float32", minval: float = 0.0,
            maxval: float = 1.0, xp: ModuleType | None = None) -> Any:
    """Uniform draws in ``[minval, maxval)``.

    Args:
        key: a uint32 array of shape ``(2,)``.
        shape: the shape of the draw.
        dtype: a floating dtype.
        minval: the lower bound.
        maxval: the upper bound.
        xp: the array module to move the draw to (default: NumPy).

    Returns:
        An array of ``shape`` and ``dtype``.

    Raises:
        TypeError: a bad key, shape or a non-floating dtype.
        ValueError: bounds that are not finite, not ordered, or span more than the dtype holds.

    Examples:
        >>> u = uniform(key(0), (1000,), minval=-1.0, maxval=1.0)
        >>> bool(u.min() >= -1.0 and u.max() < 1.0)
        True
    """
    dtype, shape = _float_dtype("uniform", dtype), _shape("uniform", shape)
    low, high = _bounds(minval, maxval, dtype)
    if _is_jax_key(key):
        import jax

        return jax.random.uniform(key, shape, dtype, low, high)
    host = _generator(key).random(shape, dtype=draw_dtype(dtype))
    host = (host * (high - low) + low).astype(dtype, copy=False)
    # rounding (to float16, or of low + u * (high - low)) can land on high itself: keep it out
    below = np.nextafter(dtype.type(high), dtype.type(low))
    return _move(np.minimum(host, below, out=host), xp)


def _bounds(minval: Any, maxval: Any, dtype: np.dtype) -> tuple[float, float]:
    """``(minval, maxval)`` as floats: finite, ordered, and a range the dtype can hold."""
    finite = all(isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
                 and math.isfinite(v) for v in (minval, maxval))
    if not finite or not minval < maxval or not math.isfinite(float(maxval) - float(minval)) \
            or float(maxval) - float(minval) > float(np.finfo(dtype).max):
        raise ValueError(f"uniform: minval and maxval must be finite numbers with minval < maxval and a range "
                         f"that {dtype} holds, got {minval!r} and {maxval!r}")
    return float(minval), float(maxval)


def _threshold(p: float) -> int:
    """``floor(p * 2**32)``: a word ``u`` is kept when ``u < threshold`` (probability ``threshold / 2**32``)."""
    return min(math.floor(p * 2.0**32), _MASK32)


def bernoulli(key: Key, p: float, shape: tuple[int, ...], xp: ModuleType | None = None) -> Any:
    """Boolean draws that are True with probability ``p`` (Dropout's keep mask).

    Element ``i`` (in C order) is True when word ``i`` of a Threefry-2x32 hash of ``(key, i)`` is
    below ``floor(p * 2**32)``: integer operations only, on ``xp`` itself (on the device, traced
    under ``jax.jit``), so one key gives the same mask, bit for bit, on every backend and device,
    and a mask is a prefix of any larger one drawn from the same key.

    Args:
        key: a uint32 array of shape ``(2,)`` of any backend (a jax key under ``jax.jit`` too).
        p: the probability of True, a real number in ``[0, 1]``.
        shape: the shape of the mask (at most ``2**33`` elements).
        xp: the array module of the mask (default: the key's, NumPy for a host key).

    Returns:
        A bool array of ``shape`` on ``xp``.

    Raises:
        TypeError: a bad key or shape.
        ValueError: ``p`` outside ``[0, 1]``, or a shape too large.

    Examples:
        >>> bernoulli(key(0), 0.5, (2, 4)).tolist()  # the same on numpy, jax, cupy, array_api_strict
        [[True, False, True, False], [True, False, False, True]]
    """
    if isinstance(p, bool) or not isinstance(p, int | float | np.integer | np.floating):
        raise TypeError(f"bernoulli probability must be a real number, got {type(p).__name__} {p!r:.80}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"bernoulli probability must be in [0, 1], got {p}")
    shape = _shape("bernoulli", shape)
    n = math.prod(shape)
    if n > 2**33:
        raise ValueError(f"bernoulli: at most 2**33 elements a draw, got shape {shape}")
    if _is_host(key):
        xp = np if xp is None else backend.get(xp)
        k0, k1 = (int(word) for word in _from_int(_as_int(key)))
    else:
        xp = backend.namespace(key) if xp is None else backend.get(xp)
        key = backend.put(key, xp)
        _, hi, lo = _key_lanes("bernoulli", key)
        k0, k1 = hi[0], lo[0]
    if p == 1.0 or p == 0.0:
        return xp.full(shape, p == 1.0, dtype=xp.bool)
    words = _threefry_bits(xp, k0, k1, n)
    return xp.reshape(_less_const(words, _threshold(float(p))), shape)


def permutation(key: Key, n: int, xp: ModuleType | None = None) -> Any:
    """A random permutation of ``range(n)`` (int64 on the host; ``jax.random`` for a jax key).

    Args:
        key: a uint32 array of shape ``(2,)``.
        n: the length (a non-negative int).
        xp: the array module to move it to (default: NumPy).

    Returns:
        An integer array holding ``0 .. n-1`` once each.

    Raises:
        TypeError: a bad key or a non-int ``n``.
        ValueError: ``n`` is negative.

    Examples:
        >>> sorted(permutation(key(0), 5).tolist())
        [0, 1, 2, 3, 4]
    """
    if _is_jax_key(key):
        import jax

        return jax.random.permutation(key, n)
    return _move(_generator(key).permutation(_count("permutation", "n", n)), xp)


def _is_jax_key(key: Any) -> bool:
    return not _is_host(key) and backend.is_jax(backend.namespace(key))
