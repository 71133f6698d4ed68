"""Plumbing shared by the examples: ``--out``/``--show``/``--epochs``, the output folder, smoke mode.

Every example is a plain script (``python examples/04_spiral_data.py``). It draws its figures
headless (matplotlib's Agg backend) into ``--out`` (default ``out/`` at the repository root,
which git ignores); ``--show`` also opens them in a window. With the environment variable
``FUNCNET_SMOKE=1`` training examples run a few epochs only, so the test suite runs them all
quickly; an explicit ``--epochs`` wins over both.

The scripts behave like Unix tools: ``--help`` names each default once, an invalid option is
one line on stderr and exit status 2 (no usage block), ``script | head -3`` ends quietly (the
script dies of SIGPIPE like ``cat`` would, without a traceback), and training shows a tqdm bar
when stderr is a terminal and a few progress lines when it is a file.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "out"
SMOKE_EPOCHS = 3
LOG_LINES = 5  # progress lines written to a log file (stderr not a terminal) during one fit

# Like the book's ``sys.path.append('.')``: a fresh checkout runs the examples without
# ``pip install -e .`` (an installed funcnet is used when there is one).
if importlib.util.find_spec("funcnet") is None:
    sys.path.insert(0, str(REPO))


def smoke() -> bool:
    """True when ``FUNCNET_SMOKE`` asks for a quick run (any value but '', '0', 'false', 'no')."""
    return os.environ.get("FUNCNET_SMOKE", "").strip().lower() not in ("", "0", "false", "no")


def positive_int(text: str) -> int:
    """An argparse type: an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


class DefaultsOnceFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to an option's help unless the help already names its default.

    argparse's ``ArgumentDefaultsHelpFormatter`` appends the default even where the help text
    explains it (``default 300; 3 when FUNCNET_SMOKE=1``) and prints ``None`` for defaults that
    are computed later; this one says each default once.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default is None or action.default is False \
                or action.default == argparse.SUPPRESS or not action.option_strings:
            return text
        default = " ".join(map(str, action.default)) if isinstance(action.default, list | tuple) else action.default
        return f"{text} (default: {default})"


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr (``prog: error: ...``), exit status 2."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def parser(description: str, *, epochs: int | None = None) -> argparse.ArgumentParser:
    """An argument parser with ``--out`` and ``--show`` (and ``--epochs`` when ``epochs`` is given)."""
    p = Parser(description=description, formatter_class=DefaultsOnceFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                   help="folder the figures are written to (default: out/ at the repository root)")
    p.add_argument("--show", action="store_true", help="also show the figures in a window")
    if epochs is not None:
        p.add_argument("--epochs", type=positive_int, default=None,
                       help=f"training epochs (default: {epochs}; {SMOKE_EPOCHS} when FUNCNET_SMOKE=1)")
        p.set_defaults(full_epochs=epochs)
    return p


def add_progress_option(p: argparse.ArgumentParser) -> None:
    """``--no-progress``: neither a bar (stderr a terminal) nor progress lines (stderr a file)."""
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar on a terminal, no progress lines in a log file")


def parse(p: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the arguments, create the output folder, pick the epoch count and the plot backend."""
    args = p.parse_args(argv)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        p.error(f"--out {args.out}: cannot create the folder ({err.strerror or err})")
    if "full_epochs" in args:
        if args.epochs is None:
            args.epochs = SMOKE_EPOCHS if smoke() else args.full_epochs
        del args.full_epochs
    if not args.show:
        import matplotlib

        matplotlib.use("Agg", force=True)
    return args


def save_figure(fig: Any, path: Path, show: bool) -> Path:
    """Write ``fig`` as a PNG, show it when asked, close it and announce the file."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=80)
    if show:
        plt.show()
    plt.close(fig)
    return saved(path)


def saved(path: Path) -> Path:
    """Announce a written file (relative to the working directory where possible)."""
    try:
        shown = path.resolve().relative_to(Path.cwd())
    except ValueError:
        shown = path
    print(f"saved {shown}")
    return path


def run(main: Callable[[], int | None]) -> None:
    """Run a script's ``main`` and exit with its status; a closed stdout ends it quietly.

    ``script | head -3``: once ``head`` has read its lines, the next write raises
    ``BrokenPipeError`` (Python ignores SIGPIPE). The script then stops the way a Unix tool
    stopped by SIGPIPE does (exit status 141 in the shell), without a traceback and without a
    second error when Python flushes stdout at exit.
    """
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing left to flush into the closed pipe
        if hasattr(signal, "SIGPIPE"):
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGPIPE)
        raise SystemExit(1) from None
    raise SystemExit(status)


def epochs(n: int, progress: bool = True) -> Any:
    """``range(n)`` for a hand-written epoch loop, with a tqdm bar on a terminal and ``LOG_LINES``
    lines (``epoch k/n``) on stderr when it is a file; nothing with ``progress=False``."""
    if progress and sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(range(n), unit="epoch")
        return
    chunk = max(1, math.ceil(n / LOG_LINES))
    started = time.perf_counter()
    for epoch in range(n):
        yield epoch
        if progress and ((epoch + 1) % chunk == 0 or epoch + 1 == n):
            print(f"epoch {epoch + 1}/{n} ({100 * (epoch + 1) // n}%), {time.perf_counter() - started:.1f} s",
                  file=sys.stderr, flush=True)


def fit(step: Any, state: Any, x: Any, t: Any, *, epochs: int, batch_size: int, eval_interval: int,
        progress: bool = True, label: str = "") -> tuple[Any, dict[str, Any]]:
    """``train.fit`` with a tqdm bar when stderr is a terminal, else ``LOG_LINES`` progress lines.

    For the lines the epochs run in a few consecutive ``train.fit`` calls: epoch ``e``'s shuffle
    is ``fold_in(state.key, e)``, so the result is the one of a single call, bit for bit.
    ``progress=False`` shows neither.
    """
    from funcnet import train

    if not progress or sys.stderr.isatty():
        return train.fit(step, state, x, t, epochs=epochs, batch_size=batch_size, eval_interval=eval_interval,
                         progress=bool(progress))
    chunk = max(1, math.ceil(epochs / LOG_LINES))
    history: dict[str, Any] = {"loss": [], "step": [], "epoch": [], "time": 0.0}
    started, done = time.perf_counter(), 0
    prefix = f"{label}: " if label else ""

    def add(part: dict[str, Any]) -> None:
        for name in ("loss", "step", "epoch"):
            history[name] += part.get(name, [])
        history["time"] += part.get("time", 0.0)

    while done < epochs:
        n = min(chunk, epochs - done)
        try:
            state, part = train.fit(step, state, x, t, epochs=n, batch_size=batch_size,
                                    eval_interval=eval_interval, progress=False)
        except train.TrainingInterrupted as err:  # the whole run's history, not this chunk's
            add(err.history)
            raise train.TrainingInterrupted(str(err), err.state, history) from err
        add(part)
        done += n
        loss = f", loss {history['loss'][-1]:.4f}" if history["loss"] else ""
        print(f"{prefix}epoch {done}/{epochs} ({100 * done // epochs}%){loss}, "
              f"{time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return state, history
