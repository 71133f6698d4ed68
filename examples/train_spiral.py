"""Train the seed's two-layer net on the spiral data set (chapter 1 of Deep Learning from Scratch 2).

The seed's configuration by default: TwoLayerNet(2, 10, 3), SGD with lr 1.0, batches of 30,
300 epochs, the mean loss recorded every 10 iterations. It reaches the book's result, a final
mean loss near 0.1 and a training accuracy of about 0.97. Writes the loss curve, the decision
boundary and a JSON summary into --out.

    python examples/train_spiral.py                        # the seed's run
    python examples/train_spiral.py --optimizer adam --backend jax
    python examples/train_spiral.py --dtype float16
    python examples/train_spiral.py --epochs 150 --checkpoint out/half.safetensors
    python examples/train_spiral.py --epochs 150 --resume out/half.safetensors   # = 300 epochs
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import _common
import numpy as np

from funcnet import SoftmaxWithLoss, backend, checkpoint, io, optim, plot, random, train, tree
from funcnet.datasets import spiral
from funcnet.models import TwoLayerNet

# the optimizers by name, with a learning rate that reaches the book's result here
OPTIMIZERS = {
    "sgd": (optim.sgd, 1.0),
    "momentum": (optim.momentum, 0.1),
    "nesterov": (optim.nesterov, 0.1),
    "adagrad": (optim.adagrad, 1.0),
    "rmsprop": (optim.rmsprop, 0.03),
    "adam": (optim.adam, 0.03),
}
BACKENDS = ("numpy", "jax", "cupy", "array_api_strict")
DTYPES = ("float16", "float32", "float64")
STRUCTURE = ("optimizer", "hidden")  # settings that shape the saved state: they must match to resume
EVAL_INTERVAL = 10
LOSSES_KEY = "train_spiral.losses"  # the loss history so far, kept in a checkpoint's metadata
CONFIG_KEY = "train_spiral.config"
OUTPUTS = ("spiral_loss.png", "spiral_decision_boundary.png", "spiral_summary.json")  # written into --out


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0.0):
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {text!r}")
    return value


def seed_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**64), got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _common.parser(__doc__.splitlines()[0], epochs=300)
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the initial params and the shuffling")
    p.add_argument("--batch-size", type=_common.positive_int, default=30, help="mini-batch size")
    p.add_argument("--hidden", type=_common.positive_int, default=10, help="hidden layer width")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="learning rate (default: 1.0 for sgd; " + ", ".join(
                       f"{name} {lr:g}" for name, (_, lr) in OPTIMIZERS.items() if name != "sgd") + ")")
    p.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default="sgd", help="the book's optimizers")
    p.add_argument("--backend", choices=BACKENDS, default="numpy", help="array backend")
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="params' dtype (float16 trains with float32 optimizer state)")
    _common.add_progress_option(p)
    p.add_argument("--checkpoint", type=Path, default=None, metavar="PATH",
                   help="save the final training state (params, optimizer state, key, step) here")
    p.add_argument("--resume", type=Path, default=None, metavar="PATH",
                   help="continue from a state saved with --checkpoint (--epochs more epochs)")
    return p


def check_arguments(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What argparse's types cannot check: errors here are one line and exit code 2."""
    n = spiral.N * spiral.CLS_NUM
    if args.batch_size > n:
        p.error(f"argument --batch-size: must be at most the data size {n}, got {args.batch_size}")
    reason = backend.why_unavailable(args.backend)
    if reason is not None:
        p.error(f"argument --backend: {reason}")
    if args.resume is not None and not args.resume.is_file():
        p.error(f"argument --resume: no checkpoint file at {args.resume}")
    if args.checkpoint is not None:
        if args.checkpoint.is_dir():
            p.error(f"argument --checkpoint: {args.checkpoint} is a folder, not a file path")
        try:
            args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            p.error(f"argument --checkpoint: cannot create the folder {args.checkpoint.parent} ({err.strerror})")
        check_destination(p, "--checkpoint", args.checkpoint, "checkpoint")
    for name in OUTPUTS:  # the run's files, before the run: a FIFO or a folder there is found now
        check_destination(p, "--out", args.out / name, "summary" if name.endswith(".json") else "figure")


def check_destination(p: argparse.ArgumentParser, option: str, path: Path, what: str) -> None:
    """A one-line error (exit 2) when ``path`` could not be written at the end of the run."""
    try:
        io.check_destination(path, what=what)
    except OSError as err:
        p.error(f"argument {option}: {err.strerror or err}: {err.filename or path}")
    except ValueError as err:  # a FIFO, a device, a socket: the message names the path
        p.error(f"argument {option}: {err}")


def config(args: argparse.Namespace) -> dict:
    return {"optimizer": args.optimizer, "lr": args.lr, "hidden": args.hidden, "batch_size": args.batch_size,
            "dtype": args.dtype, "seed": args.seed}


def saved_settings(p: argparse.ArgumentParser, path: Path) -> tuple[dict, list[float]]:
    """The settings and loss history that ``--checkpoint`` wrote into the file's metadata."""
    try:
        metadata = checkpoint.read_metadata(path)
    except checkpoint.CheckpointError as err:
        p.error(f"argument --resume: not a checkpoint: {err}")
    except OSError as err:
        p.error(f"argument --resume: cannot read {path} ({err.strerror or err})")
    if CONFIG_KEY not in metadata:
        p.error(f"argument --resume: {path} is a safetensors checkpoint, but not one written by "
                f"{Path(__file__).name} --checkpoint (it has no record of this script's settings)")
    try:
        settings, losses = json.loads(metadata[CONFIG_KEY]), json.loads(metadata.get(LOSSES_KEY, "[]"))
    except json.JSONDecodeError:
        settings = losses = None
    if not (isinstance(settings, dict) and isinstance(losses, list)
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in losses)
            and all(isinstance(settings.get(name), int | str) for name in STRUCTURE)):
        p.error(f"argument --resume: {path} was written by {Path(__file__).name}, but the settings and "
                "loss history stored with it are damaged (not the JSON this script writes)")
    return settings, losses


