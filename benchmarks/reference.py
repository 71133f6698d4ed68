"""The reference: the book's object-oriented NumPy code (the seed's chapter 1), kept as written.

Layers cache their inputs in ``forward``, ``backward`` writes gradients in place
(``self.grads[0][...] = dW``) and :class:`SGD` updates the params in place
(``params[i] -= lr * grads[i]``). The only departures from the seed: weights can be passed in
(so the reference starts from funcnet's initial params), :class:`MLP` generalises
:class:`TwoLayerNet` to more hidden layers, and randomness comes from a local generator,
never NumPy's global one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def softmax(x):
    if x.ndim == 2:
        x = x - x.max(axis=1, keepdims=True)
        x = np.exp(x)
        x /= x.sum(axis=1, keepdims=True)
    elif x.ndim == 1:
        x = x - np.max(x)
        x = np.exp(x) / np.sum(np.exp(x))
    return x


def cross_entropy_error(y, t):
    if y.ndim == 1:
        t = t.reshape(1, t.size)
        y = y.reshape(1, y.size)
    if t.size == y.size:  # one-hot targets become labels
        t = t.argmax(axis=1)
    batch_size = y.shape[0]
    return -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size


class Sigmoid:
    def __init__(self):
        self.params, self.grads = [], []
        self.out = None

    def forward(self, x):
        out = 1 / (1 + np.exp(-x))
        self.out = out
        return out

    def backward(self, dout):
        dx = dout * (1.0 - self.out) * self.out
        return dx


class Affine:
    def __init__(self, W, b):
        self.params = [W, b]
        self.grads = [np.zeros_like(W), np.zeros_like(b)]
        self.x = None

    def forward(self, x):
        W, b = self.params
        out = np.matmul(x, W) + b
        self.x = x
        return out

    def backward(self, dout):
        W, b = self.params  # noqa: RUF059 (the book's line)
        dx = np.matmul(dout, W.T)
        dW = np.matmul(self.x.T, dout)
        db = np.sum(dout, axis=0)

        self.grads[0][...] = dW
        self.grads[1][...] = db
        return dx


class SoftmaxWithLoss:
    def __init__(self):
        self.params, self.grads = [], []
        self.y = None  # softmax output
        self.t = None  # labels

    def forward(self, x, t):
        self.t = t
        self.y = softmax(x)
        if self.t.size == self.y.size:  # one-hot targets become labels
            self.t = self.t.argmax(axis=1)
        loss = cross_entropy_error(self.y, self.t)
        return loss

    def backward(self, dout=1):
        batch_size = self.t.shape[0]

        dx = self.y.copy()
        dx[np.arange(batch_size), self.t] -= 1
        dx *= dout
        dx /= batch_size

        return dx


class SGD:
    """W <- W - lr * (dL/dW)."""

    def __init__(self, lr=0.01):
        self.lr = lr

    def update(self, params, grads):
        for i in range(len(params)):
            params[i] -= self.lr * grads[i]


class MLP:
    """The seed's TwoLayerNet with any number of Sigmoid hidden layers; ``weights`` is ``[(W, b), ...]``.

    With one hidden layer and the book's ``0.01 * randn`` weights this is the seed's TwoLayerNet.
    """

    def __init__(self, weights: Sequence[tuple[np.ndarray, np.ndarray]]):
        self.layers = []
        for i, (W, b) in enumerate(weights):
            if i:
                self.layers.append(Sigmoid())
            self.layers.append(Affine(W.copy(), b.copy()))  # own copies: updated in place
        self.loss_layer = SoftmaxWithLoss()

        self.params, self.grads = [], []
        for layer in self.layers:
            self.params += layer.params
            self.grads += layer.grads

    def predict(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def forward(self, x, t):
        score = self.predict(x)
        loss = self.loss_layer.forward(score, t)
        return loss

    def backward(self, dout=1):
        dout = self.loss_layer.backward(dout)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout


def TwoLayerNet(input_size, hidden_size, output_size, rng: np.random.RandomState):
    """The seed's net with the book's initial weights, drawn from ``rng`` (not the global state)."""
    I, H, O = input_size, hidden_size, output_size
    W1 = 0.01 * rng.randn(I, H)
    b1 = np.zeros(H)
    W2 = 0.01 * rng.randn(H, O)
    b2 = np.zeros(O)
    return MLP([(W1, b1), (W2, b2)])


def train_step(model: MLP, optimizer: SGD, batch_x, batch_t):
    """One iteration of the seed's loop: forward, backward, in-place update; returns the loss."""
    loss = model.forward(batch_x, batch_t)
    model.backward()
    optimizer.update(model.params, model.grads)
    return loss


def train(model: MLP, optimizer: SGD, x, t, *, max_epoch: int, batch_size: int,
          permutation: Callable[[int], np.ndarray], eval_interval: int = 10, verbose: bool = False):
    """The seed's training loop; returns ``loss_list`` (the mean loss every ``eval_interval`` iterations).

    ``permutation(epoch)`` gives the epoch's order (the seed calls ``np.random.permutation``).
    Each epoch indexes the original data; the seed re-shuffles the already shuffled arrays,
    which gives batches of the same distribution, but this way the reference can replay
    funcnet's exact order.
    """
    data_size = len(x)
    max_iters = data_size // batch_size
    total_loss = 0
    loss_count = 0
    loss_list = []

    for epoch in range(max_epoch):
        idx = permutation(epoch)
        xs = x[idx]
        ts = t[idx]

        for iters in range(max_iters):
            batch_x = xs[iters * batch_size:(iters + 1) * batch_size]
            batch_t = ts[iters * batch_size:(iters + 1) * batch_size]

            loss = model.forward(batch_x, batch_t)
            model.backward()
            optimizer.update(model.params, model.grads)

            total_loss += loss
            loss_count += 1

            if (iters + 1) % eval_interval == 0:
                avg_loss = total_loss / loss_count
                if verbose:
                    print(f"| epoch {epoch + 1} | iter {iters + 1}/{max_iters} | loss {avg_loss:.2f}")
                loss_list.append(avg_loss)
                total_loss, loss_count = 0, 0
    return loss_list


def local_permutation(seed: int, n: int) -> Callable[[int], np.ndarray]:
    """The seed's ``np.random.permutation(n)`` each epoch, from a private ``RandomState(seed)``."""
    rng = np.random.RandomState(seed)
    return lambda epoch: rng.permutation(n)
