"""Layers: pure ``(init, apply, vjp)`` triples over pytrees of params.

The contract, stated once:

    init(key, in_shape, dtype="float32") -> (out_shape, params)  # per example; host params
    apply(params, x, *, rng=None)        -> y                     # inference, nothing kept
    vjp(params, x, *, rng=None)          -> (y, pullback)         # like jax.vjp
    pullback(dy)                         -> (dparams, dx)         # dparams: params' structure

``rng=None`` means deterministic (evaluation); a key means training randomness (Dropout).
Params are dicts of named arrays (``{"W", "b"}``), tuples for `serial`, ``()`` when a
layer has none. Nothing a caller passed in or got back is ever written to, and a layer's
outputs and gradients never share memory with its inputs, params or ``dy`` (primitives in
`funcnet.ops` may hand back a cotangent they were given: sharing is safe when nothing writes).
``apply`` follows the backend's type promotion (float64 data with float32 params gives float64);
`funcnet.train.predict` and the training step cast the data to the params' dtype first.
"""

from __future__ import annotations

import math
import numbers
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from funcnet import initializers, ops, random
from funcnet._arguments import positive_int
from funcnet.backend import IN_PLACE_MIN_SIZE, is_complex, is_floating, largest_finite, namespace, reduce_sum

__all__ = ["Affine", "Dropout", "Flatten", "Layer", "MatMul", "ReLU", "Sigmoid", "Softmax", "Tanh", "deterministic", "elementwise", "is_builtin", "layer_from_vjp", "serial"]


class Layer(NamedTuple):
    """A layer: three pure functions (see the module docstring) and what it can do.

    Attributes:
        init: ``init(key, in_shape, dtype="float32") -> (out_shape, params)``.
        apply: ``apply(params, x, *, rng=None) -> y``.
        vjp: ``vjp(params, x, *, rng=None) -> (y, pullback)``.
        stochastic: whether ``apply``/``vjp`` may read ``rng``. False lets `serial` and the
            training step skip deriving keys (a few microseconds a step). True by default, so a
            user's layer that draws from ``rng`` gets a key without having to say so.
        skips_input_grad: whether ``pullback(dy, input_grad=False)`` is accepted (it then returns
            ``dx=None``). The first layer's input gradient is never used in training; for Affine it
            is a whole matrix product, so the step asks not to compute it.
        kind: what a built-in layer is (``"affine"``, ``"matmul"``, ``"sigmoid"``, ...), for code
            that specialises on it (the NumPy step plans); None for users' layers.
        sublayers: the layers a combinator is made of (``serial``'s, in order); ``()`` otherwise.

    Examples:
        >>> import funcnet as fn
        >>> layer = fn.Affine(3)
        >>> layer.stochastic, layer.skips_input_grad, layer.kind
        (False, True, 'affine')
        >>> fn.layers.deterministic(fn.Dropout(0.5)).stochastic
        False
    """

    init: Callable[..., tuple[tuple[int, ...], Any]]
    apply: Callable[..., Any]
    vjp: Callable[..., tuple[Any, Callable[..., tuple[Any, Any]]]]
    stochastic: bool = True
    skips_input_grad: bool = False
    kind: str | None = None
    sublayers: tuple[Layer, ...] = ()


# The built-in layers, recognised by their vjp and what they were built to claim: a layer
# _replace'd with another vjp (or other claims) keeps its `kind` but is no longer the built-in,
# and code that specialises on built-ins (the NumPy step plans) must not take it for one.
_BUILTIN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _builtin(layer: Layer) -> Layer:
    _BUILTIN[layer.vjp] = _claims(layer)
    return layer


def _claims(layer: Layer) -> tuple[Any, ...]:
    return layer.kind, layer.stochastic, layer.skips_input_grad, tuple(s.vjp for s in layer.sublayers)


