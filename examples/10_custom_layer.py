"""Your own layer and loss: a LayerNorm and a label-smoothed cross-entropy, gradchecked, trained on NumPy and jax.

Both are written with funcnet's public API only, the way the built-ins are: the layer is an
``init`` and a ``vjp`` with a hand-written pullback, made a Layer by ``layers.layer_from_vjp``;
the loss is a ``Loss(value, vjp)``. ``funcnet.gradcheck`` compares both pullbacks with float64
central differences. Then ``serial(Affine, LayerNorm, Sigmoid, Affine)`` trains on the spiral with
the label-smoothed loss, once on NumPy and once on jax (where ``fit`` compiles whole epochs with
``jax.jit``), from the same initial params and the same batches, and the two loss histories are
compared.

    python examples/10_custom_layer.py [--epochs N] [--out DIR] [--show] [--no-progress]
"""

from __future__ import annotations

import numbers

import _common
import numpy as np

from funcnet import backend, gradcheck, layers, ops, optim, plot, random, train
from funcnet.datasets import spiral
from funcnet.losses import Loss

# NumPy and jax both compute in float32 but round differently (XLA fuses and reorders sums and
# has its own exp/log/sqrt), so each step differs by a few units in the last place (float32's
# is 1.2e-7). Over 300 epochs (3000 SGD steps) this model's recorded losses stay within a few
# 1e-7 relative; 1e-5 (about 100 ulps) leaves room for other CPUs, while a real bug in either
# path (a wrong gradient term, a float64 promotion, a different batch) is off by far more.
# The smooth Sigmoid matters: with ReLU at lr 1.0 a pre-activation that rounds to the other
# side of 0 on one backend switches a unit off there, and the runs part after ~40 records.
HISTORY_RTOL = 1e-5


def LayerNorm(eps: float = 1e-5) -> layers.Layer:
    """Normalise each example over its features, then scale and shift: params ``{"gamma", "beta"}``."""
    name = "LayerNorm"

    def init(key, in_shape, dtype="float32"):
        # params are host NumPy arrays by contract (init_state moves them to the backend),
        # so np is right here; gamma = 1 and beta = 0 start as the identity after normalising
        (dim,) = tuple(in_shape)
        return (dim,), {"gamma": np.ones((dim,), dtype), "beta": np.zeros((dim,), dtype)}

    def vjp(params, x, *, rng=None):
        # Every array function comes from the arrays' own module, never from `np.`: under
        # jax.jit, x is a tracer (a placeholder with a shape and no values yet), and np.sqrt(x),
        # like any NumPy ufunc, must first turn it into a NumPy array, which raises
        # TracerArrayConversionError. Outside jit it quietly copies jax or CuPy data to the host
        # and hands back NumPy arrays, so the rest of the step runs on the CPU.
        xp = backend.namespace(x, params["gamma"])
        gamma, beta = params["gamma"], params["beta"]
        if len(x.shape) != 2 or x.shape[1] != gamma.shape[0]:  # shapes only: free, and fine under jit
            raise ValueError(f"{name}: expected input of shape (N, {gamma.shape[0]}), got {tuple(x.shape)}")
        mean = xp.mean(x, axis=1, keepdims=True)
        centred = x - mean
        inv_std = 1.0 / xp.sqrt(xp.mean(centred * centred, axis=1, keepdims=True) + eps)
        x_hat = centred * inv_std
        y = gamma * x_hat + beta

        def pullback(dy):
            d_hat = dy * gamma
            # d x_hat / d x, contracted with d_hat: the mean and the variance depend on every x
            dx = inv_std * (d_hat - xp.mean(d_hat, axis=1, keepdims=True)
                            - x_hat * xp.mean(d_hat * x_hat, axis=1, keepdims=True))
            return {"gamma": xp.sum(dy * x_hat, axis=0), "beta": xp.sum(dy, axis=0)}, dx

        return y, pullback

    # never reads rng (no Dropout-like randomness): stochastic=False spares the step its key
    # derivation; its pullback always computes dx, so it does not claim skips_input_grad
    return layers.layer_from_vjp(init, vjp, stochastic=False)


