"""Gradient checking: a vjp against float64 central differences.

Public, so users check their own layers and losses the way funcnet checks its own:

    worst = check_layer(layer, params, x)        # raises GradientCheckError when a leaf is off

The error of a leaf is ``||numeric - analytic|| / (||numeric|| + ||analytic||)`` (0 when both
are zero), so tiny entries do not turn round-off into failures while a vjp that is 1% off fails.

The cotangent fed to the pullback is drawn from ``default_rng(seed)``; choose ``seed`` when
that draw might be special for your layer (equal to your own input, say).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from funcnet import tree
from funcnet._arguments import real_number
from funcnet.backend import to_numpy

__all__ = ["GradientCheckError", "check_layer", "check_loss", "check_primitive", "check_vjp", "relative_error"]


class GradientCheckError(AssertionError):
    """A vjp disagrees with central differences; the message names the leaf.

    An ``AssertionError``, so a failed check inside a test reads as a failed assertion.

    Examples:
        >>> raise GradientCheckError("gradient check failed at x: relative error 1 > 1e-06")
        Traceback (most recent call last):
        ...
        funcnet.gradcheck.GradientCheckError: gradient check failed at x: relative error 1 > 1e-06
    """


def _as_float64(t: Any) -> Any:
    def cast(x: Any) -> Any:
        x = np.asarray(x)
        return x.astype(np.float64) if x.dtype.kind == "f" else x

    return tree.map(cast, to_numpy(t))


def _as_differentiable(name: str, x: Any) -> Any:
    """An array input that is checked: integer or bool values become float64.

    Only floating leaves are checked, so an integer input would be skipped and any vjp, a
    sign-flipped or a zero one, would pass with "worst error 0".
    """
    def cast(leaf: Any) -> Any:
        leaf = np.asarray(leaf)
        if leaf.dtype.kind in "iub":
            return leaf.astype(np.float64)
        if leaf.dtype.kind != "f":
            raise TypeError(f"gradcheck: {name} must be real numbers, got dtype {leaf.dtype}")
        return leaf

    return tree.map(cast, to_numpy(x))


def _inner(a: Any, b: Any) -> float:
    return float(sum(np.sum(np.asarray(x, np.float64) * y) for x, y in zip(tree.leaves(a), tree.leaves(b), strict=True)))


def relative_error(numeric: Any, analytic: Any) -> float:
    """``||numeric - analytic|| / (||numeric|| + ||analytic||)``, 0 when both are zero.

    Args:
        numeric: the central-difference gradient.
        analytic: the vjp's gradient, of the same shape.

    Returns:
        A float in ``[0, 1]`` (1: one side zero, or opposite signs), NaN when either has NaN.

    Raises:
        GradientCheckError: the shapes differ.

    Examples:
        >>> import numpy as np
        >>> relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.0]))
        0.0
        >>> relative_error(np.array([1.0, 2.0]), -np.array([1.0, 2.0]))
        1.0
    """
    numeric, analytic = np.asarray(numeric, np.float64), np.asarray(analytic, np.float64)
    if numeric.shape != analytic.shape:
        raise GradientCheckError(f"gradient shape {analytic.shape} != expected {numeric.shape}")
    denom = np.linalg.norm(numeric) + np.linalg.norm(analytic)
    return 0.0 if denom == 0.0 else float(np.linalg.norm(numeric - analytic) / denom)


def check_vjp(fn: Callable[..., Any], vjp_fn: Callable[..., Any], args: tuple[Any, ...], *,
              names: tuple[str, ...] | None = None, eps: float = 1e-6, tol: float = 1e-6,
              seed: int = 0, atol: float = 0.0) -> dict[str, float]:
    """Compare ``vjp_fn(*args)``'s pullback with central differences of ``fn(*args)``.

    ``pullback(dy)`` must return one cotangent per argument (a tuple, or the cotangent itself
    when there is one argument). Only floating leaves are checked (integer leaves such as
    labels are passed through unchanged); floating leaves are checked in float64.

    Args:
        fn: ``fn(*args) -> out``, any pytree of arrays.
        vjp_fn: ``vjp_fn(*args) -> (out, pullback)``.
        args: the arguments, pytrees of arrays; never written to.
        names: a name per argument for the messages (default ``arg0``, ``arg1``, ...).
        eps: the central-difference step.
        tol: the largest relative error that passes.
        seed: the seed of the random normal cotangent ``dy`` fed to the pullback: every
            output leaf in order gets ``default_rng(seed).standard_normal(shape)`` draws.
        atol: an absolute allowance per entry, for gradients that central differences cannot
            resolve. ``fn``'s round-off, about ``u * sum|f * dy|`` (``u`` the float64 epsilon),
            becomes that divided by ``eps`` in every numeric entry; where the true gradient is
            no larger, its relative error is noise. A leaf passes when
            ``||numeric - analytic|| <= tol (||numeric|| + ||analytic||) + atol sqrt(size)``;
            the default 0 is the relative test alone.

    Returns:
        The relative error of every checked leaf, by path (``"arg0"``, ``"params/W"``, ...).

    Raises:
        GradientCheckError: naming the worst leaf when its error is above ``tol`` or NaN, a
            missing gradient, or a gradient of the wrong shape or number of leaves.

    Examples:
        >>> import numpy as np
        >>> x = np.array([1.0, 2.0])
        >>> check_vjp(lambda x: x * x, lambda x: (x * x, lambda dy: 2 * x * dy), (x,), names=("x",))
        {'x': ...}
        >>> check_vjp(lambda x: x * x, lambda x: (x * x, lambda dy: -2 * x * dy), (x,), names=("x",))
        Traceback (most recent call last):
        ...
        funcnet.gradcheck.GradientCheckError: gradient check failed at x: relative error 1 > 1e-06
    """
    real_number("gradcheck", "eps", eps, open_low=True)  # 0 would divide by zero, a negative flip signs
    args = tuple(_as_float64(a) for a in args)
    names = names or tuple(f"arg{i}" for i in range(len(args)))
    y, pullback = vjp_fn(*args)
    y = _as_float64(y)
    rng = np.random.default_rng(seed)
    dy = tree.map(lambda v: rng.standard_normal(np.shape(v)), y)
    grads = pullback(tree.unflatten(tree.structure(y), tree.leaves(dy)))
    if len(args) == 1:
        grads = (grads,)
    grads = tuple(_as_float64(g) for g in grads)

    errors: dict[str, float] = {}
    failed: list[str] = []
    for i, arg in enumerate(args):
        flat, spec = tree.flatten(arg)
        grad_leaves = tree.leaves(grads[i]) if tree.leaves(grads[i]) else [None] * len(flat)
        if len(grad_leaves) != len(flat):
            raise GradientCheckError(f"{names[i]}: pullback returned {len(grad_leaves)} leaves, expected {len(flat)}")
        for j, (path, leaf) in enumerate(zip(tree.paths(arg), flat, strict=True)):
            if leaf.dtype.kind != "f":
                continue
            # a bare array argument has the root path "<root>": name it by the argument alone
            label = names[i] if path == tree.path_str(()) else f"{names[i]}/{path}"
            numeric = np.zeros(leaf.shape)
            work = leaf.copy()  # a private buffer: the only array this module ever writes to
            view = work.reshape(-1)
            for k in range(view.size):
                original = view[k]
                outs = []
                for delta in (eps, -eps):
                    view[k] = original + delta
                    new_flat = [*flat[:j], work, *flat[j + 1 :]]
                    new_args = (*args[:i], tree.unflatten(spec, new_flat), *args[i + 1 :])
                    outs.append(_inner(_as_float64(fn(*new_args)), dy))
                view[k] = original
                numeric.reshape(-1)[k] = (outs[0] - outs[1]) / (2 * eps)
            analytic = grad_leaves[j]
            if analytic is None:
                raise GradientCheckError(f"{label}: pullback returned no gradient")
            errors[label] = relative_error(numeric, analytic)
            # ||n - a|| <= tol (||n|| + ||a||) + atol sqrt(size), written so that NaN fails;
            # with atol = 0 it is exactly "relative error <= tol"
            difference = np.linalg.norm(numeric - np.asarray(analytic, np.float64))
            bound = tol * (np.linalg.norm(numeric) + np.linalg.norm(analytic)) + atol * np.sqrt(numeric.size)
            if not difference <= bound:
                failed.append(label)
    if failed:
        # NaN compares False with everything, so max() would pass over it: rank it above all
        worst = max(failed, key=lambda k: np.inf if np.isnan(errors[k]) else errors[k])
        within = f" (+ atol {atol:g})" if atol else ""
        raise GradientCheckError(
            f"gradient check failed at {worst}: relative error {errors[worst]:.3g} > {tol:g}{within}"
        )
    return errors


def check_layer(layer: Any, params: Any, x: Any, *, rng: Any = None, eps: float = 1e-6,
                tol: float = 1e-6, seed: int = 0, atol: float = 0.0) -> float:
    """Check a layer's vjp (params and input) in float64; returns the worst relative error.

    Args:
        layer: a layer (``apply`` and ``vjp`` are used).
        params: its params, any pytree of arrays.
        x: an input batch; integer or bool inputs are checked as float64 (the gradient with
            respect to an integer input is still defined by the layer's formula).
        rng: the key handed to ``apply`` and ``vjp`` (a stochastic layer sees the same one in
            every evaluation), or None.
        eps: the central-difference step.
        tol: the largest relative error that passes.
        seed: the seed of the random cotangent fed to the pullback (default 0).
        atol: an absolute allowance per entry (see `check_vjp`), default 0.

    Returns:
        The worst relative error over the params' leaves and ``x``.

    Raises:
        GradientCheckError: naming the worst leaf (``params/W``, ``x``) above ``tol``.
        TypeError: an input that is not real (complex, strings).

    Examples:
        >>> import numpy as np
        >>> from funcnet import layers, random
        >>> layer = layers.Affine(2)
        >>> _, params = layer.init(random.key(0), (3,), "float64")
        >>> check_layer(layer, params, np.ones((4, 3))) < 1e-6
        True
    """
    x = _as_differentiable("x", x)

    def fn(p, x_):
        return layer.apply(p, x_, rng=rng)

    def vjp(p, x_):
        return layer.vjp(p, x_, rng=rng)

    errors = check_vjp(fn, vjp, (params, x), names=("params", "x"), eps=eps, tol=tol, seed=seed, atol=atol)
    return max(errors.values(), default=0.0)


def check_loss(loss: Any, logits: Any, targets: Any, *, eps: float = 1e-6, tol: float = 1e-6,
               seed: int = 0, atol: float = 0.0) -> float:
    """Check a loss's vjp with respect to the logits in float64; returns the relative error.

    Args:
        loss: a `funcnet.losses.Loss`.
        logits: the logits (floating); checked in float64.
        targets: the targets; integer labels stay integer, floating ones become float64.
        eps: the central-difference step.
        tol: the largest relative error that passes.
        seed: the seed of the random cotangent fed to the pullback.
        atol: an absolute allowance per entry (see `check_vjp`), default 0.

    Returns:
        The relative error of the logits' gradient.

    Raises:
        GradientCheckError: the error is above ``tol`` or NaN.

    Examples:
        >>> import numpy as np
        >>> from funcnet.losses import softmax_cross_entropy
        >>> check_loss(softmax_cross_entropy, np.array([[1.0, 2.0, 0.5]]), np.array([1])) < 1e-6
        True
    """
    targets = _as_float64(targets) if np.asarray(to_numpy(targets)).dtype.kind == "f" else to_numpy(targets)

    def fn(z):
        return loss.value(z, targets)

    def vjp(z):
        value, pullback = loss.vjp(z, targets)
        return value, lambda d: pullback(d)

    errors = check_vjp(fn, vjp, (logits,), names=("logits",), eps=eps, tol=tol, seed=seed, atol=atol)
    return max(errors.values(), default=0.0)


def check_primitive(primitive: Any, *args: Any, eps: float = 1e-6, tol: float = 1e-6,
                    seed: int = 0, atol: float = 0.0, **kwargs: Any) -> float:
    """Check an `funcnet.ops.Primitive` over its array arguments; extra kwargs are static.

    Args:
        primitive: the primitive.
        *args: its array arguments; integer or bool ones are checked as float64.
        eps: the central-difference step.
        tol: the largest relative error that passes.
        seed: the seed of the random cotangent fed to the pullback.
        atol: an absolute allowance per entry (see `check_vjp`), default 0.
        **kwargs: static arguments (``axis``, ``n``), passed to ``apply`` and ``vjp``.

    Returns:
        The worst relative error over the array arguments.

    Raises:
        GradientCheckError: naming the argument (``arg0``, ...) whose error is above ``tol``.
        TypeError: an argument that is not a real array.

    Examples:
        >>> import numpy as np
        >>> from funcnet import ops
        >>> check_primitive(ops.sum, np.ones((2, 3)), axis=1) < 1e-6
        True
    """
    args = tuple(_as_differentiable(f"arg{i}", a) for i, a in enumerate(args))
    errors = check_vjp(lambda *a: primitive.apply(*a, **kwargs), lambda *a: primitive.vjp(*a, **kwargs),
                       args, eps=eps, tol=tol, seed=seed, atol=atol)
    return max(errors.values(), default=0.0)
