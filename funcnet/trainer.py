"""``Trainer``: the book's three lines, as a thin imperative shell over the pure core.

::

    trainer = Trainer(model, optimizer)
    trainer.fit(x, t, max_epoch, batch_size, eval_interval=10)
    trainer.plot()

It only keeps the last :class:`~funcnet.train.TrainState` and the loss list; every step it
takes is :func:`funcnet.train.make_train_step` and :func:`funcnet.train.fit`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from funcnet import checkpoint, random, train
from funcnet.layers import Layer
from funcnet.losses import Loss, softmax_cross_entropy


class Trainer:
    """Fits ``model`` with ``optimizer`` on ``loss``; params are drawn from ``seed`` at the first fit."""

    def __init__(self, model: Layer, optimizer: Any, loss: Loss = softmax_cross_entropy, *, seed: int = 0,
                 dtype: Any = "float32", backend: Any = None):
        self.model, self.optimizer, self.loss = model, optimizer, loss
        self.seed, self.dtype, self.backend = seed, dtype, backend
        self.state: train.TrainState | None = None
        self.loss_list: list[float] = []
        self.eval_interval: int | None = None
        self.current_epoch = 0
        self._steps: dict[Any, Any] = {}

    def _step(self, max_grad: float | None) -> Any:
        if max_grad not in self._steps:
            from funcnet import optim

            opt = self.optimizer if max_grad is None else optim.with_clipping(self.optimizer, max_grad)
            self._steps[max_grad] = train.make_train_step(self.model, self.loss, opt)
        return self._steps[max_grad]

    def init(self, in_shape: tuple[int, ...]) -> train.TrainState:
        """Draw fresh params for inputs of per-example shape ``in_shape``."""
        self.state = train.init_state(self.model, self.optimizer, random.key(self.seed), in_shape,
                                      dtype=self.dtype, backend=self.backend)
        return self.state

    def fit(self, x: Any, t: Any, max_epoch: int = 10, batch_size: int = 32, max_grad: float | None = None,
            eval_interval: int = 20, *, progress: bool | None = None, log: bool = True) -> Trainer:
        """Train ``max_epoch`` more epochs (the book's signature); prints the book's log line."""
        if self.state is None:
            self.init(tuple(x.shape[1:]))
        self.eval_interval = eval_interval
        state, history = train.fit(self._step(max_grad), self.state, x, t, epochs=max_epoch,
                                   batch_size=batch_size, eval_interval=eval_interval,
                                   progress=progress, log=log)
        self.state = state
        self.loss_list.extend(history["loss"])
        self.current_epoch = int(state.step) // (x.shape[0] // batch_size)
        return self

    @property
    def params(self) -> Any:
        """The current params (None before the first fit)."""
        return None if self.state is None else self.state.params

    def predict(self, x: Any, batch_size: int | None = None) -> Any:
        """The model's outputs (logits) for ``x``."""
        return train.predict(self.model, self.params, x, batch_size=batch_size)

    def evaluate(self, x: Any, t: Any) -> dict[str, float]:
        """Loss and accuracy on ``(x, t)``."""
        return train.evaluate(self.model, self.params, x, t, loss=self.loss)

    def plot(self, ylim: tuple[float, float] | None = None, path: str | Path | None = None,
             show: bool | None = None) -> Any:
        """The loss curve, shown in a window where there is a display, else saved as a PNG.

        Without a display and without ``path`` it goes to ``out/trainer_loss.png``.
        """
        from funcnet import plot

        if show is None:
            show = path is None and _has_display()
        if not show and path is None:
            path = Path("out") / "trainer_loss.png"
            print(f"no display: loss curve saved to {path}")
        return plot.loss_curve(self.loss_list, eval_interval=self.eval_interval or 1, ylim=ylim,
                               path=path, show=show)

    def save(self, path: str | Path, **kwargs: Any) -> None:
        """Save the whole training state (params, optimizer state, key, step) atomically."""
        checkpoint.save(path, self.state, **kwargs)

    def load(self, path: str | Path, in_shape: tuple[int, ...]) -> train.TrainState:
        """Restore a state saved by :meth:`save` (``in_shape`` builds the template)."""
        like = self.state if self.state is not None else self.init(in_shape)
        self.state = checkpoint.load(path, like=like)
        return self.state


def _has_display() -> bool:
    import os

    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


__all__ = ["Trainer"]
