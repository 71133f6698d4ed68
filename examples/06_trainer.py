"""Seed 1-4-4, the Trainer class: the seed's three lines, on top of funcnet's pure training step.

``Trainer`` is a thin imperative shell: it keeps the last ``TrainState`` and the loss list,
and every step it takes is ``train.make_train_step`` inside ``train.fit``.

    python examples/06_trainer.py [--epochs N] [--out DIR] [--show]
"""

from __future__ import annotations

import _common

from funcnet import optim
from funcnet.datasets import spiral
from funcnet.models import TwoLayerNet
from funcnet.trainer import Trainer


def main(argv: list[str] | None = None) -> None:
    args = _common.parse(_common.parser(__doc__.splitlines()[0], epochs=300), argv)

    max_epoch = args.epochs
    batch_size = 30
    hidden_size = 10
    learning_rate = 1.0

    x, t = spiral.load_data()
    model = TwoLayerNet(input_size=2, hidden_size=hidden_size, output_size=3)
    optimizer = optim.sgd(learning_rate)

    # the seed's three lines (plot writes a PNG here instead of opening a window)
    trainer = Trainer(model, optimizer)
    trainer.fit(x, t, max_epoch, batch_size, eval_interval=10)
    path = args.out / "06_trainer_loss.png"
    trainer.plot(path=path, show=args.show)
    _common.saved(path)

    result = trainer.evaluate(x, t)
    print(f"after {trainer.current_epoch} epochs: loss {result['loss']:.4f}, accuracy {result['accuracy']:.3f} "
          f"({len(trainer.loss_list)} losses recorded)")


if __name__ == "__main__":
    _common.run(main)
