"""Seed 1-3, learning: losses, the chain rule, computational-graph nodes and the layers' backward.

* the losses of the seed (MSE, binary and categorical cross-entropy) on a small batch;
* the chain rule on ``z = (x + y)^2``: ``dz/dx = 2 (x + y)``, with the add and square nodes;
* the add / multiply / branch / repeat / sum / matmul nodes of :mod:`funcnet.ops`, each vjp
  checked against float64 central differences (``funcnet.gradcheck.check_primitive``);
* the backward passes of Sigmoid, Affine and SoftmaxWithLoss, compared with the seed's code.

The figure shows the cross-entropy and squared error of one example and every gradient
check's relative error against the tolerance.

    python examples/03_losses_and_graphs.py [--out DIR] [--show]
"""

from __future__ import annotations

import _common
import numpy as np

from funcnet import (
    Affine,
    Sigmoid,
    SoftmaxWithLoss,
    gradcheck,
    mean_squared_error,
    ops,
    random,
    sigmoid_binary_cross_entropy,
)

TOL = 1e-6


def losses() -> None:
    print("== 1. loss functions ==")
    # two examples, three classes; the first is right (class 2), the second wrong (class 0)
    y = np.array([[0.1, 0.05, 0.85], [0.3, 0.6, 0.1]])
    t = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    print("y (predicted probabilities) =", y.tolist())
    print("t (one-hot targets)         =", t.tolist())
    mse = mean_squared_error.value(y, t)
    print(f"MSE = mean((y - t)^2)                         = {float(mse):.4f}")
    assert np.isclose(mse, np.mean((y - t) ** 2))
    ce = -np.sum(t * np.log(y)) / len(y)
    print(f"cross-entropy -sum(t log y) / N               = {ce:.4f}")
    logits = np.log(y)  # softmax(log y) = y: the same cross-entropy from logits
    sce = SoftmaxWithLoss.value(logits, t)
    print(f"SoftmaxWithLoss on logits log(y) (one-hot t) = {float(sce):.4f}")
    labels = np.array([2, 0])
    print(f"SoftmaxWithLoss with integer labels {labels.tolist()}    = "
          f"{float(SoftmaxWithLoss.value(logits, labels)):.4f}")
    assert np.isclose(sce, ce)
    # the seed's binary form: -mean(t log y + (1 - t) log(1 - y)), on logits through the sigmoid
    z = np.array([2.0, -1.0, 0.5])
    tb = np.array([1.0, 0.0, 1.0])
    p = 1.0 / (1.0 + np.exp(-z))
    bce = -np.mean(tb * np.log(p) + (1.0 - tb) * np.log(1.0 - p))
    print(f"binary cross-entropy (sigmoid of {z.tolist()}, t {tb.tolist()}) = "
          f"{float(sigmoid_binary_cross_entropy.value(z, tb)):.4f} (formula: {bce:.4f})")
    assert np.isclose(sigmoid_binary_cross_entropy.value(z, tb), bce)


def chain_rule() -> None:
    print("\n== 2. the chain rule: t = x + y, z = t^2 ==")
    x, y = np.float64(1.5), np.float64(-0.25)
    t, add_pullback = ops.add.vjp(x, y)
    z, square_pullback = ops.square.vjp(t)
    dz_dt = square_pullback(1.0)  # dz/dt = 2t
    dz_dx, dz_dy = add_pullback(dz_dt)  # dt/dx = dt/dy = 1
    print(f"x = {x}, y = {y}: t = {t}, z = {z}")
    print(f"dz/dt = 2t = {dz_dt};  dz/dx = dz/dt * dt/dx = {dz_dx};  2(x + y) = {2 * (x + y)}")
    assert dz_dx == dz_dy == 2 * (x + y)


def nodes(key) -> dict[str, float]:
    print("\n== 3. graph nodes and their backward rules (float64 gradient checks) ==")
    k = random.split(key, 6)
    N, D, H = 4, 3, 5
    x = random.normal(k[0], (N, D), "float64")
    y = random.normal(k[1], (N, D), "float64")
    b = random.normal(k[2], (D,), "float64")
    W = random.normal(k[3], (D, H), "float64")
    checks = [
        ("add", "z = x + y: dz flows unchanged to x and y", ops.add, (x, y), {}),
        ("add (broadcast)", "z = x + b, b (D,): db = sum(dz, axis=0)", ops.add, (x, b), {}),
        ("multiply", "z = x * y: dx = dz * y, dy = dz * x", ops.multiply, (x, y), {}),
        ("branch", "x used 3 times: dx = dy1 + dy2 + dy3", ops.branch, (x,), {"n": 3}),
        ("repeat", "x (1, D) repeated N times: dx = sum(dy, axis=0)", ops.repeat, (b[None, :],), {"n": N}),
        ("sum", "y = sum(x, axis=0): dx = dy repeated N times", ops.sum, (x,), {"axis": 0}),
        ("matmul", "y = x @ W: dx = dy @ W.T (N,D), dW = x.T @ dy (D,H)", ops.matmul, (x, W), {}),
    ]
    errors = {}
    for name, rule, primitive, args, static in checks:
        err = gradcheck.check_primitive(primitive, *args, tol=TOL, **static)
        errors[name] = err
        print(f"{name:16s} {rule:55s} relative error {err:.1e}")
    return errors


