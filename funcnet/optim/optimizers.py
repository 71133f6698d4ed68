"""The built-in optimizers, each a per-leaf rule lifted by `funcnet.optim.from_rule`.

The update rules are the book's (its ``common/optimizer.py``) by default; where the book departs
from the standard (optax, PyTorch) form, a documented argument selects the standard one.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from funcnet._arguments import real_number
from funcnet.backend import IN_PLACE_MIN_SIZE
from funcnet.optim.base import LearningRate, Optimizer, Step, bias_correction
from funcnet.optim.rules import LeafRule, _builtin, from_rule, state_type

__all__ = [
    "SGD",
    "AdaGrad",
    "AdaGradState",
    "Adam",
    "AdamState",
    "Momentum",
    "MomentumState",
    "Nesterov",
    "NesterovState",
    "NesterovTraceState",
    "RMSprop",
    "RMSpropState",
    "SGDState",
    "adagrad",
    "adam",
    "adam_direction",
    "momentum",
    "nesterov",
    "rmsprop",
    "sgd",
]

_BOOK_EPS = 1e-7  # the book's 1e-7 in AdaGrad, RMSprop and Adam

SGDState = state_type("SGDState", (), "`sgd`'s state: the step count alone.")
MomentumState = state_type("MomentumState", ("velocity",),
                           "`momentum`'s state: the book's ``v`` (``momentum * v - lr * g``, the last step).")
NesterovState = state_type("NesterovState", ("velocity",),
                           "``nesterov(form=\"book\")``'s state: the book's ``v`` (``momentum * v - lr * g``).")
NesterovTraceState = state_type("NesterovTraceState", ("trace",),
                                "``nesterov(form=\"standard\")``'s state: optax's trace (``momentum * trace + g``).")
AdaGradState = state_type("AdaGradState", ("sum_of_squares",),
                          "`adagrad`'s state: the book's ``h``, the running sum of squared gradients.")
RMSpropState = state_type("RMSpropState", ("mean_of_squares",),
                          "`rmsprop`'s state: the book's ``h``, a moving average of squared gradients.")
AdamState = state_type("AdamState", ("first_moment", "second_moment"),
                       "`adam`'s state: the book's ``m`` and ``v``, moving averages of ``g`` and ``g * g``.")


def _minus_scaled(p: Any, lr_t: Any, g: Any) -> Any:
    """``p - lr_t * g``; on NumPy into the one fresh buffer ``lr_t * g`` (callers never see it)."""
    if type(g) is not np.ndarray or g.size < IN_PLACE_MIN_SIZE or type(p) is not np.ndarray \
            or g.shape != p.shape or g.dtype != p.dtype:
        return p - lr_t * g
    u = lr_t * g
    return np.subtract(p, u, out=u)


def _form(name: str, form: str) -> str:
    if form not in ("book", "standard"):
        raise ValueError(f"{name}: form must be 'book' or 'standard', got {form!r}")
    return form


def sgd(lr: LearningRate) -> Optimizer:
    """The book's SGD: ``p - lr * g`` (the same as ``optax.sgd(lr)``).

    Args:
        lr: the learning rate, a number or a schedule (`funcnet.schedules`).

    Returns:
        The optimizer; its state is `SGDState`.

    Raises:
        ValueError, TypeError: an lr that is negative, not finite or not a number.

    Examples:
        >>> import numpy as np
        >>> from funcnet import optim
        >>> opt = optim.sgd(0.1)
        >>> p = {"w": np.array([1.0])}
        >>> opt.update(p, {"w": np.array([2.0])}, opt.init(p))[0]["w"].tolist()
        [0.8]
    """

    def rule(step: Step) -> LeafRule:
        lr_t = step.lr
        if step.grads_writable and step.xp is np:  # a fused NumPy step: every leaf of step.dtype, g its own
            lr_0d = np.asarray(lr_t, dtype=step.dtype)  # the value NumPy rounds lr_t to here anyway
            return lambda p, g: (np.subtract(p, np.multiply(g, lr_0d, out=g), out=g),)
        return lambda p, g: (_minus_scaled(p, lr_t, g),)

    return _builtin(from_rule("sgd", rule, lr=lr, state_name="SGDState", check_outputs=False))


def _velocity(mu: float, lr_t: Any, v: Any, g: Any) -> Any:
    """The book's velocity, ``momentum * v - lr * g``: the step Momentum and Nesterov take."""
    return mu * v - lr_t * g