def is_builtin(layer: Layer) -> bool:
    """Whether ``layer`` is a built-in layer as its constructor made it (its ``kind`` can be trusted).

    ``layer._replace(vjp=...)`` keeps the ``kind`` field but not the built-in's behaviour: such a
    layer (and a ``serial`` holding one) is not built-in any more.

    Args:
        layer: any Layer.

    Returns:
        True for an unchanged built-in (``init`` may differ: it plays no part in training).

    Examples:
        >>> from funcnet import layers
        >>> affine = layers.Affine(3)
        >>> layers.is_builtin(affine), layers.is_builtin(affine._replace(vjp=affine.vjp))
        (True, True)
        >>> layers.is_builtin(affine._replace(vjp=lambda params, x, *, rng=None: affine.vjp(params, x)))
        False
    """
    try:
        claims = _BUILTIN.get(layer.vjp)
    except TypeError:  # a vjp that cannot be weakly referenced is no built-in one
        return False
    return claims is not None and claims == _claims(layer) and all(is_builtin(s) for s in layer.sublayers)


def deterministic(layer: Layer) -> Layer:
    """``layer`` declared as one that never reads ``rng`` (a copy; the original is unchanged).

    Args:
        layer: any Layer.

    Returns:
        ``layer._replace(stochastic=False)``.

    Examples:
        >>> from funcnet import layers
        >>> layers.Dropout(0.5).stochastic, layers.deterministic(layers.Dropout(0.5)).stochastic
        (True, False)
    """
    return layer._replace(stochastic=False)


def layer_from_vjp(init: Callable[..., tuple[tuple[int, ...], Any]],
                   vjp: Callable[..., tuple[Any, Callable[..., tuple[Any, Any]]]], *,
                   stochastic: bool = True, skips_input_grad: bool = False) -> Layer:
    """A `Layer` from ``init`` and ``vjp`` alone: ``apply`` is the vjp's output.

    For users' own layers: write the forward pass once, in ``vjp``, with a hand-written pullback.
    The derived ``apply`` builds the pullback closure and drops it (cheap: nothing is computed
    until the pullback is called, only kept alive).

    Args:
        init: ``init(key, in_shape, dtype="float32") -> (out_shape, params)``.
        vjp: ``vjp(params, x, *, rng=None) -> (y, pullback)``, ``pullback(dy) -> (dparams, dx)``.
        stochastic: whether ``vjp`` reads ``rng`` (see `Layer`).
        skips_input_grad: whether the pullback accepts ``input_grad=False``.

    Returns:
        The layer.

    Raises:
        TypeError: ``init`` or ``vjp`` is not callable.

    Examples:
        >>> import numpy as np
        >>> from funcnet import layers
        >>> def init(key, in_shape, dtype="float32"):
        ...     return tuple(in_shape), ()
        >>> def vjp(params, x, *, rng=None):
        ...     return 2 * x, lambda dy: ((), 2 * dy)
        >>> double = layers.layer_from_vjp(init, vjp, stochastic=False)
        >>> double.apply((), np.ones((1, 2)))
        array([[2., 2.]])
    """
    for what, fn in (("init", init), ("vjp", vjp)):
        if not callable(fn):
            raise TypeError(f"layer_from_vjp: {what} must be a function, got {type(fn).__name__}")

    def apply(params, x, *, rng=None):
        return vjp(params, x, rng=rng)[0]

    return Layer(init, apply, vjp, stochastic=bool(stochastic), skips_input_grad=bool(skips_input_grad))


def _check_in_shape(name: str, in_shape: Any, rank: int | None = None) -> tuple[int, ...]:
    try:
        in_shape = tuple(int(d) for d in in_shape)
    except (TypeError, ValueError):
        raise TypeError(f"{name}.init: in_shape must be a tuple of ints, got {in_shape!r}") from None
    if rank is not None and len(in_shape) != rank:
        raise ValueError(
            f"{name}.init: expects per-example input shape of rank {rank} (no batch axis), "
            f"got {in_shape}"
        )
    return in_shape


def _check_width(name: str, x: Any, width: int) -> None:
    shape = getattr(x, "shape", None)
    if shape is None:
        raise TypeError(f"{name}: input must be an array, got {type(x).__name__}")
    if len(shape) != 2 or shape[1] != width:
        raise ValueError(f"{name}: expected input of shape (N, {width}), got {tuple(shape)}")
    if shape[0] == 0:
        raise ValueError(f"{name}: empty batch, input shape {tuple(shape)}")


