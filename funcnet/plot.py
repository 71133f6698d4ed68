"""Plots of the seed (matplotlib, imported only when a plot is made).

Every function saves a PNG when given ``path`` (headless: the Agg backend is used whenever no
window is asked for) and returns the matplotlib Figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MARKERS = ("o", "x", "^")


def pyplot(show: bool) -> Any:
    """matplotlib.pyplot, on the headless Agg backend unless a window is asked for."""
    import matplotlib

    if not show:
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def finish(plt: Any, fig: Any, path: str | Path | None, show: bool) -> Any:
    """Lay out ``fig``, save it to ``path`` (folders made), show or close it; returns it."""
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    if show:
        plt.show()
    else:
        plt.close(fig)
    return fig


def loss_curve(losses: Sequence[float], *, eval_interval: int = 1, ylim: tuple[float, float] | None = None,
               path: str | Path | None = None, show: bool = False, title: str = "training loss") -> Any:
    """The recorded losses against the iteration count (the book's ``trainer.plot``)."""
    plt = pyplot(show)
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = np.arange(1, len(losses) + 1) * eval_interval
    ax.plot(steps, losses, label="train")
    # the x values are already iteration counts (one record every eval_interval iterations)
    ax.set_xlabel("iterations")
    ax.set_ylabel("loss")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(title)
    ax.legend()
    return finish(plt, fig, path, show)


def _labels(t: Any) -> np.ndarray:
    t = np.asarray(t)
    return t.argmax(axis=1) if t.ndim == 2 else t


def scatter(x: Any, t: Any, *, path: str | Path | None = None, show: bool = False, ax: Any = None,
            title: str = "spiral data set") -> Any:
    """The points of each class with the book's markers o, x, ^."""
    plt = pyplot(show or ax is not None)
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 5))
    x, labels = np.asarray(x), _labels(t)
    for c in np.unique(labels):
        pts = x[labels == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=40, marker=MARKERS[int(c) % len(MARKERS)], color=f"C{int(c) % 10}",
                   label=f"class {c}")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize="small")
    return fig if fig is None else finish(plt, fig, path, show)


def decision_boundary(predict: Any, x: Any, t: Any, *, resolution: int = 300, path: str | Path | None = None,
                      show: bool = False, title: str = "decision boundary") -> Any:
    """Filled contours of ``argmax predict(grid)`` under the data's scatter plot.

    ``predict`` maps a float64 NumPy array (M, 2) to scores (M, C) (any backend's array).
    """
    from funcnet.backend import to_numpy

    plt = pyplot(show)
    x = np.asarray(x)
    pad = 0.1
    x_min, x_max = x[:, 0].min() - pad, x[:, 0].max() + pad
    y_min, y_max = x[:, 1].min() - pad, x[:, 1].max() + pad
    xx, yy = np.meshgrid(np.linspace(x_min, x_max, resolution), np.linspace(y_min, y_max, resolution))
    grid = np.stack([xx.ravel(), yy.ravel()], axis=1)
    scores = np.asarray(to_numpy(predict(grid)))
    classes = scores.argmax(axis=1).reshape(xx.shape)
    fig, ax = plt.subplots(figsize=(5, 5))
    # each class's region in the colour of its markers (C0, C1, ... as in scatter)
    from matplotlib.colors import ListedColormap

    n_classes = scores.shape[1]
    cmap = ListedColormap([f"C{c % 10}" for c in range(n_classes)])
    ax.contourf(xx, yy, classes, levels=np.arange(n_classes + 1) - 0.5, alpha=0.25, cmap=cmap)
    scatter(x, t, ax=ax, title=title)
    ax.set_xlim(x_min, x_max)
    ax.set_ylim(y_min, y_max)
    return finish(plt, fig, path, show)
