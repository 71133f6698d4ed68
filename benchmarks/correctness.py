"""funcnet against the reference in float64: same initial params, same batches, same losses.

The reference gets funcnet's initial weights and replays funcnet's order of each epoch
(``random.permutation(random.fold_in(state.key, epoch), n)``, the order ``fit`` uses), and both
run the seed's 300 epochs. Compared: the loss curves (the mean every 10 iterations) and the
final params.

funcnet's ``SoftmaxWithLoss`` is the exact cross-entropy; the book's adds ``1e-7`` inside the
log. Their gradients are the same (the book's backward ignores the ``1e-7``), so the params
agree to round-off either way, but the reported losses differ by about ``1e-7 / p`` per
example. The like-for-like comparison of the losses therefore uses funcnet's
``book_softmax_cross_entropy``; the difference with the default loss is reported too.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from benchmarks import reference, workloads
from benchmarks.impls import EVAL_INTERVAL
from funcnet import random, train
from funcnet.losses import book_softmax_cross_entropy

TOLERANCE = 1e-6


def _max_param_diff(fn_params, model: reference.MLP) -> float:
    ours = [a for wb in workloads.weights(fn_params) for a in wb]
    return max(float(np.max(np.abs(a - b))) for a, b in zip(ours, model.params, strict=True))


def compare(w: workloads.Workload = workloads.SMALL) -> dict:
    """Train funcnet and the reference side by side in float64; the differences, and whether they pass."""
    w = replace(w, dtype="float64")
    x, t = workloads.data(w)
    out = {"epochs": w.epochs, "tolerance": TOLERANCE}
    for label, loss in (("book_loss", book_softmax_cross_entropy), ("default_loss", None)):
        step, state = workloads.funcnet_setup(w)
        if loss is not None:
            step = train.make_train_step(step.model, loss, step.optimizer)
        model = reference.MLP(workloads.weights(state.params))
        key = state.key
        ref_losses = reference.train(
            model, reference.SGD(w.lr), x, t, max_epoch=w.epochs, batch_size=w.batch_size,
            permutation=lambda epoch, key=key: random.permutation(random.fold_in(key, epoch), len(x)),
            eval_interval=EVAL_INTERVAL)
        final, history = train.fit(step, state, x, t, epochs=w.epochs, batch_size=w.batch_size,
                                   eval_interval=EVAL_INTERVAL, progress=False, log=False)
        ours = np.asarray(history["loss"])
        theirs = np.asarray(ref_losses)
        out[label] = {
            "funcnet_final_loss": float(ours[-1]),
            "reference_final_loss": float(theirs[-1]),
            "final_loss_diff": float(abs(ours[-1] - theirs[-1])),
            "max_curve_diff": float(np.max(np.abs(ours - theirs))),
            "max_param_diff": _max_param_diff(final.params, model),
        }
    book, default = out["book_loss"], out["default_loss"]
    out["ok"] = all(r[k] <= TOLERANCE for r in (book, default) for k in ("final_loss_diff", "max_param_diff"))
    return out
