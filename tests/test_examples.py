"""The examples: each runs on its own as a subprocess, headless, and writes its figures.

Training examples run a few epochs under ``FUNCNET_SMOKE=1``; the main demo also runs at the
seed's full configuration (marked slow, still run in CI), and its option handling, checkpoint
and resume are checked here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from funcnet import backend, checkpoint, optim, random, train, tree
from funcnet.models import TwoLayerNet

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEMO = "train_spiral.py"

# every example and the figures it must write; a new example without an entry fails a test
FIGURES = {
    "01_numpy_review.py": ["01_matrix_product.png"],
    "02_forward.py": ["02_activations.png"],
    "03_losses_and_graphs.py": ["03_losses_and_gradients.png"],
    "04_spiral_data.py": ["04_spiral.png"],
    "05_custom_training_loop.py": ["05_custom_loop_loss.png"],
    "06_trainer.py": ["06_trainer_loss.png"],
    "07_decision_boundary.py": ["07_decision_boundary.png"],
    "08_precision.py": ["08_precision.png"],
    "09_gpu.py": ["09_gpu_loss.png"],
    "sweep_spiral.py": ["sweep_spiral_loss.png"],
    DEMO: ["spiral_loss.png", "spiral_decision_boundary.png"],
}

# a line each example must print (the seed's own output where it has one)
PRINTS = {
    "01_numpy_review.py": "operands could not be broadcast together with shapes (2,5,1) (2,2,5)",
    "02_forward.py": "h.shape = (10, 4)",
    "03_losses_and_graphs.py": "all 10 gradient checks pass",
    "04_spiral_data.py": "x (300, 2)\nt (300, 3)",
    "05_custom_training_loop.py": "| epoch 1 |  iter 10 / 10 | loss ",
    "06_trainer.py": "| epoch 1 |  iter 10 / 10 | time ",
    "07_decision_boundary.py": "accuracy",
    "08_precision.py": "float16 file",
    "09_gpu.py": "[numpy]" if backend.why_unavailable("cupy") else "[cupy]",
    "sweep_spiral.py": "6 settings x 8 seeds = 48 runs",
    DEMO: "final loss",
}

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(script: str, out: Path, *args: str, smoke: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("FUNCNET_SMOKE", "DISPLAY", "WAYLAND_DISPLAY")}
    if smoke:
        env["FUNCNET_SMOKE"] = "1"
    return subprocess.run([sys.executable, str(EXAMPLES / script), "--out", str(out), *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit code {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result


def summary(out: Path) -> dict:
    return json.loads((out / "spiral_summary.json").read_text())


def test_every_example_is_listed():
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(FIGURES)


@pytest.mark.parametrize("script", sorted(FIGURES))
def test_example_runs_headless_and_writes_its_figures(script, tmp_path):
    out = tmp_path / "figures"  # not there yet: the example creates it
    args = ("--no-progress",) if script == DEMO else ()
    result = ok(run(script, out, *args))
    assert PRINTS[script] in result.stdout
    for name in FIGURES[script]:
        path = out / name
        assert path.is_file(), f"{script} did not write {name}"
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000


def test_smoke_mode_shortens_training_and_epochs_wins(tmp_path):
    ok(run(DEMO, tmp_path / "smoke", "--no-progress"))
    assert summary(tmp_path / "smoke")["epochs"] == 3
    ok(run(DEMO, tmp_path / "explicit", "--no-progress", "--epochs", "5"))
    assert summary(tmp_path / "explicit")["epochs"] == 5


@pytest.mark.slow
def test_main_demo_reaches_the_books_result(tmp_path):
    result = ok(run(DEMO, tmp_path, "--no-progress", smoke=False))
    s = summary(tmp_path)
    assert s["epochs"] == 300 and s["steps"] == 3000
    assert s["optimizer"] == "sgd" and s["lr"] == 1.0 and s["batch_size"] == 30 and s["hidden"] == 10
    assert len(s["losses"]) == 300  # one mean loss every 10 iterations
    assert s["final_loss"] < 0.15
    assert s["loss"] < 0.15
    assert s["accuracy"] >= 0.95
    assert f"accuracy {s['accuracy']:.3f}" in result.stdout
    assert "wall time" in result.stdout


def test_help(tmp_path):
    result = ok(run(DEMO, tmp_path, "--help"))
    for option in ("--seed", "--epochs", "--batch-size", "--hidden", "--lr", "--optimizer", "--backend",
                   "--dtype", "--out", "--no-progress", "--checkpoint", "--resume"):
        assert option in result.stdout


@pytest.fixture(scope="module")
def saved_state(tmp_path_factory):
    """A checkpoint of a short run of the seed's configuration."""
    out = tmp_path_factory.mktemp("saved")
    ok(run(DEMO, out, "--no-progress", "--epochs", "2", "--checkpoint", str(out / "state.safetensors")))
    return out / "state.safetensors"