# --- parametrised layers --------------------------------------------------------------------


def _check_real(name: str, x: Any) -> None:
    if is_complex(x.dtype):
        raise TypeError(f"{name}: input must be real numbers, got dtype {x.dtype}")


_PARAM_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def _check_init_dtype(name: str, dtype: Any) -> None:
    if not is_floating(dtype) or (isinstance(dtype, str | np.dtype | type) and np.dtype(dtype) not in _PARAM_DTYPES):
        raise TypeError(f"{name}.init: params dtype must be a float type (float16/32/64, native byte order), "
                        f"got {dtype}")


def _dense(name: str, out_dim: int, keys: tuple[str, ...]) -> Callable[[Any, Any], tuple[Any, Any, Any]]:
    """The checks of MatMul and Affine: ``check(params, x) -> (xp, W, b or None)``.

    Good input passes one boolean expression on shapes; only when it fails is the input
    examined again to say what is wrong (the layer, the param, both shapes).
    """
    has_b = "b" in keys
    b_shape = (out_dim,)

    def diagnose(params: Any, x: Any) -> None:
        if not isinstance(params, dict):
            raise TypeError(f"{name}: params must be a dict with keys {list(keys)}, got {type(params).__name__}")
        missing = [k for k in keys if k not in params]
        if missing:
            raise ValueError(f"{name}: params {missing} missing (have {sorted(params)})")
        W = params["W"]
        if not hasattr(W, "shape"):
            raise TypeError(f"{name}: params['W'] must be an array, got {type(W).__name__}")
        if len(W.shape) != 2 or W.shape[1] != out_dim:
            raise ValueError(f"{name}: params['W'] should have shape ({W.shape[0]}, {out_dim}), "
                             f"got {tuple(W.shape)}")
        _check_width(name, x, W.shape[0])
        if has_b and not hasattr(params["b"], "shape"):
            raise TypeError(f"{name}: params['b'] must be an array, got {type(params['b']).__name__}")
        b_got = tuple(params["b"].shape) if has_b else b_shape
        if b_got != b_shape:
            raise ValueError(f"{name}: params['b'] should have shape {b_shape}, got {b_got}")
        raise TypeError(f"{name}: params {sorted(params)} and input of type {type(x).__name__} do not fit")

    def check(params: Any, x: Any) -> tuple[Any, Any, Any]:
        try:
            W = params["W"]
            b = params["b"] if has_b else None
            xs, ws = x.shape, W.shape
            ok = (len(xs) == 2 and len(ws) == 2 and xs[1] == ws[0] and ws[1] == out_dim and xs[0] != 0
                  and (b is None or b.shape == b_shape))
        except (TypeError, KeyError, IndexError, AttributeError):
            ok = False
        if not ok:
            diagnose(params, x)
        _check_real(name, x)
        try:
            xp = namespace(x, W)
        except TypeError as err:
            raise TypeError(f"{name}: {err}") from None
        return xp, W, b

    return check


def _check_cotangent(name: str, dy: Any, shape: tuple[int, ...]) -> None:
    if tuple(getattr(dy, "shape", ())) != shape:
        raise ValueError(f"{name}: the pullback's dy should have the output's shape {shape}, "
                         f"got {tuple(getattr(dy, 'shape', ()))}")


