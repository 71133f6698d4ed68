"""funcnet.plot: any backend's arrays in, a bare Figure out, matplotlib's global backend untouched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import backend_or_skip

from funcnet import backend, plot

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


def _data():
    x = np.array([[0.0, 0.0], [1.0, 0.5], [-1.0, 1.0], [0.5, -1.0]], np.float32)
    t = np.array([0, 1, 2, 1])
    return x, t


def _predict(grid):  # scores on jax: class = which third of the x axis
    g = jnp.asarray(grid)
    return jnp.stack([-g[:, 0], -jnp.abs(g[:, 0] - 0.3), g[:, 0]], axis=1)


def test_jax_inputs_draw_and_save(tmp_path):
    x, t = _data()
    xj, tj = jnp.asarray(x), jnp.asarray(t)
    one_hot = jnp.asarray(t[:, None] == np.arange(3), dtype=jnp.float32)
    fig = plot.loss_curve([jnp.asarray(1.0), jnp.asarray(0.5)], eval_interval=5, path=tmp_path / "a" / "loss.png")
    assert fig.axes[0].lines[0].get_xdata().tolist() == [5, 10]
    assert fig.axes[0].lines[0].get_ydata().tolist() == [1.0, 0.5]
    fig = plot.scatter(xj, one_hot, path=tmp_path / "scatter.png")
    assert len(fig.axes[0].collections) == 3
    fig = plot.decision_boundary(_predict, xj, tj, resolution=30, path=tmp_path / "boundary.png")
    assert fig.axes[0].get_title() == "decision boundary"
    for name in ("a/loss.png", "scatter.png", "boundary.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG


def test_array_api_strict_inputs():
    xs = backend_or_skip("array_api_strict")
    x, t = _data()
    fig = plot.scatter(backend.put(x, xs), backend.put(t, xs))
    points = sorted(tuple(p) for c in fig.axes[0].collections for p in c.get_offsets().tolist())
    assert points == sorted(tuple(p) for p in x.tolist())


def test_the_headless_stand_in_for_pyplot():
    fig, _ = plot.pyplot(False).subplots(figsize=(4, 3))
    assert type(fig).__name__ == "Figure" and type(fig.canvas).__name__ == "FigureCanvasAgg"
    assert tuple(fig.get_size_inches()) == (4.0, 3.0)
    assert plot.finish(plot.pyplot(False), fig, None, False) is fig
    with pytest.raises(TypeError, match="figsize only"):
        plot.pyplot(False).subplots(nrows=2)


NO_SWITCH = """
import sys
import matplotlib
matplotlib.use("svg")
import jax.numpy as jnp
import numpy as np
from funcnet import plot
x = jnp.asarray([[0.0, 0.0], [1.0, 1.0]])
plot.loss_curve(jnp.asarray([1.0, 0.5]), path=sys.argv[1])
plot.scatter(x, jnp.asarray([0, 1]))
plot.decision_boundary(lambda g: jnp.stack([-g[:, 0], g[:, 0]], axis=1), x, jnp.asarray([0, 1]), resolution=10)
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""


def test_plots_never_switch_the_global_backend_nor_import_pyplot(tmp_path):
    done = subprocess.run([sys.executable, "-c", NO_SWITCH, str(tmp_path / "loss.png")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["svg", "False"]
    assert (tmp_path / "loss.png").read_bytes()[:8] == PNG