def _reason(err: Exception, path: Path) -> str:
    """The checkpoint module's message without the path it starts with (the user's path is named already)."""
    text = " ".join(str(err).split())
    for prefix in (f"{path}: ", f"{path} "):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def resume(p: argparse.ArgumentParser, args: argparse.Namespace, fresh: train.TrainState):
    """The saved state in ``fresh``'s structure, dtypes and backend, and the losses recorded so far."""
    settings, losses = saved_settings(p, args.resume)
    current = config(args)
    differ = [name for name in STRUCTURE if settings[name] != current[name]]
    if differ:
        theirs = " ".join(f"--{name} {settings[name]}" for name in differ)
        ours = " ".join(f"--{name} {current[name]}" for name in differ)
        p.error(f"argument --resume: {args.resume} was saved by a run with {theirs}, this run has {ours}; "
                f"resume with {theirs}")
    try:
        state = checkpoint.load(args.resume, like=fresh)
    except checkpoint.CheckpointError as err:
        p.error(f"argument --resume: {args.resume} does not hold the state of TwoLayerNet(2, {args.hidden}, 3) "
                f"with {args.optimizer} ({_reason(err, args.resume)})")
    except OSError as err:
        p.error(f"argument --resume: cannot read {args.resume} ({err.strerror or err})")
    for name, value in current.items():
        if name in settings and settings[name] != value and name != "seed":  # the key is restored, not re-seeded
            print(f"note: resuming with --{name.replace('_', '-')} {value} (the checkpoint was trained with "
                  f"{settings[name]})")
    return state, losses


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = _common.parse(p, argv)
    check_arguments(p, args)
    make_optimizer, default_lr = OPTIMIZERS[args.optimizer]
    args.lr = default_lr if args.lr is None else args.lr
    if args.backend == "jax" and args.dtype == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)  # jax keeps float64 only with x64 on

    x, t = spiral.load_data(dtype=args.dtype)
    x, t = backend.put((x, t), args.backend)
    model = TwoLayerNet(2, args.hidden, 3)
    optimizer = make_optimizer(args.lr)
    step = train.make_train_step(model, SoftmaxWithLoss, optimizer)
    state = train.init_state(model, optimizer, random.key(args.seed), (2,), dtype=args.dtype, backend=args.backend)
    losses: list[float] = []
    if args.resume is not None:
        state, losses = resume(p, args, state)
        print(f"resumed from {args.resume} at step {int(backend.to_numpy(state.step))}")

    iters = x.shape[0] // args.batch_size
    print(f"TwoLayerNet(2, {args.hidden}, 3), {args.optimizer} lr {args.lr:g}, batch {args.batch_size}, "
          f"{args.epochs} epochs of {iters} iterations, {args.dtype} on {args.backend}")
    started = time.perf_counter()
    interrupted = False
    try:
        state, history = _common.fit(step, state, x, t, epochs=args.epochs, batch_size=args.batch_size,
                                     eval_interval=EVAL_INTERVAL, progress=not args.no_progress)
    except train.NonFiniteLossError as err:
        print(f"error: {err}; try a smaller --lr")
        return 1
    except train.TrainingInterrupted as err:  # Ctrl-C: report and save what was reached
        state, history, interrupted = err.state, err.history, True
        print("interrupted: the results below are those of the last complete step")
    wall = time.perf_counter() - started
    losses = losses + history["loss"]

    result = train.evaluate(model, state.params, x, t)
    steps = int(backend.to_numpy(state.step))
    final = losses[-1] if losses else float("nan")
    print(f"final loss {final:.4f} (mean of the last {EVAL_INTERVAL} iterations); on all data: "
          f"loss {result['loss']:.4f}, accuracy {result['accuracy']:.3f}")
    print(f"wall time {wall:.2f} s for {args.epochs} epochs ({steps} steps in all)")

    if args.checkpoint is not None:
        checkpoint.save(args.checkpoint, state, metadata={CONFIG_KEY: json.dumps(config(args)),
                                                          LOSSES_KEY: json.dumps(losses)})
        _common.saved(args.checkpoint)

    loss_png = args.out / "spiral_loss.png"
    plot.loss_curve(losses, eval_interval=EVAL_INTERVAL, path=loss_png, show=args.show,
                    title=f"spiral, {args.optimizer} lr {args.lr:g} ({args.backend}, {args.dtype})")
    _common.saved(loss_png)

    def predict(grid: np.ndarray):
        return train.predict(model, state.params, backend.put(grid.astype(args.dtype), args.backend))

    boundary_png = args.out / "spiral_decision_boundary.png"
    plot.decision_boundary(predict, backend.to_numpy(x), backend.to_numpy(t), path=boundary_png, show=args.show,
                           title=f"decision boundary (accuracy {result['accuracy']:.3f})")
    _common.saved(boundary_png)

    summary = {"final_loss": final, "loss": result["loss"], "accuracy": result["accuracy"], "steps": steps,
               "epochs": int(state.epoch), "wall_time": wall, "losses": losses, "backend": args.backend,
               "params_size": tree.size(state.params), **config(args)}
    summary_path = args.out / "spiral_summary.json"
    io.write_atomic(summary_path, (json.dumps(summary, indent=1) + "\n").encode(), what="summary")
    _common.saved(summary_path)
    return 130 if interrupted else 0  # the shell's status for Ctrl-C: the run was cut short


if __name__ == "__main__":
    _common.run(main)