def MatMul(out_dim: int, w_init: str | initializers.Initializer = "glorot") -> Layer:
    """``y = x @ W`` (the seed's MatMul node as a layer); params ``{"W"}``.

    Args:
        out_dim: the width of ``y``.
        w_init: the initialiser of ``W``: a name of `funcnet.initializers` (``"glorot"``, the
            default; ``"book"``, the book's ``0.01 * randn``) or a function ``(key, shape, dtype)``.

    Returns:
        The layer (``kind="matmul"``). Its pullback takes ``input_grad=False``.

    Raises:
        ValueError: ``out_dim`` is not a positive int; at call time, input of the wrong shape.

    Examples:
        >>> import numpy as np
        >>> from funcnet import layers, random
        >>> out_shape, params = layers.MatMul(3).init(random.key(0), (2,))
        >>> out_shape, params["W"].shape
        ((3,), (2, 3))
        >>> layers.MatMul(3).apply(params, np.ones((4, 2), np.float32)).shape
        (4, 3)
    """
    name = f"MatMul({out_dim})"
    positive_int(name, "out_dim", out_dim)
    w_init = initializers.get(w_init)
    check = _dense(name, out_dim, ("W",))

    def init(key, in_shape, dtype="float32"):
        (in_dim,) = _check_in_shape(name, in_shape, rank=1)
        _check_init_dtype(name, dtype)
        return (out_dim,), {"W": w_init(key, (in_dim, out_dim), dtype)}

    def apply(params, x, *, rng=None):
        xp, W, _ = check(params, x)
        return xp.matmul(x, W)

    def vjp(params, x, *, rng=None):
        xp, W, _ = check(params, x)
        y = xp.matmul(x, W)
        y_shape = tuple(y.shape)

        def pullback(dy, input_grad=True):
            _check_cotangent(name, dy, y_shape)
            dx, dW = ops.matmul_cotangents(xp, x, W, dy, input_grad)
            return {"W": dW}, dx

        return y, pullback

    return _builtin(Layer(init, apply, vjp, stochastic=False, skips_input_grad=True, kind="matmul"))


def _affine(xp: Any, x: Any, W: Any, b: Any) -> Any:
    y = xp.matmul(x, W)
    if xp is np and y.size >= IN_PLACE_MIN_SIZE and y.dtype == b.dtype:
        return np.add(y, b, out=y)  # y is fresh: adding in place saves an allocation
    return y + b


def Affine(out_dim: int, w_init: str | initializers.Initializer = "glorot",
           b_init: str | initializers.Initializer = "zeros") -> Layer:
    """``y = x @ W + b``; params ``{"W", "b"}``.

    The MatMul node followed by a broadcasting add (a Repeat of ``b`` over the batch), fused:
    ``dW = x.T @ dy``, ``db = sum(dy, axis=0)`` (the Repeat's dual), ``dx = dy @ W.T``.
    Weights default to Glorot normal; ``w_init="book"`` gives the book's ``0.01 * randn``.

    Args:
        out_dim: the width of ``y``.
        w_init: the initialiser of ``W`` (a name of `funcnet.initializers` or a function).
        b_init: the initialiser of ``b`` (zeros by default).

    Returns:
        The layer (``kind="affine"``). Its pullback takes ``input_grad=False``.

    Raises:
        ValueError: ``out_dim`` is not a positive int; at call time, input or params of the wrong
            shape, named with both shapes.

    Examples:
        >>> import numpy as np
        >>> from funcnet import layers, random
        >>> affine = layers.Affine(3)
        >>> _, params = affine.init(random.key(0), (2,))
        >>> y, pullback = affine.vjp(params, np.ones((4, 2), np.float32))
        >>> grads, dx = pullback(np.ones_like(y))
        >>> grads["W"].shape, grads["b"].tolist(), dx.shape
        ((2, 3), [4.0, 4.0, 4.0], (4, 2))
    """
    name = f"Affine({out_dim})"
    positive_int(name, "out_dim", out_dim)
    w_init, b_init = initializers.get(w_init), initializers.get(b_init)
    check = _dense(name, out_dim, ("W", "b"))

    def init(key, in_shape, dtype="float32"):
        (in_dim,) = _check_in_shape(name, in_shape, rank=1)
        _check_init_dtype(name, dtype)
        k_w, k_b = random.split(key)
        return (out_dim,), {"W": w_init(k_w, (in_dim, out_dim), dtype), "b": b_init(k_b, (out_dim,), dtype)}

    def apply(params, x, *, rng=None):
        xp, W, b = check(params, x)
        return _affine(xp, x, W, b)

    def vjp(params, x, *, rng=None):
        xp, W, b = check(params, x)
        y = _affine(xp, x, W, b)
        y_shape = tuple(y.shape)

        def pullback(dy, input_grad=True):
            _check_cotangent(name, dy, y_shape)
            dx, dW = ops.matmul_cotangents(xp, x, W, dy, input_grad)
            return {"W": dW, "b": reduce_sum(xp, dy, axis=0)}, dx  # b's is the Repeat's dual: a sum

        return y, pullback

    return _builtin(Layer(init, apply, vjp, stochastic=False, skips_input_grad=True, kind="affine"))


