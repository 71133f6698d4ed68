"""Seed 1-4-3, the training code: the seed's own loop, written around funcnet's pure training step.

The seed's hyper-parameters (300 epochs, batch 30, hidden 10, lr 1.0) and its loop: shuffle,
cut mini-batches, step, print the mean loss every 10 iterations, keep it in ``loss_list``.
Differences from the book: the model, optimizer and training position live in one immutable
``TrainState`` that each ``step(state, batch)`` hands back, and epoch ``e`` is shuffled with
``random.fold_in(state.key, e)`` instead of NumPy's global generator. Because of that the loop
ends exactly where ``train.fit`` ends; the script checks it.

    python examples/05_custom_training_loop.py [--epochs N] [--out DIR] [--show]
"""

from __future__ import annotations

import _common
import numpy as np

from funcnet import SoftmaxWithLoss, optim, plot, random, train, tree
from funcnet.datasets import spiral
from funcnet.models import TwoLayerNet


def main(argv: list[str] | None = None) -> None:
    p = _common.parser(__doc__.splitlines()[0], epochs=300)
    _common.add_progress_option(p)
    args = _common.parse(p, argv)

    # 1. hyper-parameters
    max_epoch = args.epochs
    batch_size = 30
    hidden_size = 10
    learning_rate = 1.0

    # 2. data, model, optimizer, and the pure step that ties them together
    x, t = spiral.load_data()
    x = x.astype(np.float32)  # the params are float32; cast once instead of in every step
    model = TwoLayerNet(input_size=2, hidden_size=hidden_size, output_size=3)
    optimizer = optim.sgd(learning_rate)
    step = train.make_train_step(model, SoftmaxWithLoss, optimizer)
    state = train.init_state(model, optimizer, random.key(0), in_shape=(2,))
    initial_state = state

    data_size = len(x)
    max_iters = data_size // batch_size
    total_loss = 0.0
    loss_count = 0
    loss_list = []

    for epoch in _common.epochs(max_epoch, progress=not args.no_progress):
        # 3. shuffle: a permutation that is a pure function of the state's key and the epoch
        idx = random.permutation(random.fold_in(state.key, epoch), data_size)
        xs, ts = x[idx], t[idx]

        for iters in range(max_iters):
            batch_x = xs[iters * batch_size:(iters + 1) * batch_size]
            batch_t = ts[iters * batch_size:(iters + 1) * batch_size]

            # forward, backward and update in one pure call: the old state is left as it was
            state, metrics = step(state, (batch_x, batch_t))
            total_loss += float(metrics["loss"])
            loss_count += 1

            # report the mean loss every 10 iterations
            if (iters + 1) % 10 == 0:
                avg_loss = total_loss / loss_count
                print(f"| epoch {epoch + 1} |  iter {iters + 1} / {max_iters} | loss {avg_loss:.2f}")
                loss_list.append(avg_loss)
                total_loss, loss_count = 0.0, 0

    result = train.evaluate(model, state.params, x, t)
    print(f"final loss {loss_list[-1]:.4f} (last 10 iterations), on all data: loss {result['loss']:.4f}, "
          f"accuracy {result['accuracy']:.3f}")

    # the same run with train.fit: same shuffles, same steps, same params, bit for bit
    fitted, history = train.fit(step, initial_state, x, t, epochs=max_epoch, batch_size=batch_size,
                                eval_interval=10, progress=False)
    same = all(np.array_equal(a, b) for a, b in zip(tree.leaves(state.params), tree.leaves(fitted.params),
                                                     strict=True))
    print(f"train.fit from the same initial state ends with the same params: {same}; "
          f"same loss list: {history['loss'] == loss_list}")
    if not same:
        raise SystemExit("the custom loop and train.fit disagree")

    path = args.out / "05_custom_loop_loss.png"
    plot.loss_curve(loss_list, eval_interval=10, path=path, show=args.show,
                    title="custom training loop (seed 1-4-3)")
    _common.saved(path)


if __name__ == "__main__":
    _common.run(main)
