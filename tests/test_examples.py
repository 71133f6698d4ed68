"""The examples: each runs on its own as a subprocess, headless, and writes its figures.

Training examples run a few epochs under ``FUNCNET_SMOKE=1``; the main demo also runs at the
seed's full configuration (marked slow, still run in CI), and its option handling, checkpoint
and resume are checked here.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
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
    "10_custom_layer.py": ["10_custom_layer_loss.png"],
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
    "10_custom_layer.py": "gradcheck LayerNorm: worst relative error",
    "sweep_spiral.py": "6 settings x 8 seeds = 48 runs",
    DEMO: "final loss",
}

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def environment(smoke: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FUNCNET_SMOKE", "DISPLAY", "WAYLAND_DISPLAY")}
    if smoke:
        env["FUNCNET_SMOKE"] = "1"
    return env


def run(script: str, out: Path, *args: str, smoke: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    env = environment(smoke)
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
    for option, default in (("--seed", "0"), ("--epochs", "300"), ("--batch-size", "30"), ("--hidden", "10"),
                            ("--optimizer", "sgd"), ("--backend", "numpy"), ("--dtype", "float32")):
        assert f"(default: {default}" in " ".join(help_of(result.stdout)[option].split()), option


# the scripts this file owns the command-line behaviour of (sweep_spiral.py has its own tests)
CLI_SCRIPTS = sorted(set(FIGURES) - {"sweep_spiral.py"})


def help_of(text: str) -> dict[str, str]:
    """Each option of ``--help`` output and its help text (the lines up to the next option)."""
    options: dict[str, str] = {}
    current = None
    for line in text.split("options:", 1)[1].splitlines():
        match = re.match(r"^  (-{1,2}[\w-]+)", line)
        if match:
            current = match.group(1)
            options[current] = line[match.end():]
        elif current is not None:
            options[current] += " " + line.strip()
    return options


@pytest.mark.parametrize("script", CLI_SCRIPTS)
def test_help_names_each_default_once(script, tmp_path):
    result = ok(run(script, tmp_path, "--help"))
    assert result.stderr == ""
    options = help_of(result.stdout)
    assert "--out" in options and "--show" in options
    for option, text in options.items():
        assert text.count("(default") <= 1, f"{script} {option}: {text}"
        assert "(default: None)" not in text and "(default: False)" not in text, f"{script} {option}: {text}"
    assert str(EXAMPLES.parent) not in result.stdout  # no machine path in the help


@pytest.mark.parametrize("script", CLI_SCRIPTS)
def test_an_unknown_option_is_one_line_and_exit_code_2(script, tmp_path):
    assert_one_line_error(run(script, tmp_path, "--no-such-option"), "unrecognized arguments: --no-such-option",
                          script)
    assert_one_line_error(run(script, tmp_path, "--out"), "--out", script)


@pytest.mark.parametrize("script", CLI_SCRIPTS)
def test_a_closed_stdout_ends_the_script_quietly(script, tmp_path):
    """``script | head -3``: the reader goes away; the script stops on SIGPIPE without a traceback."""
    process = subprocess.Popen([sys.executable, str(EXAMPLES / script), "--out", str(tmp_path)],
                               env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # as head does after its lines: every write from now on fails
    stderr = process.stderr.read()
    process.stderr.close()
    assert process.wait(timeout=300) == -signal.SIGPIPE, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr and "Exception ignored" not in stderr, stderr


def test_head_in_a_shell_pipeline_ends_quietly(tmp_path):
    command = f'"{sys.executable}" "{EXAMPLES / DEMO}" --out "{tmp_path}" --no-progress | head -3'
    result = subprocess.run(["bash", "-c", command], env=environment(), capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 3
    assert result.stderr == "", result.stderr


def progress_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if re.search(r"epoch \d+/\d+ \(\d+%\)", line)]


@pytest.mark.parametrize("script", ["05_custom_training_loop.py", "07_decision_boundary.py", "08_precision.py",
                                    "09_gpu.py", DEMO])
def test_training_writes_a_few_progress_lines_into_a_log_file(script, tmp_path):
    log = tmp_path / "train.log"
    with log.open("w") as stderr:  # stderr is a file, not a terminal: lines, not a bar
        result = subprocess.run([sys.executable, str(EXAMPLES / script), "--out", str(tmp_path), "--epochs", "20"],
                                env=environment(), stdout=subprocess.PIPE, stderr=stderr, text=True,
                                timeout=300, check=False)
    text = log.read_text()
    assert result.returncode == 0, text
    lines = progress_lines(text)
    assert 2 <= len(lines) <= 10, text  # a few lines (08 and a GPU's 09 train twice)
    assert "\r" not in text and "Traceback" not in text
    assert lines[-1].split(":")[-1].strip().startswith("epoch 20/20 (100%)")
    no_progress = run(script, tmp_path, "--epochs", "20", "--no-progress")
    assert progress_lines(ok(no_progress).stderr) == []


def test_training_shows_a_tqdm_bar_on_a_terminal(tmp_path):
    pty = pytest.importorskip("pty")
    import fcntl
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a real terminal's size
    try:
        result = subprocess.run([sys.executable, str(EXAMPLES / DEMO), "--out", str(tmp_path), "--epochs", "20"],
                                env=environment(), stdout=subprocess.PIPE, stderr=follower, timeout=300,
                                check=False)
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the terminal's other side is closed: all read
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(leader)
    terminal = b"".join(chunks).decode(errors="replace")
    assert result.returncode == 0, terminal
    assert "20/20" in terminal and "epoch" in terminal and "100%" in terminal, terminal
    assert progress_lines(terminal) == []  # a bar, not the log file's lines


def test_float16_params_train(tmp_path):
    result = ok(run(DEMO, tmp_path, "--no-progress", "--dtype", "float16", "--epochs", "30"))
    s = summary(tmp_path)
    assert s["dtype"] == "float16" and "float16 on numpy" in result.stdout
    assert np.isfinite(s["final_loss"]) and s["final_loss"] < 1.1


@pytest.fixture(scope="module")
def saved_state(tmp_path_factory):
    """A checkpoint of a short run of the seed's configuration."""
    out = tmp_path_factory.mktemp("saved")
    ok(run(DEMO, out, "--no-progress", "--epochs", "2", "--checkpoint", str(out / "state.safetensors")))
    return out / "state.safetensors"