def momentum(lr: LearningRate, momentum: float = 0.9) -> Optimizer:
    """The book's Momentum: ``v = momentum * v - lr * g; p + v``, with ``v`` starting at zero.

    At a constant lr this is ``optax.sgd(lr, momentum=momentum)`` (optax keeps ``-v / lr``);
    under a schedule the book's ``v`` carries each step's own lr, optax's trace does not.

    Args:
        lr: the learning rate, a number or a schedule.
        momentum: the decay of the velocity, in ``[0, 1)``.

    Returns:
        The optimizer; its state is `MomentumState`.

    Raises:
        ValueError: a momentum outside ``[0, 1)`` or a bad lr.

    Examples:
        >>> import numpy as np
        >>> from funcnet import optim
        >>> opt = optim.momentum(0.1, 0.5)
        >>> p = {"w": np.array([1.0])}
        >>> p, s = opt.update(p, {"w": np.array([1.0])}, opt.init(p))
        >>> p, s = opt.update(p, {"w": np.array([1.0])}, s)
        >>> [round(x, 12) for x in p["w"].tolist()], [round(x, 12) for x in s.velocity["w"].tolist()]
        ([0.75], [-0.15])
    """
    name = "momentum"
    mu = real_number(name, "momentum", momentum, 0.0, 1.0)

    def rule(step: Step) -> LeafRule:
        lr_t = step.lr

        def leaf(p, g, v):
            v = _velocity(mu, lr_t, v, g)
            return p + v, v

        return leaf

    return _builtin(from_rule(name, rule, lr=lr, slots={"velocity": 0.0}, state_name="MomentumState", check_outputs=False))


_momentum = momentum  # for the book's Momentum, whose argument of that name hides the function


def nesterov(lr: LearningRate, momentum: float = 0.9, *,
             form: Literal["book", "standard"] = "book") -> Optimizer:
    """Nesterov's accelerated gradient, in the book's form or the standard (optax, PyTorch) one.

    ``form="book"`` (the book's Nesterov, which applies the *new* velocity; state
    `NesterovState`):

        v = momentum * v - lr * g
        p = p + momentum * momentum * v - (1 + momentum) * lr * g

    ``form="standard"``, ``optax.sgd(lr, momentum, nesterov=True)`` and PyTorch's
    ``SGD(nesterov=True)``; state `NesterovTraceState`:

        trace = g + momentum * trace
        p = p - lr * (g + momentum * trace)

    Args:
        lr: the learning rate, a number or a schedule.
        momentum: the decay of the velocity, in ``[0, 1)``.
        form: ``"book"`` or ``"standard"``.

    Returns:
        The optimizer.

    Raises:
        ValueError: an unknown form, a momentum outside ``[0, 1)`` or a bad lr.

    Examples:
        >>> import numpy as np
        >>> from funcnet import optim
        >>> opt = optim.nesterov(0.1, 0.5, form="standard")
        >>> p = {"w": np.array([1.0])}
        >>> opt.update(p, {"w": np.array([1.0])}, opt.init(p))[0]["w"].tolist()
        [0.85]
    """
    name = "nesterov"
    mu = real_number(name, "momentum", momentum, 0.0, 1.0)
    if _form(name, form) == "book":
        mu2 = mu * mu

        def book_rule(step: Step) -> LeafRule:
            lr_t = step.lr
            g_scale = (1.0 + mu) * lr_t

            def leaf(p, g, v):
                v = _velocity(mu, lr_t, v, g)
                return p + mu2 * v - g_scale * g, v

            return leaf

        return _builtin(from_rule(name, book_rule, lr=lr, slots={"velocity": 0.0}, state_name="NesterovState", check_outputs=False))

    def standard_rule(step: Step) -> LeafRule:
        lr_t = step.lr

        def leaf(p, g, trace):
            trace = g + mu * trace
            return p - lr_t * (g + mu * trace), trace

        return leaf

    return _builtin(from_rule(name, standard_rule, lr=lr, slots={"trace": 0.0}, state_name="NesterovTraceState", check_outputs=False))


