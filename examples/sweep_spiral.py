"""Sweep the seed's spiral model over hidden sizes and learning rates, 8 seeds each, on Dask.

TwoLayerNet(2, hidden, 3) with SGD and batches of 30 (funcnet.recipes.spiral_experiment), for
every hidden size and learning rate, each with seeds 0..7. By default the runs go to a local Dask
cluster (one single-threaded worker process per core, up to 8) when dask is installed, else to a process
pool. Writes the table (CSV), the loss curves (mean and min-max band over the seeds) and one
JSON file per finished run into --out; running the same sweep again skips the finished runs.

    python examples/sweep_spiral.py                                # local Dask cluster
    python examples/sweep_spiral.py --executor process --workers 4
    python examples/sweep_spiral.py --scheduler tcp://10.0.0.5:8786  # a running Dask scheduler
    python examples/sweep_spiral.py --scheduler tcp://10.0.0.5:8786 --connect-timeout 30
    python examples/sweep_spiral.py --hidden 10 --lr 0.1 0.3 1.0 3.0 --seeds 16
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import _common

from funcnet import experiments, recipes

EVAL_INTERVAL = recipes.SPIRAL_DEFAULTS["eval_interval"]
CONNECT_TIMEOUT = 5.0


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0.0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _common.parser(__doc__.splitlines()[0], epochs=300)
    has_dask = importlib.util.find_spec("distributed") is not None
    p.add_argument("--executor", choices=("dask", "process", "sequential"),
                   default="dask" if has_dask else "process",
                   help="where the runs execute (dask: a local cluster, or --scheduler's)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="address of a running Dask scheduler (implies --executor dask)")
    p.add_argument("--connect-timeout", type=positive_float, default=CONNECT_TIMEOUT, metavar="SECONDS",
                   help="how long to try to reach --scheduler before giving up")
    p.add_argument("--workers", type=_common.positive_int, default=min(os.cpu_count() or 1, 8),
                   help="worker processes of a local cluster or process pool (default: the cores, at most 8)")
    p.add_argument("--hidden", type=_common.positive_int, nargs="+", default=[5, 10, 20], help="hidden sizes")
    p.add_argument("--lr", type=positive_float, nargs="+", default=[0.3, 1.0], help="learning rates")
    p.add_argument("--seeds", type=_common.positive_int, default=8, help="seeds 0..N-1 per setting")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


class UnreachableError(Exception):
    """The Dask scheduler named by --scheduler could not be reached."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


@contextlib.contextmanager
def executor(args: argparse.Namespace) -> Iterator[Any]:
    """The executor the arguments ask for, shut down afterwards."""
    if args.executor == "sequential" and args.scheduler is None:
        yield None
    elif args.executor == "process" and args.scheduler is None:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            yield pool
    else:
        from distributed import Client, LocalCluster

        if args.scheduler is not None:
            try:
                client = Client(args.scheduler, timeout=args.connect_timeout)
            except (OSError, TimeoutError, ValueError) as err:  # unreachable, refused, a malformed address
                raise UnreachableError(f"--scheduler {args.scheduler}: cannot connect within "
                                  f"{args.connect_timeout:g} s ({_first_line(err)})") from None
            with client:
                yield client
        else:
            # one thread a worker: the runs are CPU-bound NumPy, and processes keep them apart
            with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster, Client(cluster) as client:
                yield client


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = _common.parse(p, argv)
    wants_dask = args.executor == "dask" or args.scheduler is not None
    if wants_dask and importlib.util.find_spec("distributed") is None:
        p.error("--executor dask needs dask: pip install 'funcnet[dist]' (or use --executor process)")
    configs = experiments.grid(hidden=args.hidden, lr=args.lr, epochs=args.epochs)
    where = args.scheduler or (f"{args.executor}, {args.workers} workers" if args.executor != "sequential"
                               else "sequential")
    print(f"{len(configs)} settings x {args.seeds} seeds = {len(configs) * args.seeds} runs of "
          f"{args.epochs} epochs ({where})")

    started = time.perf_counter()
    try:
        with executor(args) as ex:
            results = experiments.sweep(recipes.spiral_experiment, configs, args.seeds, executor=ex,
                                        out_dir=args.out / "sweep_spiral_runs",
                                        progress=False if args.no_progress else None)
    except UnreachableError as err:
        print(f"{p.prog}: error: {err}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - started
    print(f"{len(results)} runs in {wall:.1f} s: {results.skipped} skipped (finished earlier), "
          f"{len(results.failed())} failed")
    for row in results.failed():
        print(f"  failed: hidden {row['hidden']}, lr {row['lr']}, seed {row['seed']}: {row['error']}")

    accuracy = {(s["hidden"], s["lr"]): s for s in results.aggregate("accuracy")}
    print(f"{'hidden':>6} {'lr':>5}   {'loss (mean ± std)':>19}   {'accuracy':>8}")
    for s in results.aggregate("loss"):
        acc = accuracy[(s["hidden"], s["lr"])]["mean"]
        print(f"{s['hidden']:>6} {s['lr']:>5g}   {s['mean']:>9.4f} ± {s['std']:<7.4f}   {acc:>8.3f}")

    table = args.out / "sweep_spiral.csv"
    results.to_csv(table)
    _common.saved(table)
    figure = args.out / "sweep_spiral_loss.png"
    results.plot(figure, eval_interval=EVAL_INTERVAL, show=args.show,
                 title=f"spiral, SGD, batch 30, {args.epochs} epochs: "
                       f"mean loss and min-max over {args.seeds} seeds")
    _common.saved(figure)
    return 1 if len(results.failed()) == len(results) else 0


if __name__ == "__main__":
    _common.run(main)
