"""Seed 1-4-3, the result: the trained two-layer net's decision boundary over the spiral data.

Trains the seed's configuration with ``train.fit``, then colours every point of a grid by the
class the network predicts there (``plot.decision_boundary``) under the data's markers o, x, ^.

    python examples/07_decision_boundary.py [--epochs N] [--out DIR] [--show]
"""

from __future__ import annotations

import _common
import numpy as np

from funcnet import SoftmaxWithLoss, optim, plot, random, train
from funcnet.datasets import spiral
from funcnet.models import TwoLayerNet


def main(argv: list[str] | None = None) -> None:
    p = _common.parser(__doc__.splitlines()[0], epochs=300)
    _common.add_progress_option(p)
    args = _common.parse(p, argv)
    x, t = spiral.load_data()
    x = x.astype(np.float32)
    model = TwoLayerNet(2, 10, 3)
    optimizer = optim.sgd(1.0)
    step = train.make_train_step(model, SoftmaxWithLoss, optimizer)
    state = train.init_state(model, optimizer, random.key(0), (2,))
    state, history = _common.fit(step, state, x, t, epochs=args.epochs, batch_size=30, eval_interval=10,
                                 progress=not args.no_progress)
    result = train.evaluate(model, state.params, x, t)
    print(f"{args.epochs} epochs in {history['time']:.2f} s: loss {result['loss']:.4f}, "
          f"accuracy {result['accuracy']:.3f}")

    def predict(grid):
        return train.predict(model, state.params, grid)

    path = args.out / "07_decision_boundary.png"
    plot.decision_boundary(predict, x, t, path=path, show=args.show,
                           title=f"decision boundary (accuracy {result['accuracy']:.2f})")
    _common.saved(path)
    classes = np.argmax(np.asarray(predict(np.array([[0.0, 0.5], [0.5, -0.5], [-0.5, -0.5]]))), axis=1)
    print(f"predicted classes at (0, 0.5), (0.5, -0.5), (-0.5, -0.5): {classes.tolist()}")


if __name__ == "__main__":
    _common.run(main)