def _scaled_by_root_rule(accumulate: Any, eps: float, eps_in_sqrt: bool) -> Any:
    """AdaGrad's and RMSprop's one step: ``h = accumulate(h, g); p - lr * g / (sqrt(h) + eps)``."""

    def rule(step: Step) -> LeafRule:
        xp, lr_t = step.xp, step.lr

        def leaf(p, g, h):
            h = accumulate(h, g)
            denominator = xp.sqrt(h + eps) if eps_in_sqrt else xp.sqrt(h) + eps
            return p - lr_t * g / denominator, h

        return leaf

    return rule


def adagrad(lr: LearningRate, eps: float = _BOOK_EPS, *, eps_in_sqrt: bool = False,
            initial_accumulator_value: float = 0.0) -> Optimizer:
    """AdaGrad: ``h = h + g * g; p - lr * g / (sqrt(h) + eps)``, the book's with its defaults.

    ``eps_in_sqrt=True`` divides by ``sqrt(h + eps)`` instead; ``h`` starts at
    ``initial_accumulator_value``. ``optax.adagrad(lr)`` is
    ``adagrad(lr, eps_in_sqrt=True, initial_accumulator_value=0.1)``; PyTorch's
    ``Adagrad(lr)`` is ``adagrad(lr, eps=1e-10)``.

    Args:
        lr: the learning rate, a number or a schedule.
        eps: added to the root (or inside it with ``eps_in_sqrt``).
        eps_in_sqrt: divide by ``sqrt(h + eps)``.
        initial_accumulator_value: ``h``'s start.

    Returns:
        The optimizer; its state is `AdaGradState`.

    Raises:
        ValueError: a negative or non-finite eps, start or lr.

    Examples:
        >>> import numpy as np
        >>> from funcnet import optim
        >>> opt = optim.adagrad(0.1, eps=0.0)
        >>> p = {"w": np.array([1.0])}
        >>> opt.update(p, {"w": np.array([4.0])}, opt.init(p))[0]["w"].tolist()
        [0.9]
    """
    name = "adagrad"
    eps = real_number(name, "eps", eps)
    h0 = real_number(name, "initial_accumulator_value", initial_accumulator_value)
    rule = _scaled_by_root_rule(lambda h, g: h + g * g, eps, eps_in_sqrt)
    return _builtin(from_rule(name, rule, lr=lr, slots={"sum_of_squares": h0}, state_name="AdaGradState", check_outputs=False))


def rmsprop(lr: LearningRate, decay_rate: float = 0.99, eps: float = _BOOK_EPS, *,
            eps_in_sqrt: bool = False) -> Optimizer:
    """RMSprop: ``h = decay_rate * h + (1 - decay_rate) * g * g; p - lr * g / (sqrt(h) + eps)``.

    The book's RMSprop with its defaults, and ``optax.rmsprop(lr, decay_rate, eps,
    eps_in_sqrt=False)``; ``eps_in_sqrt=True`` divides by ``sqrt(h + eps)`` as optax's default does.

    Args:
        lr: the learning rate, a number or a schedule.
        decay_rate: the moving average's decay, in ``[0, 1)``.
        eps: added to the root (or inside it with ``eps_in_sqrt``).
        eps_in_sqrt: divide by ``sqrt(h + eps)``.

    Returns:
        The optimizer; its state is `RMSpropState`.

    Raises:
        ValueError: a decay rate outside ``[0, 1)``, a bad eps or lr.

    Examples:
        >>> import numpy as np
        >>> from funcnet import optim
        >>> opt = optim.rmsprop(0.1, 0.75, eps=0.0)
        >>> p = {"w": np.array([1.0])}
        >>> opt.update(p, {"w": np.array([4.0])}, opt.init(p))[0]["w"].tolist()
        [0.8]
    """
    name = "rmsprop"
    rho = real_number(name, "decay_rate", decay_rate, 0.0, 1.0)
    eps = real_number(name, "eps", eps)
    rule = _scaled_by_root_rule(lambda h, g: rho * h + (1.0 - rho) * g * g, eps, eps_in_sqrt)
    return _builtin(from_rule(name, rule, lr=lr, slots={"mean_of_squares": 0.0}, state_name="RMSpropState", check_outputs=False))