# --- parameter-free layers ------------------------------------------------------------------


def elementwise(primitive: ops.Primitive, name: str, *, kind: str | None = None) -> Layer:
    """A parameter-free, deterministic layer from a one-argument primitive of `funcnet.ops`.

    Args:
        primitive: an ``(fn, fn_vjp)`` pair such as `funcnet.ops.tanh`.
        name: the layer's name in error messages.
        kind: the built-in kind it is (see `Layer`); leave None for your own.

    Returns:
        The layer (no params).

    Examples:
        >>> import numpy as np
        >>> from funcnet import layers, ops
        >>> layers.elementwise(ops.relu, "MyReLU").apply((), np.array([[-1.0, 2.0]]))
        array([[0., 2.]])
    """
    fn, fn_vjp = primitive

    def check(x):
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise TypeError(f"{name}: input must be an array, got {type(x).__name__}")
        _check_real(name, x)

    def init(key, in_shape, dtype="float32"):
        return _check_in_shape(name, in_shape), ()

    def apply(params, x, *, rng=None):
        check(x)
        return fn(x)

    def vjp(params, x, *, rng=None):
        check(x)
        y, pb = fn_vjp(x)
        shape = tuple(y.shape)

        def pullback(dy):
            _check_cotangent(name, dy, shape)  # a broadcasting dy would give wrong grads upstream
            return (), pb(dy)

        return y, pullback

    return Layer(init, apply, vjp, stochastic=False, kind=kind)


def Sigmoid() -> Layer:
    """The logistic function, overflow-free (see `funcnet.ops.sigmoid`).

    Returns:
        The layer (no params, ``kind="sigmoid"``).

    Examples:
        >>> import numpy as np
        >>> from funcnet import layers
        >>> layers.Sigmoid().apply((), np.array([[0.0, 1000.0]])).tolist()
        [[0.5, 1.0]]
    """
    return _builtin(elementwise(ops.sigmoid, "Sigmoid", kind="sigmoid"))


def ReLU() -> Layer:
    """``max(x, 0)``.

    Returns:
        The layer (no params, ``kind="relu"``).

    Examples:
        >>> import numpy as np
        >>> from funcnet import layers
        >>> layers.ReLU().apply((), np.array([[0.0, 1000.0]])).tolist()
        [[0.0, 1000.0]]
    """
    return _builtin(elementwise(ops.relu, "ReLU", kind="relu"))


def Tanh() -> Layer:
    """``tanh(x)``.

    Returns:
        The layer (no params, ``kind="tanh"``).

    Examples:
        >>> import numpy as np
        >>> from funcnet import layers
        >>> layers.Tanh().apply((), np.array([[0.0, 1000.0]])).tolist()
        [[0.0, 1.0]]
    """
    return _builtin(elementwise(ops.tanh, "Tanh", kind="tanh"))


def Softmax() -> Layer:
    """Softmax over the last axis (for probabilities at inference; train on logits with a loss).

    Returns:
        The layer (no params, ``kind="softmax"``).

    Examples:
        >>> import numpy as np
        >>> from funcnet import layers
        >>> layers.Softmax().apply((), np.log(np.array([[1.0, 3.0]]))).tolist()
        [[0.25, 0.75]]
    """
    return _builtin(elementwise(ops.softmax, "Softmax", kind="softmax"))


def _fresh(x: Any) -> Any:
    return namespace(x).asarray(x, copy=True)


