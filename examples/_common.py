"""Plumbing shared by the examples: ``--out``/``--show``/``--epochs``, the output folder, smoke mode.

Every example is a plain script (``python examples/04_spiral_data.py``). It draws its figures
headless (matplotlib's Agg backend) into ``--out`` (default ``out/`` at the repository root,
which git ignores); ``--show`` also opens them in a window. With the environment variable
``FUNCNET_SMOKE=1`` training examples run a few epochs only, so the test suite runs them all
quickly; an explicit ``--epochs`` wins over both.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "out"
SMOKE_EPOCHS = 3

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


def parser(description: str, *, epochs: int | None = None) -> argparse.ArgumentParser:
    """An argument parser with ``--out`` and ``--show`` (and ``--epochs`` when ``epochs`` is given)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                   help="folder the figures are written to (default: out/ at the repository root)")
    p.add_argument("--show", action="store_true", help="also show the figures in a window")
    if epochs is not None:
        p.add_argument("--epochs", type=positive_int, default=None,
                       help=f"training epochs (default {epochs}; {SMOKE_EPOCHS} when FUNCNET_SMOKE=1)")
        p.set_defaults(full_epochs=epochs)
    return p


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
