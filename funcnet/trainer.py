"""``Trainer``: the book's three lines, as a thin imperative shell over the pure core.

:

    trainer = Trainer(model, optimizer)
    trainer.fit(x, t, max_epoch, batch_size, eval_interval=10)
    trainer.plot()

It keeps the last `TrainState` and the loss list; every step it takes is
a `TrainStep` run by `funcnet.train.fit`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from funcnet import checkpoint, random, train
from funcnet.layers import Layer
from funcnet.losses import Loss, softmax_cross_entropy
from funcnet.train.state import check_parts

__all__ = ["Trainer"]

_IN_SHAPE, _LOSSES, _EVAL_INTERVAL = "trainer.in_shape", "trainer.loss_list", "trainer.eval_interval"


class Trainer:
    """Fits ``model`` with ``optimizer`` on ``loss``; params are drawn from ``seed`` at the first fit.

    Args:
        model: the Layer to train.
        optimizer: an Optimizer (``optim.sgd(1.0)``, or the book's ``SGD(lr=1.0)``).
        loss: the Loss (the book's SoftmaxWithLoss by default).
        seed: the seed of the params and the shuffles.
        dtype: the params' dtype.
        backend: where the params live (None: NumPy).

    Raises:
        TypeError: a constructor was passed instead of a model or optimizer, or they are swapped.

    Examples:
        >>> import funcnet as fn
        >>> x, t = fn.datasets.spiral.load_data()
        >>> trainer = fn.Trainer(fn.TwoLayerNet(2, 10, 3), fn.optim.sgd(1.0))
        >>> trainer.fit(x, t, max_epoch=2, batch_size=30, eval_interval=10, log=False).current_epoch
        2
    """

    def __init__(self, model: Layer, optimizer: Any, loss: Loss = softmax_cross_entropy, *, seed: int = 0,
                 dtype: Any = "float32", backend: Any = None):
        check_parts("Trainer", model=model, optimizer=optimizer, loss=loss)
        self.model, self.optimizer, self.loss = model, optimizer, loss
        self.seed, self.dtype, self.backend = seed, dtype, backend
        self.state: train.TrainState | None = None
        self.in_shape: tuple[int, ...] | None = None
        self.loss_list: list[float] = []
        self.eval_interval: int | None = None
        self._steps: dict[Any, train.TrainStep] = {}

    @property
    def current_epoch(self) -> int:
        """Whole epochs trained so far."""
        return 0 if self.state is None else int(self.state.epoch)

    def _step(self, max_grad: float | None) -> train.TrainStep:
        if max_grad not in self._steps:
            from funcnet import optim

            opt = self.optimizer if max_grad is None else optim.with_clipping(self.optimizer, max_grad)
            self._steps[max_grad] = train.TrainStep(self.model, self.loss, opt)
        return self._steps[max_grad]

    def init(self, in_shape: tuple[int, ...]) -> train.TrainState:
        """Draw fresh params for examples of shape ``in_shape`` (no batch axis).

        Args:
            in_shape: the shape of one example, e.g. ``(2,)``.

        Returns:
            The new state (also kept as ``self.state``).
        """
        self.state = train.init_state(self.model, self.optimizer, random.key(self.seed), in_shape,
                                      dtype=self.dtype, backend=self.backend)
        self.in_shape = tuple(int(d) for d in in_shape)
        return self.state

    def fit(self, x: Any, t: Any, max_epoch: int = 10, batch_size: int = 32, max_grad: float | None = None,
            eval_interval: int = 20, *, progress: bool | None = None, log: bool = True) -> Trainer:
        """Train ``max_epoch`` more epochs (the book's signature); prints the book's log line.

        Ctrl-C keeps the last complete state and loss list here, then re-raises the
        `TrainingInterrupted`.

        Args:
            x: inputs.
            t: targets.
            max_epoch: epochs to train.
            batch_size: examples a step.
            max_grad: clip the gradients to this global norm (the book's ``clip_grads``).
            eval_interval: steps between loss records.
            progress: a tqdm bar (None: on a terminal only).
            log: print the book's log line.

        Returns:
            self.

        Raises:
            NonFiniteLossError, TrainingInterrupted: see `funcnet.train.fit`; the state kept
                here is the one they carry.
        """
        if self.state is None:
            if not hasattr(x, "shape"):
                raise TypeError(f"Trainer.fit: x must be an array, got {type(x).__name__}")
            self.init(tuple(x.shape[1:]))
        self.eval_interval = eval_interval
        try:
            state, history = train.fit(self._step(max_grad), self.state, x, t, epochs=max_epoch,
                                       batch_size=batch_size, eval_interval=eval_interval,
                                       progress=progress, log=log)
        except (train.TrainingInterrupted, train.NonFiniteLossError) as err:
            self.state = err.state
            self.loss_list.extend(err.history["loss"])
            raise
        self.state = state
        self.loss_list.extend(history["loss"])
        return self

    def _trained(self, what: str) -> train.TrainState:
        if self.state is None:
            raise RuntimeError(f"Trainer.{what}: there is nothing to {what} yet; call fit (or init, or load) first")
        return self.state

    @property
    def params(self) -> Any:
        """The current params (None before the first fit)."""
        return None if self.state is None else self.state.params

    def predict(self, x: Any, batch_size: int | None = None) -> Any:
        """The model's outputs (logits) for ``x``."""
        return train.predict(self.model, self._trained("predict").params, x, batch_size=batch_size)

    def evaluate(self, x: Any, t: Any) -> dict[str, float]:
        """Loss and accuracy on ``(x, t)``."""
        return train.evaluate(self.model, self._trained("evaluate").params, x, t, loss=self.loss)

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
        """Save the training state, the example shape and the loss list atomically.

        Args:
            path: the file.
            **kwargs: passed to `funcnet.checkpoint.save` (``dtype``, ``metadata``).

        Raises:
            RuntimeError: nothing trained yet.
        """
        state = self._trained("save")
        meta = dict(kwargs.pop("metadata", None) or {})
        taken = sorted(k for k in meta if isinstance(k, str) and k.startswith("trainer."))
        if taken:
            raise ValueError(f"Trainer.save: metadata keys starting with 'trainer.' are Trainer's own, got {taken}")
        meta.update({_IN_SHAPE: json.dumps(list(self.in_shape or ())), _LOSSES: json.dumps(self.loss_list),
                     _EVAL_INTERVAL: json.dumps(self.eval_interval)})
        checkpoint.save(path, state, metadata=meta, **kwargs)

    def load(self, path: str | Path) -> train.TrainState:
        """Restore what `save` wrote: the state, the loss list and the epoch count.

        Args:
            path: a file written by `save` with the same model and optimizer.

        Returns:
            The restored state (also kept as ``self.state``).

        Raises:
            funcnet.checkpoint.CheckpointError: not such a file, or one of another model.
        """
        meta = checkpoint.read_metadata(path)
        if _IN_SHAPE not in meta:
            raise checkpoint.CheckpointError(f"{path}: not saved by Trainer.save (no example shape in it)")
        try:
            in_shape = tuple(json.loads(meta[_IN_SHAPE]))
            losses = [float(v) for v in json.loads(meta.get(_LOSSES, "[]"))]
            eval_interval = json.loads(meta.get(_EVAL_INTERVAL, "null"))
        except (ValueError, TypeError) as err:
            raise checkpoint.CheckpointError(f"{path}: its Trainer entries are damaged ({err})") from None
        template = train.init_state(self.model, self.optimizer, random.key(self.seed), in_shape,
                                    dtype=self.dtype, backend=self.backend)
        self.state = checkpoint.load(path, like=template)
        self.in_shape, self.loss_list, self.eval_interval = in_shape, losses, eval_interval
        return self.state


def _has_display() -> bool:
    import os

    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
