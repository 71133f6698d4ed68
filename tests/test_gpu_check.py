"""benchmarks/gpu_check.py as a dry run: every comparison row there and within its bound, the exit codes.

No GPU here: the check runs in quick mode on numpy and array_api_strict (the same code paths
as on cupy, against the same NumPy reference), and ``--backend cupy`` must stop with exit 2
and the reason. Timings are produced but not asserted (the machine is shared).
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import backend_or_skip

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of the repository, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import gpu_check  # noqa: E402
from funcnet import backend, layers, losses  # noqa: E402

LAYER_ROWS = [f"{name} {kind}" for name in ("MatMul", "Affine", "Sigmoid", "ReLU", "Tanh", "Softmax",
                                            "Dropout(rng=None)", "Flatten", "serial stack")
              for kind in ("apply", "vjp")]
LOSS_ROWS = [f"{name} {kind}" for name in ("softmax_cross_entropy[labels]", "softmax_cross_entropy[one-hot]",
                                           "book_softmax_cross_entropy", "sigmoid_binary_cross_entropy",
                                           "mean_squared_error")
             for kind in ("value", "vjp")]
OPTIMIZER_ROWS = ["sgd", "momentum", "nesterov[book]", "nesterov[standard]", "adagrad", "rmsprop",
                  "adam[book]", "adam[standard]"]
OTHER_ROWS = {
    "dropout": ["mask values 0 or 1/(1-rate)", "kept fraction (sigmas from 1-rate)",
                "same key same mask, other key other", "vjp reuses the mask",
                "same mask as NumPy's (elements differing)"],
    "spiral": ["final loss", "accuracy", "final loss vs numpy (relative)", "params stay on the device"],
    "checkpoint": ["save from device, load to device", "resume from it = go on"],
}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module", params=["numpy", "array_api_strict"])
def report(request):
    backend_or_skip(request.param)
    lines: list[str] = []
    return gpu_check.run(request.param, quick=True, log=lines.append), lines


def test_every_comparison_row_is_there(report):
    result, _ = report
    names = {part: [row.name for row in result.rows if row.part == part] for part in
             ("layers", "losses", "optimizers", *OTHER_ROWS)}
    assert set(LAYER_ROWS) <= set(names["layers"])
    assert set(LOSS_ROWS) <= set(names["losses"])
    assert set(OPTIMIZER_ROWS) <= set(names["optimizers"])
    for part, expected in OTHER_ROWS.items():
        assert names[part] == expected
    assert sum(len(v) for v in names.values()) == len(result.rows)  # no row outside the known parts


def test_every_row_passes_its_bound(report):
    result, lines = report
    failed = [row.line() for row in result.rows if not row.ok]
    assert not failed, "\n".join(failed)
    assert result.ok
    assert all(np.isfinite(row.value) for row in result.rows)
    assert all(row.line() in lines for row in result.rows)  # every row was printed as it ran


def test_the_timing_part_ran(report):
    result, _ = report
    assert [t.batch for t in result.timings] == list(gpu_check.QUICK_BATCHES)
    for t in result.timings:
        assert t.step > 0 and t.gemm > 0 and t.host_step > 0 and t.gemm_flop > 0
    assert result.mlp.startswith("-".join(map(str, gpu_check.QUICK_DIMS)))


def test_the_cases_cover_every_public_layer_and_loss():
    constructors = {"MatMul", "Affine", "Sigmoid", "ReLU", "Tanh", "Softmax", "Dropout", "Flatten"}
    public = {name for name in layers.__dict__ if name[:1].isupper() and callable(getattr(layers, name))}
    assert constructors <= public  # the list still names funcnet's layers
    covered = {name.split("(")[0] for name, *_ in gpu_check.layer_cases()}
    assert constructors | {"serial stack"} <= covered
    every_loss = {id(v) for v in vars(losses).values() if isinstance(v, losses.Loss)}
    checked = {id(loss) for _, loss, _, _ in gpu_check.loss_cases(np.random.default_rng(0))}
    assert every_loss <= checked


def test_main_prints_the_table_last_and_writes_markdown(tmp_path, capsys):
    out = tmp_path / "results" / "gpu.md"
    assert gpu_check.main(["--backend", "numpy", "--quick", "--markdown", str(out)]) == 0
    printed = capsys.readouterr().out.rstrip().splitlines()
    assert printed[-1].endswith("checks within their bounds")
    assert printed[-2].startswith("step, batch 64")
    assert any(line.startswith("check") and "result" in line for line in printed[-12:])
    text = out.read_text()
    assert text.startswith("# funcnet device check: numpy")
    assert "every check within its bound" in text
    for name in LAYER_ROWS + LOSS_ROWS + OPTIMIZER_ROWS:
        assert f"| {name} |" in text


def test_a_check_outside_its_bound_fails_the_run(monkeypatch, capsys):
    xs = backend_or_skip("array_api_strict")

    def off_on_the_device(params, x, *, rng=None):  # a "layer" that is wrong off the host
        return x * 1.001 if backend.namespace(x) is xs else x

    def raises_on_the_device(params, x, *, rng=None):
        if backend.namespace(x) is xs:
            raise TypeError("no such function on this backend")
        return x, lambda dy: ((), dy)

    wrong = layers.Layer(lambda key, shape, dtype="float32": (shape, ()), off_on_the_device,
                         lambda params, x, *, rng=None: (off_on_the_device(params, x), lambda dy: ((), dy)))
    broken = layers.Layer(wrong.init, lambda params, x, *, rng=None: x, raises_on_the_device)
    monkeypatch.setattr(gpu_check, "layer_cases", lambda: [("Wrong", wrong, (8,), 1.0, 1e-5),
                                                           ("Broken", broken, (8,), 1.0, 1e-5)])
    rows = {row.name: row for row in gpu_check.check_layers("array_api_strict")}
    assert not rows["Wrong apply"].ok and rows["Wrong apply"].value == pytest.approx(1e-3, rel=1e-2)
    assert not rows["Wrong vjp"].ok
    assert rows["Broken apply"].ok
    assert not rows["Broken vjp"].ok and "TypeError" in rows["Broken vjp"].note
    assert "no such function on this backend" in rows["Broken vjp"].note

    bad = gpu_check.Report("array_api_strict", "a test", True, rows=list(rows.values()))
    monkeypatch.setattr(gpu_check, "run", lambda *args, **kwargs: bad)
    assert gpu_check.main(["--backend", "array_api_strict", "--quick"]) == 1
    assert "FAILED: layers/Wrong apply" in capsys.readouterr().out


def test_a_result_left_on_the_host_is_a_failure():
    xs = backend_or_skip("array_api_strict")
    on_device = xs.asarray(np.ones(3, np.float32))
    row = gpu_check.compare("layers", "x", {"a": np.ones(3, np.float32)}, {"a": np.ones(3, np.float32)},
                            1e-5, "array_api_strict")
    assert not row.ok and "came back as numpy" in row.note
    assert gpu_check.compare("layers", "x", on_device, np.ones(3, np.float32), 1e-5, "array_api_strict").ok
    dtype = gpu_check.compare("layers", "x", xs.astype(on_device, xs.float64), np.ones(3, np.float32), 1e-5,
                              "array_api_strict")
    assert not dtype.ok and "dtype" in dtype.note


@pytest.mark.parametrize("command", [["-m", "benchmarks.gpu_check"], ["benchmarks/gpu_check.py"]])
def test_cupy_unavailable_exits_2_with_the_reason(command):
    reason = backend.why_unavailable("cupy")
    if reason is None:
        pytest.skip("cupy is usable here: run python -m benchmarks.gpu_check itself")
    done = subprocess.run([sys.executable, *command, "--backend", "cupy"], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip() == f"gpu_check: backend 'cupy' is unavailable: {reason}"


def test_a_dry_run_never_imports_cupy():
    code = ("import sys; from benchmarks import gpu_check; "
            "rc = gpu_check.main(['--backend', 'numpy', '--quick', '--no-timing']); "
            "print('cupy imported' if 'cupy' in sys.modules else 'no cupy', rc)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().splitlines()[-1] == "no cupy 0"


def test_the_cupy_helpers_against_a_stand_in(monkeypatch):
    # the only cupy-specific code of the check (the card's name, the stream sync), run here on a fake
    synced = []
    stream = types.SimpleNamespace(synchronize=lambda: synced.append(True))
    runtime = types.SimpleNamespace(getDeviceProperties=lambda i: {"name": b"Fake H100"},
                                    runtimeGetVersion=lambda: 12040)
    cuda = types.SimpleNamespace(Device=lambda: types.SimpleNamespace(id=0), runtime=runtime,
                                 get_current_stream=lambda: stream)
    fake = types.ModuleType("cupy")
    fake.cuda, fake.__version__ = cuda, "13.9.9"
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.delenv("CUPY_TF32", raising=False)
    monkeypatch.delenv("NVIDIA_TF32_OVERRIDE", raising=False)
    described = gpu_check.describe_device("cupy")
    assert described.startswith("Fake H100 (GPU 0; cupy 13.9.9, CUDA runtime 12.4; TF32 off")
    gpu_check.synchronizer("cupy")(object())
    assert synced == [True]
    monkeypatch.setenv("CUPY_TF32", "1")
    assert "CUPY_TF32=1" in gpu_check.describe_device("cupy")


def test_out_of_memory_keeps_the_batches_timed_and_frees_the_pool(monkeypatch):
    real = gpu_check.step_and_gemms
    freed = []

    def runs_out_at_64(name, activation, dims, batch):
        if batch == 64:
            raise MemoryError("Out of memory allocating 1,073,741,824 bytes (stand-in)")
        return real(name, activation, dims, batch)

    monkeypatch.setattr(gpu_check, "step_and_gemms", runs_out_at_64)
    monkeypatch.setattr(gpu_check, "free_device_memory", freed.append)
    monkeypatch.setattr(gpu_check, "check_spiral", lambda name, report: [])
    result = gpu_check.run("numpy", quick=True, log=lambda line: None)
    assert [t.batch for t in result.timings] == [16]  # the batch timed before the failure is kept
    assert result.mlp.startswith("64-128-128-10")
    assert freed == ["numpy"]
    failed = [row for row in result.rows if not row.ok]
    assert [row.name for row in failed] == ["large MLP step, batch 64"]
    assert "out of memory at batch 64" in failed[0].note and "1 smaller batch size(s) kept" in failed[0].note
    assert "step, batch 16" in [r[0] for r in gpu_check.summary_rows(result)]


def test_other_errors_while_timing_are_not_taken_for_out_of_memory(monkeypatch):
    def broken(name, activation, dims, batch):
        raise ValueError("a bug, not a full device")

    monkeypatch.setattr(gpu_check, "step_and_gemms", broken)
    with pytest.raises(ValueError, match="a bug"):
        gpu_check.time_mlp("numpy", "sigmoid", True)


@pytest.mark.parametrize(("err", "oom"), [
    (MemoryError(), True),
    (type("OutOfMemoryError", (Exception,), {})("Out of memory allocating 512 bytes"), True),
    (RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 4.00GiB"), True),
    (RuntimeError("cudaErrorMemoryAllocation: out of memory"), True),
    (RuntimeError("cudaErrorInsufficientDriver"), False),
])
def test_what_counts_as_out_of_memory(err, oom):
    assert gpu_check.is_out_of_memory(err) is oom


def test_freeing_the_cupy_pools_against_a_stand_in(monkeypatch):
    freed = []
    fake = types.ModuleType("cupy")
    fake.get_default_memory_pool = lambda: types.SimpleNamespace(free_all_blocks=lambda: freed.append("device"))
    fake.get_default_pinned_memory_pool = lambda: types.SimpleNamespace(
        free_all_blocks=lambda: freed.append("pinned"))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    gpu_check.free_device_memory("cupy")
    assert freed == ["device", "pinned"]
    gpu_check.free_device_memory("numpy")  # nothing to free but garbage
    assert freed == ["device", "pinned"]