def Dropout(rate: float) -> Layer:
    """Drops each element with probability ``rate`` when given a key; identity when ``rng=None``.

    Inverted dropout: kept elements are scaled by ``1 / (1 - rate)``, so evaluation needs no
    rescaling. The mask is a counter-based hash of ``(rng, element index)`` computed by the input's
    backend, so one key gives the same mask on NumPy, cupy, jax (traced too) and array_api_strict.

    Args:
        rate: the probability of dropping an element, in ``[0, 1)``.

    Returns:
        The layer (no params, ``kind="dropout"``; ``stochastic`` unless ``rate`` is 0).

    Raises:
        ValueError: ``rate`` outside ``[0, 1)``; at call time, a scale ``1 / (1 - rate)`` that the
            input's dtype cannot hold.

    Examples:
        >>> import numpy as np
        >>> from funcnet import layers, random
        >>> drop = layers.Dropout(0.5)
        >>> x = np.ones((2, 4), np.float32)
        >>> drop.apply((), x).tolist() == x.tolist()  # no key: evaluation, the identity
        True
        >>> sorted(set(drop.apply((), x, rng=random.key(0)).reshape(-1).tolist()))  # kept ones doubled
        [0.0, 2.0]
    """
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0.0 <= rate < 1.0:
        raise ValueError(f"Dropout: rate (probability of dropping) must be in [0, 1), got {rate!r}")
    rate = float(rate)
    name = f"Dropout({rate})"
    keep = 1.0 - rate

    def init(key, in_shape, dtype="float32"):
        return _check_in_shape(name, in_shape), ()

    def _scale(x, rng):
        xp = namespace(x)
        if 1.0 / keep > largest_finite(x.dtype):
            raise ValueError(f"{name}: the scale of kept values, 1 / (1 - rate) = {1.0 / keep:.3g}, "
                             f"overflows the input's {x.dtype}")
        mask = random.bernoulli(rng, keep, tuple(x.shape), xp=xp)
        # astype, not where(mask, 1 / keep, 0.0): two scalars in where is not Array API
        return xp.astype(mask, x.dtype) * (1.0 / keep)

    def apply(params, x, *, rng=None):
        if rng is None or rate == 0.0:
            return _fresh(x)
        return x * _scale(x, rng)

    def vjp(params, x, *, rng=None):
        if rng is None or rate == 0.0:
            return _fresh(x), lambda dy: ((), _fresh(dy))
        scale = _scale(x, rng)
        shape = tuple(x.shape)

        def pullback(dy):
            _check_cotangent(name, dy, shape)
            return (), dy * scale

        return x * scale, pullback

    return _builtin(Layer(init, apply, vjp, stochastic=rate > 0.0, kind="dropout"))


def Flatten() -> Layer:
    """``(N, d1, d2, ...) -> (N, d1 * d2 * ...)``.

    Returns:
        The layer (no params, ``kind="flatten"``).

    Examples:
        >>> import numpy as np
        >>> from funcnet import layers, random
        >>> layers.Flatten().init(random.key(0), (2, 3))[0]
        (6,)
        >>> layers.Flatten().apply((), np.zeros((4, 2, 3))).shape
        (4, 6)
    """

    def init(key, in_shape, dtype="float32"):
        in_shape = _check_in_shape("Flatten", in_shape)
        return (math.prod(in_shape),), ()

    def apply(params, x, *, rng=None):
        xp = namespace(x)
        return xp.reshape(_fresh(x), (x.shape[0], -1))

    def vjp(params, x, *, rng=None):
        xp = namespace(x)
        shape = x.shape
        y = apply(params, x)
        y_shape = tuple(y.shape)

        def pullback(dy):
            _check_cotangent("Flatten", dy, y_shape)
            return (), xp.reshape(_fresh(dy), shape)

        return y, pullback

    return _builtin(Layer(init, apply, vjp, stochastic=False, kind="flatten"))


# --- combinators ----------------------------------------------------------------------------