def adam_direction(b1: float, b2: float, eps: float, eps_root: float, step: Step) -> LeafRule:
    """The standard (optax) Adam direction for one leaf: ``leaf(g, m, v) -> (m_hat / (sqrt(v_hat + eps_root) + eps), m, v)``.

    The moving averages in optax's order of operations, ``(1 - b1) * g + b1 * m``; shared by
    ``adam(form="standard")`` and `funcnet.optim.scale_by_adam`.

    Args:
        b1: the first moment's decay.
        b2: the second moment's decay.
        eps: added to the root.
        eps_root: added inside the root.
        step: the `Step` of this update (for the bias corrections).

    Returns:
        The per-leaf function.

    Examples:
        >>> import numpy as np
        >>> from funcnet import optim
        >>> leaf = optim.adam_direction(0.9, 0.999, 0.0, 0.0, optim.Step(np, 0, None, np.float64))
        >>> [x.tolist() for x in leaf(np.array([-2.0]), np.zeros(1), np.zeros(1))]
        [[-1.0], [-0.19999999999999996], [0.0040000000000000036]]
    """
    xp = step.xp
    bc1, bc2 = bias_correction(b1, step), bias_correction(b2, step)

    def leaf(g, m, v):
        m = (1.0 - b1) * g + b1 * m
        v = (1.0 - b2) * (g * g) + b2 * v
        return (m / bc1) / (xp.sqrt(v / bc2 + eps_root) + eps), m, v

    return leaf


def adam(lr: LearningRate = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float | None = None, *,
         eps_root: float = 0.0, form: Literal["book", "standard"] = "book") -> Optimizer:
    """Adam, in the book's form or the standard (optax, PyTorch) one; ``t`` is ``count + 1``.

    Both keep the moving averages ``m`` and ``v`` of ``g`` and ``g * g``. ``form="book"`` (eps
    defaults to the book's 1e-7; the averages as ``m + (1 - beta1) * (g - m)``), the bias
    correction folded into the rate:

        lr_t = lr * sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        p = p - lr_t * m / (sqrt(v + eps_root) + eps)

    ``form="standard"`` (eps defaults to 1e-8), ``optax.adam(lr, beta1, beta2, eps, eps_root)``:

        m_hat = m / (1 - beta1 ** t);  v_hat = v / (1 - beta2 ** t)
        p = p - lr * m_hat / (sqrt(v_hat + eps_root) + eps)

    The two differ only in where eps sits: the book's is ``eps / sqrt(1 - beta2 ** t)`` of the
    standard one, large in the first steps. With ``eps=0`` they are the same.

    Args:
        lr: the learning rate, a number or a schedule.
        beta1: the first moment's decay, in ``[0, 1)``.
        beta2: the second moment's decay, in ``[0, 1)``.
        eps: added to the root; None for the form's default.
        eps_root: added inside the root.
        form: ``"book"`` or ``"standard"``.

    Returns:
        The optimizer; its state is `AdamState`.

    Raises:
        ValueError: an unknown form, a beta outside ``[0, 1)``, a bad eps or lr.

    Examples:
        >>> import numpy as np
        >>> from funcnet import optim
        >>> opt = optim.adam(0.1, eps=0.0)
        >>> p = {"w": np.array([1.0])}
        >>> [round(x, 12) for x in opt.update(p, {"w": np.array([-3.0])}, opt.init(p))[0]["w"].tolist()]
        [1.1]
    """
    name = "adam"
    b1 = real_number(name, "beta1", beta1, 0.0, 1.0)
    b2 = real_number(name, "beta2", beta2, 0.0, 1.0)
    form = _form(name, form)
    eps = real_number(name, "eps", (_BOOK_EPS if form == "book" else 1e-8) if eps is None else eps)
    eps_root = real_number(name, "eps_root", eps_root)
    slots = {"first_moment": 0.0, "second_moment": 0.0}

    if form == "book":

        def book_rule(step: Step) -> LeafRule:
            xp = step.xp
            bc2 = bias_correction(b2, step)
            lr_t = step.lr * (math.sqrt(bc2) if isinstance(bc2, float) else xp.sqrt(bc2)) / bias_correction(b1, step)

            def leaf(p, g, m, v):
                m = m + (1.0 - b1) * (g - m)
                v = v + (1.0 - b2) * (g * g - v)
                return p - lr_t * m / (xp.sqrt(v + eps_root) + eps), m, v

            return leaf

        return _builtin(from_rule(name, book_rule, lr=lr, slots=slots, state_name="AdamState", check_outputs=False))

    def standard_rule(step: Step) -> LeafRule:
        lr_t, direction = step.lr, adam_direction(b1, b2, eps, eps_root, step)

        def leaf(p, g, m, v):
            d, m, v = direction(g, m, v)
            return p - lr_t * d, m, v

        return leaf

    return _builtin(from_rule(name, standard_rule, lr=lr, slots=slots, state_name="AdamState", check_outputs=False))


