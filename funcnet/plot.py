"""Plots of the seed (matplotlib, imported only when a plot is made).

Every function draws on its own `matplotlib.figure.Figure` with an Agg canvas, saves a
PNG when given ``path`` and returns the Figure. matplotlib's global backend is never switched
and pyplot is never imported unless a window is asked for (``show=True``). Inputs may be arrays
of any backend (NumPy, cupy, jax, array_api_strict): they are copied to the host first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from funcnet.backend import to_numpy

__all__ = ["MARKERS", "decision_boundary", "finish", "loss_curve", "pyplot", "scatter", "subplots"]

MARKERS = ("o", "x", "^")


def subplots(show: bool = False, figsize: tuple[float, float] = (6.0, 4.0)) -> tuple[Any, Any]:
    """A new figure and its one axes.

    Args:
        show: whether the figure will be shown in a window: then it is made by pyplot (imported
            here, on whatever backend the user has chosen); otherwise it is a bare
            ``matplotlib.figure.Figure`` on an Agg canvas, unknown to pyplot.
        figsize: the size in inches.

    Returns:
        ``(figure, axes)``.

    Examples:
        >>> fig, ax = subplots(figsize=(3, 2))
        >>> type(fig).__name__, type(fig.canvas).__name__
        ('Figure', 'FigureCanvasAgg')
    """
    if show:
        import matplotlib.pyplot as plt

        return plt.subplots(figsize=figsize)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


class _Headless:
    """What `pyplot` hands out when no window is asked for: ``subplots`` on a bare Figure."""

    @staticmethod
    def subplots(figsize: tuple[float, float] = (6.0, 4.0), **kwargs: Any) -> tuple[Any, Any]:
        if kwargs:
            raise TypeError(f"pyplot(show=False).subplots takes figsize only, got {sorted(kwargs)}")
        return subplots(False, figsize)


def pyplot(show: bool) -> Any:
    """``matplotlib.pyplot`` when a window is asked for, otherwise a headless stand-in.

    The stand-in has ``subplots(figsize=...)`` only, which makes a bare Figure on an Agg canvas:
    the global backend is never switched (use `subplots` in new code).

    Args:
        show: whether a window is asked for.

    Returns:
        pyplot, or an object with pyplot's ``subplots(figsize=...)``.

    Examples:
        >>> fig, ax = pyplot(False).subplots(figsize=(3, 2))
        >>> type(fig.canvas).__name__
        'FigureCanvasAgg'
    """
    if show:
        import matplotlib.pyplot as plt

        return plt
    return _Headless()


def finish(plt: Any, fig: Any, path: str | Path | None, show: bool) -> Any:
    """Lay out ``fig``, save it to ``path`` (folders made) and show it when asked.

    Args:
        plt: what `pyplot` returned (only used when ``show``).
        fig: the figure.
        path: where to save a PNG (None: not saved).
        show: show the figure in a window (pyplot's ``show``).

    Returns:
        ``fig``.

    Examples:
        >>> fig, _ = subplots()
        >>> finish(None, fig, None, False) is fig
        True
    """
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    if show:
        import matplotlib.pyplot

        (plt or matplotlib.pyplot).show()
    return fig


def _host(x: Any) -> np.ndarray:
    return np.asarray(to_numpy(x))


def loss_curve(losses: Sequence[float], *, eval_interval: int = 1, ylim: tuple[float, float] | None = None,
               path: str | Path | None = None, show: bool = False, title: str = "training loss") -> Any:
    """The recorded losses against the iteration count (the book's ``trainer.plot``).

    Args:
        losses: the recorded losses (floats, or 0-d arrays of any backend).
        eval_interval: iterations between two records.
        ylim: the y range, or None for matplotlib's.
        path: where to save a PNG (None: not saved).
        show: show it in a window.
        title: the axes' title.

    Returns:
        The Figure.

    Examples:
        >>> fig = loss_curve([1.0, 0.5, 0.25], eval_interval=10)
        >>> fig.axes[0].lines[0].get_xdata().tolist()
        [10, 20, 30]
    """
    fig, ax = subplots(show, (6, 4))
    values = _host(list(losses)).astype(np.float64).reshape(-1)
    steps = np.arange(1, len(values) + 1) * eval_interval
    ax.plot(steps, values, label="train")
    # the x values are already iteration counts (one record every eval_interval iterations)
    ax.set_xlabel("iterations")
    ax.set_ylabel("loss")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(title)
    ax.legend()
    return finish(None, fig, path, show)


def _labels(t: Any) -> np.ndarray:
    t = _host(t)
    return t.argmax(axis=1) if t.ndim == 2 else t


def scatter(x: Any, t: Any, *, path: str | Path | None = None, show: bool = False, ax: Any = None,
            title: str = "spiral data set") -> Any:
    """The points of each class with the book's markers o, x, ^.

    Args:
        x: points ``(N, 2)`` of any backend.
        t: labels ``(N,)`` or one-hot ``(N, C)`` of any backend.
        path: where to save a PNG (None: not saved; ignored with ``ax``).
        show: show it in a window (ignored with ``ax``).
        ax: axes to draw on (then nothing is saved or shown and None is returned).
        title: the axes' title.

    Returns:
        The Figure, or None when drawn on a given ``ax``.

    Examples:
        >>> fig = scatter(np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([0, 1]))
        >>> len(fig.axes[0].collections)
        2
    """
    fig = None
    if ax is None:
        fig, ax = subplots(show, (5, 5))
    x, labels = _host(x), _labels(t)
    for c in np.unique(labels):
        pts = x[labels == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=40, marker=MARKERS[int(c) % len(MARKERS)], color=f"C{int(c) % 10}",
                   label=f"class {c}")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize="small")
    return fig if fig is None else finish(None, fig, path, show)


def decision_boundary(predict: Any, x: Any, t: Any, *, resolution: int = 300, path: str | Path | None = None,
                      show: bool = False, title: str = "decision boundary") -> Any:
    """Filled contours of ``argmax predict(grid)`` under the data's scatter plot.

    Args:
        predict: maps a float64 NumPy array ``(M, 2)`` to scores ``(M, C)`` (any backend's array).
        x: points ``(N, 2)`` of any backend.
        t: labels ``(N,)`` or one-hot ``(N, C)`` of any backend.
        resolution: grid points along each axis.
        path: where to save a PNG (None: not saved).
        show: show it in a window.
        title: the axes' title.

    Returns:
        The Figure.

    Examples:
        >>> x = np.array([[-1.0, 0.0], [1.0, 0.0]])
        >>> fig = decision_boundary(lambda g: np.stack([-g[:, 0], g[:, 0]], axis=1), x, np.array([0, 1]),
        ...                         resolution=20)
        >>> fig.axes[0].get_title()
        'decision boundary'
    """
    x = _host(x)
    pad = 0.1
    x_min, x_max = x[:, 0].min() - pad, x[:, 0].max() + pad
    y_min, y_max = x[:, 1].min() - pad, x[:, 1].max() + pad
    xx, yy = np.meshgrid(np.linspace(x_min, x_max, resolution), np.linspace(y_min, y_max, resolution))
    grid = np.stack([xx.ravel(), yy.ravel()], axis=1)
    scores = _host(predict(grid))
    classes = scores.argmax(axis=1).reshape(xx.shape)
    fig, ax = subplots(show, (5, 5))
    # each class's region in the colour of its markers (C0, C1, ... as in scatter)
    from matplotlib.colors import ListedColormap

    n_classes = scores.shape[1]
    cmap = ListedColormap([f"C{c % 10}" for c in range(n_classes)])
    ax.contourf(xx, yy, classes, levels=np.arange(n_classes + 1) - 0.5, alpha=0.25, cmap=cmap)
    scatter(x, t, ax=ax, title=title)
    ax.set_xlim(x_min, x_max)
    ax.set_ylim(y_min, y_max)
    return finish(None, fig, path, show)