def invalid_cases(tmp: Path, saved: Path) -> list[tuple[list[str], str]]:
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
        (["--dtype", "int8"], "--dtype"),
        (["--no-such-option"], "unrecognized arguments"),
        (["--checkpoint", str(tmp)], "--checkpoint"),
        (["--resume", str(tmp / "missing.safetensors")], "--resume"),
    ]


def resume_cases(tmp: Path, saved: Path) -> list[tuple[list[str], str]]:
    """``--resume`` files that cannot continue this run, and what the one-line error must say."""
    (tmp / "garbage.safetensors").write_bytes(b"not a checkpoint at all")
    (tmp / "notes.txt").write_text("a text file, long enough to have a header length field\n" * 20)
    params = {"W": np.ones((2, 3), np.float32)}
    checkpoint.save(tmp / "plain.safetensors", params)  # a checkpoint, but not train_spiral's
    for name, metadata in (("junk_config", {"train_spiral.config": "{not json", "train_spiral.losses": "[]"}),
                           ("junk_losses", {"train_spiral.config": json.dumps({"optimizer": "sgd", "hidden": 10}),
                                            "train_spiral.losses": '["a", null]'}),
                           ("junk_shape", {"train_spiral.config": "[1, 2]"})):
        checkpoint.save(tmp / f"{name}.safetensors", params, metadata=metadata)
    return [
        (["--resume", str(tmp / "garbage.safetensors")], "--resume: not a checkpoint: "),
        (["--resume", str(tmp / "notes.txt")], "--resume: not a checkpoint: "),
        (["--resume", str(tmp / "plain.safetensors")], "not one written by train_spiral.py --checkpoint"),
        (["--resume", str(tmp / "junk_config.safetensors")], "stored with it are damaged"),
        (["--resume", str(tmp / "junk_losses.safetensors")], "stored with it are damaged"),
        (["--resume", str(tmp / "junk_shape.safetensors")], "stored with it are damaged"),
        (["--resume", str(saved), "--hidden", "20"],
         "was saved by a run with --hidden 10, this run has --hidden 20; resume with --hidden 10"),
        (["--resume", str(saved), "--optimizer", "adam"],
         "was saved by a run with --optimizer sgd, this run has --optimizer adam; resume with --optimizer sgd"),
    ]


def test_resume_errors_say_what_the_file_is_and_what_differs(tmp_path, saved_state):
    for args, mentions in resume_cases(tmp_path, saved_state):
        result = run(DEMO, tmp_path / "out", "--no-progress", *args)
        assert_one_line_error(result, mentions)
        assert "like" not in result.stderr.split("error:", 1)[1].split()  # no internal names
        assert "opt_state" not in result.stderr and "params/" not in result.stderr


def assert_one_line_error(result: subprocess.CompletedProcess, mentions: str, script: str = DEMO) -> None:
    assert result.returncode == 2, f"exit code {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr (no usage block), got:\n{result.stderr}"
    assert lines[0].startswith(f"{script}: error:") and mentions in lines[0], lines[0]


def test_invalid_options_give_a_one_line_error_and_exit_code_2(tmp_path, saved_state):
    # the --resume files that do not fit are test_resume_errors_say_what_the_file_is_and_what_differs
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


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_an_unwritable_checkpoint_or_out_path_is_refused_before_training(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "folder").mkdir()
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere" / "state.safetensors")
    (tmp_path / "taken").mkdir()
    os.mkfifo(tmp_path / "taken" / "spiral_summary.json")
    (tmp_path / "taken" / "spiral_loss.png").mkdir()
    cases = [
        (["--checkpoint", str(tmp_path / "pipe")], "--checkpoint: '" + str(tmp_path / "pipe") + "' is a FIFO"),
        (["--checkpoint", str(tmp_path / "folder")], "--checkpoint: " + str(tmp_path / "folder") + " is a folder"),
        (["--checkpoint", str(tmp_path / "dangling")],
         "--checkpoint: no folder to save the checkpoint in (create it first): " + str(tmp_path / "nowhere")),
    ]
    for args, mentions in cases:
        result = run(DEMO, tmp_path / "out", "--no-progress", *args, timeout=60)
        assert_one_line_error(result, mentions)
        # training prints its settings first: an empty stdout means nothing was trained
        assert result.stdout == "" and not (tmp_path / "out" / "spiral_summary.json").exists()
    result = run(DEMO, tmp_path / "taken", "--no-progress", timeout=60)
    assert_one_line_error(result, "--out: ")
    assert result.stdout == "" and "spiral_" in result.stderr
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe").st_mode) and not (tmp_path / "nowhere").exists()