# --- the book's names, arguments and defaults -----------------------------------------------------


def SGD(lr: float = 0.01) -> Optimizer:
    """The book's ``SGD(lr=0.01)``: `sgd`.

    Args:
        lr: the learning rate.

    Returns:
        ``sgd(lr)``.

    Examples:
        >>> from funcnet import optim
        >>> type(optim.SGD().init({})).__name__
        'SGDState'
    """
    return sgd(lr)


def Momentum(lr: float = 0.01, momentum: float = 0.9) -> Optimizer:
    """The book's ``Momentum(lr=0.01, momentum=0.9)``: `momentum`.

    Args:
        lr: the learning rate.
        momentum: the velocity's decay.

    Returns:
        ``momentum(lr, momentum)``.

    Examples:
        >>> from funcnet import optim
        >>> type(optim.Momentum().init({})).__name__
        'MomentumState'
    """
    return _momentum(lr, momentum)


def Nesterov(lr: float = 0.01, momentum: float = 0.9) -> Optimizer:
    """The book's ``Nesterov(lr=0.01, momentum=0.9)``: ``nesterov(form="book")``.

    Args:
        lr: the learning rate.
        momentum: the velocity's decay.

    Returns:
        ``nesterov(lr, momentum, form="book")``.

    Examples:
        >>> from funcnet import optim
        >>> type(optim.Nesterov().init({})).__name__
        'NesterovState'
    """
    return nesterov(lr, momentum, form="book")


def AdaGrad(lr: float = 0.01) -> Optimizer:
    """The book's ``AdaGrad(lr=0.01)``: `adagrad`.

    Args:
        lr: the learning rate.

    Returns:
        ``adagrad(lr)``.

    Examples:
        >>> from funcnet import optim
        >>> type(optim.AdaGrad().init({})).__name__
        'AdaGradState'
    """
    return adagrad(lr)


def RMSprop(lr: float = 0.01, decay_rate: float = 0.99) -> Optimizer:
    """The book's ``RMSprop(lr=0.01, decay_rate=0.99)``: `rmsprop`.

    Args:
        lr: the learning rate.
        decay_rate: the moving average's decay.

    Returns:
        ``rmsprop(lr, decay_rate)``.

    Examples:
        >>> from funcnet import optim
        >>> type(optim.RMSprop().init({})).__name__
        'RMSpropState'
    """
    return rmsprop(lr, decay_rate)


def Adam(lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999) -> Optimizer:
    """The book's ``Adam(lr=0.001, beta1=0.9, beta2=0.999)``: ``adam(form="book")``.

    Args:
        lr: the learning rate.
        beta1: the first moment's decay.
        beta2: the second moment's decay.

    Returns:
        ``adam(lr, beta1, beta2, form="book")``.

    Examples:
        >>> from funcnet import optim
        >>> type(optim.Adam().init({})).__name__
        'AdamState'
    """
    return adam(lr, beta1, beta2, form="book")