def label_smoothed_cross_entropy(smoothing: float = 0.1) -> Loss:
    """Cross-entropy against ``(1 - smoothing) * onehot + smoothing / C``; integer labels ``(N,)``."""
    name = "label_smoothed_cross_entropy"
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"{name}: smoothing must be in [0, 1), got {smoothing!r}")
    smoothing = float(smoothing)  # a NumPy float64 would promote float32 logits to float64

    def targets_of(logits, labels):
        if len(logits.shape) != 2 or tuple(labels.shape) != (logits.shape[0],):
            raise ValueError(f"{name}: expected logits (N, C) and labels (N,), got {tuple(logits.shape)} "
                             f"and {tuple(labels.shape)}")
        if not backend.is_integer(labels.dtype):
            raise TypeError(f"{name}: labels must be integers, got {labels.dtype}")
        xp = backend.namespace(logits, labels)
        n, c = logits.shape
        if not backend.is_traced(labels):  # values can be read only outside jit: fit checks them up front
            low, high = int(xp.min(labels)), int(xp.max(labels))
            if low < 0 or high >= c:
                raise ValueError(f"{name}: labels must be in [0, {c}), got values in [{low}, {high}]")
        onehot = xp.astype(labels[:, None] == xp.arange(c), logits.dtype)  # no eye[t]: Array API
        return xp, n, (1.0 - smoothing) * onehot + smoothing / c

    def value(logits, labels):
        xp, n, q = targets_of(logits, labels)
        return -xp.sum(q * ops.log_softmax.apply(logits)) / n

    def vjp(logits, labels):
        xp, n, q = targets_of(logits, labels)
        log_p = ops.log_softmax.apply(logits)
        loss = -xp.sum(q * log_p) / n

        def pullback(dloss=1.0):
            if isinstance(dloss, numbers.Real):
                dloss = float(dloss)  # a NumPy float64 scalar would promote float32 logits
            return (xp.exp(log_p) - q) * (dloss / n)  # rows of q sum to 1: softmax - q

        return loss, pullback

    return Loss(value, vjp)


def check_gradients() -> tuple[float, float]:
    """The layer's and the loss's pullbacks against float64 central differences."""
    rng = np.random.default_rng(0)
    layer = LayerNorm()
    _, params = layer.init(random.key(1), (5,), "float64")
    # non-trivial gamma and beta, so every term of the pullback is exercised
    params = {"gamma": rng.standard_normal(5), "beta": rng.standard_normal(5)}
    layer_error = gradcheck.check_layer(layer, params, rng.standard_normal((4, 5)), tol=1e-6)
    loss_error = gradcheck.check_loss(label_smoothed_cross_entropy(0.1), rng.standard_normal((4, 3)),
                                      np.array([0, 2, 1, 2]), tol=1e-6)
    return layer_error, loss_error


def model(hidden: int = 10) -> layers.Layer:
    return layers.serial(layers.Affine(hidden), LayerNorm(), layers.Sigmoid(), layers.Affine(3))


def train_on(name: str, epochs: int, progress: bool = True) -> dict:
    """Train on backend ``name`` from the same key (the same initial params) and return the history."""
    x, t = spiral.load_data(one_hot=False)
    x = x.astype(np.float32)  # float32 data: jax without x64 has no float64 to receive it
    x, t = backend.put((x, t), name)
    net, loss, optimizer = model(), label_smoothed_cross_entropy(0.1), optim.sgd(1.0)
    step = train.TrainStep(net, loss, optimizer)
    state = train.init_state(net, optimizer, random.key(0), (2,), backend=name)
    state, history = _common.fit(step, state, x, t, epochs=epochs, batch_size=30, eval_interval=10,
                                 progress=progress, label=name)
    return {"losses": history["loss"], **train.evaluate(net, state.params, x, t, loss=loss)}


def main(argv: list[str] | None = None) -> None:
    p = _common.parser(__doc__.splitlines()[0], epochs=300)
    _common.add_progress_option(p)
    args = _common.parse(p, argv)

    layer_error, loss_error = check_gradients()
    print(f"gradcheck LayerNorm: worst relative error {layer_error:.1e} (tolerance 1e-6)")
    print(f"gradcheck label_smoothed_cross_entropy: relative error {loss_error:.1e} (tolerance 1e-6)")

    runs = {"numpy": train_on("numpy", args.epochs, not args.no_progress)}
    reason = backend.why_unavailable("jax")
    if reason is None:
        runs["jax"] = train_on("jax", args.epochs, not args.no_progress)
    else:
        print(f"jax is not usable here ({reason}): trained on numpy only")
    for name, result in runs.items():
        print(f"[{name}] {args.epochs} epochs: final loss {result['losses'][-1]:.4f}, on all data: "
              f"loss {result['loss']:.4f}, accuracy {result['accuracy']:.3f}")

    if "jax" in runs:
        ref, got = np.asarray(runs["numpy"]["losses"]), np.asarray(runs["jax"]["losses"])
        worst = float(np.max(np.abs(got - ref) / np.abs(ref)))
        print(f"loss histories, jax vs numpy: largest relative difference {worst:.1e} "
              f"(tolerance {HISTORY_RTOL:g}: float32 round-off of two libraries)")
        if not worst <= HISTORY_RTOL:
            raise SystemExit(f"jax and numpy disagree: relative difference {worst:.1e} > {HISTORY_RTOL:g}")

    plt = plot.pyplot(args.show)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, result in runs.items():
        steps = np.arange(1, len(result["losses"]) + 1) * 10
        ax.plot(steps, result["losses"], label=name, linestyle="-" if name == "numpy" else "--")
    ax.set_xlabel("iterations")
    ax.set_ylabel("loss (label-smoothed)")
    ax.set_title("Affine - LayerNorm - Sigmoid - Affine on the spiral")
    ax.legend()
    path = args.out / "10_custom_layer_loss.png"
    plot.finish(plt, fig, path, args.show)
    _common.saved(path)


if __name__ == "__main__":
    _common.run(main)