def layers_backward(key) -> dict[str, float]:
    print("\n== 4. backward of Sigmoid, Affine and SoftmaxWithLoss, as in the seed ==")
    k = random.split(key, 4)
    N = 5
    x = random.normal(k[0], (N, 3), "float64")
    dout = random.normal(k[1], (N, 3), "float64")
    errors = {}

    sigmoid = Sigmoid()
    out, pullback = sigmoid.vjp((), x)
    _, dx = pullback(dout)
    seed_dx = dout * (1.0 - out) * out  # the seed: dx = dout * (1.0 - self.out) * self.out
    assert np.allclose(dx, seed_dx, rtol=1e-14, atol=0)
    print("Sigmoid: dx equals the seed's dout * (1 - out) * out")
    errors["Sigmoid"] = gradcheck.check_layer(sigmoid, (), x, tol=TOL)

    affine = Affine(4)
    _, params = affine.init(k[2], (3,), "float64")
    W = params["W"]
    out, pullback = affine.vjp(params, x)
    dy = random.normal(k[3], out.shape, "float64")
    grads, dx = pullback(dy)
    same = (np.allclose(dx, np.matmul(dy, W.T)) and np.allclose(grads["W"], np.matmul(x.T, dy))
            and np.allclose(grads["b"], np.sum(dy, axis=0)))
    assert same
    print("Affine: dx = dout @ W.T, dW = x.T @ dout, db = sum(dout, axis=0), as in the seed")
    print("        (the gradients are returned as a new dict, never written into self.grads[...])")
    errors["Affine"] = gradcheck.check_layer(affine, params, x, tol=TOL)

    scores = x
    t = np.array([0, 2, 1, 1, 0])
    loss, pullback = SoftmaxWithLoss.vjp(scores, t)
    dscores = pullback(1.0)
    y = np.exp(scores) / np.sum(np.exp(scores), axis=1, keepdims=True)
    seed_dx = (y - np.eye(3)[t]) / N  # the seed: dx = y.copy(); dx[arange(N), t] -= 1; dx /= N
    assert np.allclose(dscores, seed_dx)
    print(f"SoftmaxWithLoss: loss {float(loss):.4f}, dx equals the seed's (y - onehot(t)) / N")
    errors["SoftmaxWithLoss"] = gradcheck.check_loss(SoftmaxWithLoss, scores, t, tol=TOL)
    for name, err in errors.items():
        print(f"{name:16s} gradient check relative error {err:.1e}")
    return errors


def draw(errors: dict[str, float], path, show: bool) -> None:
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    p = np.linspace(0.005, 1.0, 200)
    left.plot(p, -np.log(p), label="cross-entropy  -log p")
    left.plot(p, (1.0 - p) ** 2, label="squared error  (1 - p)$^2$")
    left.set_xlabel("predicted probability p of the true class")
    left.set_ylabel("loss of one example")
    left.set_ylim(0.0, 5.0)
    left.set_title("losses")
    left.legend()
    left.grid(alpha=0.3)

    names = list(errors)
    values = [max(errors[n], 1e-14) for n in names]  # an exact 0 is drawn at the floor
    right.barh(names, values, color="tab:green")
    right.axvline(TOL, color="tab:red", linestyle="--", label=f"tolerance {TOL:g}")
    right.set_xscale("log")
    right.set_xlim(1e-14, 1e-3)
    right.invert_yaxis()
    right.set_xlabel("relative error of the vjp vs central differences")
    right.set_title("gradient checks (float64)")
    right.legend(loc="lower right")
    _common.save_figure(fig, path, show)


def main(argv: list[str] | None = None) -> None:
    args = _common.parse(_common.parser(__doc__.splitlines()[0]), argv)
    k_nodes, k_layers = random.split(random.key(3))
    losses()
    chain_rule()
    errors = nodes(k_nodes)
    errors.update(layers_backward(k_layers))
    print(f"\nall {len(errors)} gradient checks pass (worst {max(errors.values()):.1e} <= {TOL:g})\n")
    draw(errors, args.out / "03_losses_and_gradients.png", args.show)


if __name__ == "__main__":
    _common.run(main)