def _at_position(i: int, err: Exception) -> Exception:
    """``err`` with the serial position in front of its message (ValueError/TypeError only: other
    exception types may not take a message alone, so they get a note instead)."""
    if type(err) in (ValueError, TypeError):
        return type(err)(f"serial layer {i}: {err}")
    err.add_note(f"in serial layer {i}")
    return err


def serial(*layers: Layer) -> Layer:
    """Layers applied one after the other; params are a tuple with one entry per layer.

    The forward chain is walked once per call and the pullbacks are kept in a list, so the
    backward pass is one reversed loop; errors name the failing position.

    Args:
        *layers: the layers, first to last.

    Returns:
        The layer (``kind="serial"``, ``sublayers`` the layers): ``stochastic`` if any layer is, and
        skipping the input gradient if the first layer can.

    Raises:
        ValueError: no layers.
        TypeError: an argument that is not a Layer (a constructor not called, say).

    Examples:
        >>> import numpy as np
        >>> from funcnet import layers, random
        >>> net = layers.serial(layers.Affine(4), layers.ReLU(), layers.Affine(3))
        >>> out_shape, params = net.init(random.key(0), (2,))
        >>> out_shape, len(params), params[1]
        ((3,), 3, ())
        >>> net.apply(params, np.ones((5, 2), np.float32)).shape
        (5, 3)
    """
    if not layers:
        raise ValueError("serial: needs at least one layer")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            hint = " (did you pass the constructor instead of calling it?)" if callable(layer) else ""
            raise TypeError(f"serial: argument {i} is not a Layer, got {type(layer).__name__}{hint}")
    n = len(layers)
    inits = [layer.init for layer in layers]
    applies = [layer.apply for layer in layers]
    vjps = [layer.vjp for layer in layers]
    no_rngs = (None,) * n
    stochastic = any(layer.stochastic for layer in layers)
    first_skips = layers[0].skips_input_grad

    def init(key, in_shape, dtype="float32"):
        keys = random.split(key, n)
        shape, params = in_shape, []
        for i, layer_init in enumerate(inits):
            try:
                shape, p = layer_init(keys[i], shape, dtype)
            except (ValueError, TypeError) as err:
                raise _at_position(i, err) from err
            params.append(p)
        return shape, tuple(params)

    def _rngs(rng):
        if rng is None or not stochastic:
            return no_rngs
        keys = random.split(rng, n)
        return tuple(keys[i, ...] for i in range(n))  # Array API indexing: device keys too

    def _check_params(params):
        if not isinstance(params, tuple | list) or len(params) != n:
            got = f"{type(params).__name__} of length {len(params)}" if isinstance(params, tuple | list) \
                else type(params).__name__
            raise ValueError(f"serial: params must be a tuple of {n} entries (one per layer), got {got}")

    def apply(params, x, *, rng=None):
        _check_params(params)
        rngs = _rngs(rng)
        i = 0
        try:
            for i in range(n):
                x = applies[i](params[i], x, rng=rngs[i])
        except (ValueError, TypeError) as err:
            raise _at_position(i, err) from err
        return x

    def vjp(params, x, *, rng=None):
        _check_params(params)
        rngs = _rngs(rng)
        pullbacks = [None] * n
        i = 0
        try:
            for i in range(n):
                x, pullbacks[i] = vjps[i](params[i], x, rng=rngs[i])
        except (ValueError, TypeError) as err:
            raise _at_position(i, err) from err

        def pullback(dy, input_grad=True):
            dparams = [None] * n
            i = n - 1
            try:
                for i in range(n - 1, 0, -1):
                    dparams[i], dy = pullbacks[i](dy)
                i = 0
                if input_grad or not first_skips:
                    dparams[0], dy = pullbacks[0](dy)
                else:
                    dparams[0], dy = pullbacks[0](dy, input_grad=False)
            except (ValueError, TypeError) as err:
                raise _at_position(i, err) from err
            return tuple(dparams), dy

        return x, pullback

    return _builtin(Layer(init, apply, vjp, stochastic=stochastic, skips_input_grad=first_skips, kind="serial",
                          sublayers=tuple(layers)))
