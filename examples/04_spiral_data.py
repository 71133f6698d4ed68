"""Seed 1-4-1, the spiral data set: 300 points on three interleaved arms, drawn with markers o, x, ^.

    python examples/04_spiral_data.py [--out DIR] [--show]
"""

from __future__ import annotations

import _common
import numpy as np

from funcnet import plot
from funcnet.datasets import spiral


def main(argv: list[str] | None = None) -> None:
    args = _common.parse(_common.parser(__doc__.splitlines()[0]), argv)
    x, t = spiral.load_data()
    print("x", x.shape)  # (300, 2)
    print("t", t.shape)  # (300, 3)
    print(f"x: {x.dtype}, in [{x.min():.3f}, {x.max():.3f}]; t: {t.dtype} one-hot, "
          f"{spiral.N} points for each of {spiral.CLS_NUM} classes {np.sum(t, axis=0).tolist()}")
    ends = [x[(i + 1) * spiral.N - 1].round(3).tolist() for i in range(spiral.CLS_NUM)]
    print("outermost point of each arm:", ends)
    _, labels = spiral.load_data(one_hot=False)
    print("labels (one_hot=False):", labels.shape, labels.dtype, "->", np.unique(labels).tolist())
    path = args.out / "04_spiral.png"
    plot.scatter(x, t, path=path, show=args.show, title="spiral data set (markers o, x, ^)")
    _common.saved(path)


if __name__ == "__main__":
    _common.run(main)
