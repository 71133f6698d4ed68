"""examples/sweep_spiral.py as a command-line tool: an unreachable scheduler is one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_an_unreachable_scheduler_is_one_line_and_exit_2_within_the_connect_timeout(tmp_path):
    pytest.importorskip("distributed")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "FUNCNET_SMOKE")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(REPO / "examples" / "sweep_spiral.py"), "--out", str(tmp_path),
                             "--scheduler", "tcp://127.0.0.1:1", "--connect-timeout", "1", "--no-progress"],
                            capture_output=True, text=True, env=env, timeout=120, check=False)
    assert time.monotonic() - started < 30  # not distributed's 30 s default and more
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sweep_spiral.py: error: --scheduler tcp://127.0.0.1:1: cannot connect within 1 s")
    assert not list((tmp_path).glob("sweep_spiral_runs/*.json"))


def test_the_connect_timeout_must_be_a_positive_number(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "examples" / "sweep_spiral.py"), "--out", str(tmp_path),
                             "--connect-timeout", "0"], capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2 and "--connect-timeout" in result.stderr