def invalid_cases(tmp: Path, saved: Path) -> list[tuple[list[str], str]]:
    (tmp / "garbage.safetensors").write_bytes(b"not a checkpoint at all")
    return [
        (["--lr", "-1"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--lr", "fast"], "--lr"),
        (["--epochs", "0"], "--epochs"),
        (["--epochs", "2.5"], "--epochs"),
        (["--batch-size", "0"], "--batch-size"),
        (["--batch-size", "301"], "--batch-size"),
        (["--hidden", "-3"], "--hidden"),
        (["--seed", "-1"], "--seed"),
        (["--optimizer", "lbfgs"], "--optimizer"),
        (["--backend", "tensorflow"], "--backend"),
        (["--dtype", "float16"], "--dtype"),
        (["--no-such-option"], "unrecognized arguments"),
        (["--checkpoint", str(tmp)], "--checkpoint"),
        (["--resume", str(tmp / "missing.safetensors")], "--resume"),
        (["--resume", str(tmp / "garbage.safetensors")], "--resume"),
        (["--resume", str(saved), "--hidden", "20"], "--resume"),
        (["--resume", str(saved), "--optimizer", "adam"], "--resume"),
    ]


def assert_one_line_error(result: subprocess.CompletedProcess, mentions: str) -> None:
    assert result.returncode == 2, f"exit code {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == errors[0]  # the last line, after argparse's usage
    assert errors[0].startswith(f"{DEMO}: error:") and mentions in errors[0], errors[0]


def test_invalid_options_give_a_one_line_error_and_exit_code_2(tmp_path, saved_state):
    for args, mentions in invalid_cases(tmp_path, saved_state):
        result = run(DEMO, tmp_path / "out", "--no-progress", *args)
        assert_one_line_error(result, mentions)
        assert not (tmp_path / "out" / "spiral_summary.json").exists(), args


def test_an_unavailable_backend_is_a_one_line_error(tmp_path):
    unavailable = [name for name in ("cupy", "jax", "array_api_strict") if backend.why_unavailable(name)]
    if not unavailable:
        pytest.skip("every backend is usable here")
    for name in unavailable:
        result = run(DEMO, tmp_path, "--no-progress", "--backend", name)
        assert_one_line_error(result, "--backend")
        assert backend.why_unavailable(name) in result.stderr


def test_checkpoint_then_resume_equals_one_run_bit_for_bit(tmp_path):
    first, second, whole = tmp_path / "first", tmp_path / "second", tmp_path / "whole"
    common = ("--no-progress", "--seed", "3")
    ok(run(DEMO, first, *common, "--epochs", "4", "--checkpoint", str(first / "half.safetensors"), smoke=False))
    result = ok(run(DEMO, second, *common, "--epochs", "6", "--resume", str(first / "half.safetensors"),
                    "--checkpoint", str(second / "end.safetensors"), smoke=False))
    assert "resumed from" in result.stdout and "at step 40" in result.stdout
    ok(run(DEMO, whole, *common, "--epochs", "10", "--checkpoint", str(whole / "end.safetensors"), smoke=False))

    resumed, uninterrupted = summary(second), summary(whole)
    assert resumed["steps"] == uninterrupted["steps"] == 100
    assert resumed["final_loss"] == uninterrupted["final_loss"]
    assert resumed["loss"] == uninterrupted["loss"]
    assert resumed["losses"] == uninterrupted["losses"]  # the history travels in the checkpoint

    model, optimizer = TwoLayerNet(2, 10, 3), optim.SGD(lr=1.0)
    like = train.init_state(model, optimizer, random.key(0), (2,))
    a = checkpoint.load(second / "end.safetensors", like=like)
    b = checkpoint.load(whole / "end.safetensors", like=like)
    assert a.step == b.step == 100
    leaves_a, leaves_b = tree.leaves(a), tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) == len(tree.leaves(like))
    for x, y in zip(leaves_a, leaves_b, strict=True):
        assert np.array_equal(x, y)  # params, optimizer state, key and step
