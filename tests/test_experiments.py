"""Sweeps: the same table, bit for bit and in the same order, on every executor; resume; failures.

The experiment functions below live in this module so that worker processes (a process pool, a
Dask LocalCluster) import them by name: their files on disk are how a test counts executions.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import types
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from funcnet import experiments, random
from funcnet.experiments import Results, SweepError, experiment_id, grid, run_id, sweep
from funcnet.recipes import spiral_experiment

SPIRAL_GRID = grid(hidden=[5, 10], lr=[0.3, 1.0], epochs=2)
SEEDS = [0, 1, 7]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def toy(config, seed):
    """A tiny seeded experiment: a few random draws scaled by the configuration."""
    draws = random.normal(random.key(seed), (4,), dtype="float32") * config["scale"]
    return {"loss": float(np.abs(draws).mean()), "peak": draws.max(), "history": np.abs(draws).tolist()}


def counted(config, seed):
    """``toy``, leaving one file per execution in ``config["dir"]``; fails for seeds in ``config["fail"]``."""
    folder = Path(config["dir"])
    n = len(list(folder.glob(f"ran-{config['scale']}-{seed}-*")))
    (folder / f"ran-{config['scale']}-{seed}-{n}").touch()
    if seed in config.get("fail", ()):
        raise ValueError(f"seed {seed} is unlucky")
    return toy(config, seed)


def crash_once(config, seed):
    """``toy``, but the first attempt of the seeds in ``config["crash"]`` kills its own process."""
    folder = Path(config["dir"])
    (folder / f"attempt-{seed}-{os.getpid()}-{len(list(folder.iterdir()))}").touch()
    first = folder / f"crashed-{seed}"
    if seed in config["crash"] and not first.exists():
        first.touch()
        os._exit(3)  # a dying worker: no exception, no cleanup
    return toy(config, seed)


def scaled(factor: float):
    """A factory of experiments: closures of one ``module.qualname`` that differ only in ``factor``."""
    def experiment(config, seed):
        time.sleep(config.get("sleep", 0.0))
        return {"loss": factor * (seed + 1)}
    return experiment


def times(config, seed, *, factor):
    """An experiment to bind with ``functools.partial``."""
    time.sleep(config.get("sleep", 0.0))
    return {"loss": factor * (seed + 1)}


def plus(config, seed, *, factor):
    """Another function to bind with ``functools.partial``, of the same signature as ``times``."""
    return {"loss": factor + seed}


class TrainingInterrupted(KeyboardInterrupt):
    """What ``fit`` raises on Ctrl-C: a KeyboardInterrupt carrying the last complete state."""


INTERRUPTS = {"fit": TrainingInterrupted, "ctrl-c": KeyboardInterrupt}


def executions(folder: Path, prefix: str = "ran-") -> int:
    return len(list(folder.glob(f"{prefix}*")))


def reproducible(results: Results) -> list[dict]:
    """The rows without the run time, as exact text (floats by repr): equal text, equal bits."""
    return [json.dumps(row) for row in results.drop("time")]


def spawn_pool(workers: int = 2) -> ProcessPoolExecutor:
    # spawn, not fork: this process has threads (Dask's, maybe BLAS's) that a fork would copy mid-flight
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


@pytest.fixture(scope="module")
def sequential():
    return sweep(spiral_experiment, SPIRAL_GRID, SEEDS, progress=False)


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as cluster, distributed.Client(cluster) as c:
        yield c


# ------------------------------------------------------------------------------ the grid and names


def test_grid_is_the_cartesian_product_in_a_stable_order():
    assert grid(a=[1, 2], b=("x", "y"), c=3) == [
        {"a": 1, "b": "x", "c": 3}, {"a": 1, "b": "y", "c": 3},
        {"a": 2, "b": "x", "c": 3}, {"a": 2, "b": "y", "c": 3},
    ]
    assert grid(name="sgd") == [{"name": "sgd"}]  # a string is one value, not an axis of letters
    assert grid(a=[]) == []
    with pytest.raises(TypeError, match="set"):
        grid(a={1, 2})


def test_run_id_is_a_stable_hash_of_config_and_seed():
    # the keys' order is irrelevant, and so is a NumPy int for a Python one
    assert run_id({"hidden": 5, "lr": 0.3}, 1) == run_id({"lr": 0.3, "hidden": 5}, 1)
    assert run_id({"hidden": np.int64(5), "lr": 0.3}, 1) == run_id({"hidden": 5, "lr": 0.3}, 1)
    assert run_id({"hidden": 5, "lr": 0.3}, 1) != run_id({"hidden": 5, "lr": 0.3}, 2)
    # pinned, as sha256 of the canonical JSON: resuming an old sweep depends on it
    canonical = b'{"config":{"hidden":5,"lr":0.3},"seed":1}'
    assert run_id({"hidden": 5, "lr": 0.3}, 1) == hashlib.sha256(canonical).hexdigest()[:16]
    assert run_id({"hidden": 5, "lr": 0.3}, 1) == "dd3fafc01b321b94"


# ------------------------------------------------------------------------------ the table


def test_the_table_has_one_row_per_run_in_order(sequential):
    assert len(sequential) == len(SPIRAL_GRID) * len(SEEDS) and sequential.skipped == 0
    assert [(r["hidden"], r["lr"], r["seed"]) for r in sequential] == [
        (c["hidden"], c["lr"], s) for c in SPIRAL_GRID for s in SEEDS]
    assert sequential.columns == ["hidden", "lr", "epochs", "seed", "loss", "accuracy", "history", "status",
                                  "error", "time", "run"]
    assert sequential.metrics == ["loss", "accuracy"]
    for row in sequential:
        assert row["status"] == "ok" and row["error"] == "" and row["time"] > 0
        assert len(row["history"]) == 2 and all(isinstance(v, float) for v in row["history"])  # 20 iterations
        assert row["run"] == run_id({"hidden": row["hidden"], "lr": row["lr"], "epochs": 2}, row["seed"])
    assert len({r["loss"] for r in sequential}) == len(sequential)  # seeds and settings matter
    assert len(sequential.where(hidden=5, lr=1.0)) == len(SEEDS)
    groups = sequential.groups("lr")
    assert list(groups) == [(0.3,), (1.0,)] and all(len(g) == 2 * len(SEEDS) for g in groups.values())
    stats = sequential.aggregate("loss")
    assert [(s["hidden"], s["lr"], s["n"]) for s in stats] == [(c["hidden"], c["lr"], 3) for c in SPIRAL_GRID]
    losses = [r["loss"] for r in sequential.where(hidden=5, lr=0.3)]
    assert stats[0]["mean"] == pytest.approx(np.mean(losses)) and stats[0]["max"] == max(losses)


def test_a_sequential_sweep_is_reproducible(sequential):
    again = sweep(spiral_experiment, SPIRAL_GRID, SEEDS, progress=False)
    assert reproducible(again) == reproducible(sequential)


def test_metrics_are_json_values():
    res = sweep(toy, [{"scale": 2.0}], 2, progress=False)
    assert all(type(row["peak"]) is float for row in res)  # a NumPy float32 became a Python float
    assert res[0]["peak"] == float(np.float32(res[0]["peak"]))  # exactly the float32 value

    def returns_an_object(config, seed):
        return {"loss": object()}

    bad = sweep(returns_an_object, [{}], 1, progress=False)
    assert bad[0]["status"] == "error" and "JSON" in bad[0]["error"]


def test_metric_names_must_be_str():
    def int_and_str_one(config, seed):
        return {1: 2.0, "1": 3.0}  # JSON would merge them into one "1", silently losing a value

    res = sweep(int_and_str_one, [{}], 1, progress=False)
    assert res[0]["status"] == "error"
    assert res[0]["error"] == "TypeError: metric names must be str, got 1 (int)"
    assert "1" not in res.columns


@pytest.mark.parametrize("history", [5.0, "1.0", [1.0, "2"], [1.0, None], [[1.0]], {"loss": [1.0]}, [True]])
def test_a_history_that_is_not_a_list_of_numbers_fails_the_run(history, tmp_path):
    def returns(config, seed):
        return {"loss": 1.0, "history": history}

    res = sweep(returns, [{}], 1, progress=False)
    assert res[0]["status"] == "error" and "history" in res[0]["error"] and "list of numbers" in res[0]["error"]
    assert res[0]["history"] == []
    pytest.importorskip("matplotlib")
    res.plot(tmp_path / "curves.png")  # nothing a failed run returned reaches the plot


def _tamper(folder: Path, change) -> None:
    for path in folder.glob("*.json"):
        record = json.loads(path.read_text())
        change(record)
        path.write_text(json.dumps(record))


@pytest.mark.parametrize("change", [
    lambda r: r["metrics"].update(seed=99),
    lambda r: r["metrics"].update(scale=5.0),
    lambda r: r["metrics"].update(run="x"),
    lambda r: r.pop("metrics"),
    lambda r: r.pop("history"),
    lambda r: r.pop("time"),
    lambda r: r.update(metrics=[1.0]),
    lambda r: r.update(history=5.0),
    lambda r: r.update(history=["1.0"]),
    lambda r: r.update(error=None),
    lambda r: r.update(run="0123456789abcdef"),
], ids=["reserved-seed", "config-key", "reserved-run", "no-metrics", "no-history", "no-time", "metrics-list",
        "history-number", "history-text", "error-none", "another-run"])
def test_records_read_back_are_checked_like_new_ones_and_bad_ones_run_again(tmp_path, change):
    config = {"scale": 1.0, "dir": str(tmp_path)}
    first = sweep(counted, [config], 2, out_dir=tmp_path / "runs", progress=False)
    _tamper(tmp_path / "runs", change)
    again = sweep(counted, [config], 2, out_dir=tmp_path / "runs", progress=False)
    assert again.skipped == 0 and executions(tmp_path) == 4  # both ran again: no KeyError, no row of 99
    assert reproducible(again) == reproducible(first)
    assert sweep(counted, [config], 2, out_dir=tmp_path / "runs", progress=False).skipped == 2  # repaired


def test_a_read_only_out_dir_is_named_before_any_run(tmp_path, monkeypatch):
    config = {"scale": 1.0, "dir": str(tmp_path)}
    out = tmp_path / "runs"
    out.mkdir()

    def refused(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", os.path.join(dir, ".probe.x1y2z3.tmp"))

    monkeypatch.setattr(experiments.tempfile, "mkstemp", refused)
    with pytest.raises(PermissionError, match="out_dir") as info:
        sweep(counted, [config], 2, out_dir=out, progress=False)
    assert info.value.filename == str(out) and ".tmp" not in str(info.value)
    assert executions(tmp_path) == 0  # said before an hour of runs, not after the first


# a really read-only out_dir (not as root): tests/test_io.py::test_a_really_read_only_folder_is_named


def _fifo(path: Path) -> None:
    os.mkfifo(path)


@pytest.mark.parametrize("make", [
    pytest.param(_fifo, id="FIFO", marks=pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")),
    pytest.param(Path.mkdir, id="folder"),
    pytest.param(lambda path: path.symlink_to(os.devnull), id="link to a device"),
    pytest.param(lambda path: path.symlink_to(path.name), id="loop of links"),
])
def test_a_record_path_that_is_no_regular_file_is_refused_before_any_run(tmp_path, make):
    """Reading a FIFO record would block the sweep forever; any of these would fail the write after the run."""
    out = tmp_path / "runs"
    out.mkdir()
    config = {"scale": 1.0, "dir": str(tmp_path)}
    make(out / f"{run_id(config, 1)}.json")

    def blocked(signum, frame):
        raise TimeoutError("the sweep blocked on its out_dir")

    previous = signal.signal(signal.SIGALRM, blocked)
    signal.alarm(10)
    try:
        with pytest.raises((ValueError, OSError)) as info:
            sweep(counted, [config], 2, out_dir=out, progress=False)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert not isinstance(info.value, TimeoutError), info.value
    assert f"{run_id(config, 1)}.json" in str(info.value)
    assert executions(tmp_path) == 0


def test_invalid_sweeps_are_refused():
    with pytest.raises(ValueError, match="reserved"):
        sweep(toy, [{"seed": 1, "scale": 1.0}], 1)
    with pytest.raises(ValueError, match="twice"):
        sweep(toy, [{"scale": 1.0}, {"scale": 1.0}], 1)
    with pytest.raises(ValueError, match="seeds"):
        sweep(toy, [{"scale": 1.0}], [-1])
    with pytest.raises(TypeError, match="JSON"):
        sweep(toy, [{"scale": object()}], 1)
    with pytest.raises(TypeError, match="executor"):
        sweep(toy, [{"scale": 1.0}], 1, executor="dask")


# ------------------------------------------------------------------------------ executors


def test_a_dask_local_cluster_gives_the_sequential_table_bit_for_bit(sequential, client):
    on_dask = sweep(spiral_experiment, SPIRAL_GRID, SEEDS, executor=client, progress=False)
    assert reproducible(on_dask) == reproducible(sequential)
    workers = client.run(os.getpid)
    assert os.getpid() not in workers.values()  # the runs really ran in other processes


def test_dask_tasks_of_different_functions_never_share_a_key(client):
    # two sweeps at once on one scheduler, of functions with one module.qualname: closures of
    # one factory, and partials of one function; each sweep must get its own function's results
    for first, second in [(scaled(1.0), scaled(10.0)),
                          (functools.partial(times, factor=1.0), functools.partial(times, factor=10.0))]:
        configs = [{"sleep": 0.2}]
        with ThreadPoolExecutor(2) as threads:
            a = threads.submit(sweep, first, configs, 2, executor=client, progress=False)
            b = threads.submit(sweep, second, configs, 2, executor=client, progress=False)
            a, b = a.result(timeout=60), b.result(timeout=60)
        assert [r["loss"] for r in a] == [1.0, 2.0]
        assert [r["loss"] for r in b] == [10.0, 20.0]


def test_a_process_pool_gives_the_sequential_table_bit_for_bit(sequential):
    with spawn_pool() as pool:
        pooled = sweep(spiral_experiment, SPIRAL_GRID, SEEDS, executor=pool, progress=False)
    assert reproducible(pooled) == reproducible(sequential)


def test_dask_is_imported_only_when_used():
    code = ("import sys; from funcnet import experiments as e, recipes; "
            "r = e.sweep(recipes.spiral_experiment, [{'epochs': 1}], 2, progress=False); "
            "assert len(r) == 2; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------ resume


def test_resume_skips_finished_runs(tmp_path):
    configs = [{"scale": 1.0, "dir": str(tmp_path)}, {"scale": 3.0, "dir": str(tmp_path)}]
    first = sweep(counted, configs, 3, out_dir=tmp_path / "runs", progress=False)
    assert executions(tmp_path) == 6 and first.skipped == 0
    files = sorted((tmp_path / "runs").glob("*.json"))
    assert [f.stem for f in files] == sorted(r["run"] for r in first)

    again = sweep(counted, configs, 3, out_dir=tmp_path / "runs", progress=False)
    assert executions(tmp_path) == 6 and again.skipped == 6  # nothing ran again
    assert again.rows == first.rows  # the time too: it is read back from the run's file

    (tmp_path / "runs" / f"{first[4]['run']}.json").unlink()
    (tmp_path / "runs" / f"{first[1]['run']}.json").write_text('{"half a fi')  # a torn file: run again
    more = sweep(counted, configs, [0, 1, 2, 3], out_dir=tmp_path / "runs", progress=False)
    assert executions(tmp_path) == 6 + 2 + 2 and more.skipped == 4  # two repaired, two new seeds
    assert reproducible(more.where(seed=0)) == reproducible(first.where(seed=0))
    assert not [p for p in (tmp_path / "runs").iterdir() if p.suffix != ".json"]  # no temporary files left


def test_resume_runs_failed_runs_again(tmp_path):
    failing = {"scale": 1.0, "dir": str(tmp_path), "fail": [1]}
    first = sweep(counted, [failing], 3, out_dir=tmp_path / "runs", progress=False)
    assert [r["status"] for r in first] == ["ok", "error", "ok"]
    record = json.loads((tmp_path / "runs" / f"{first[1]['run']}.json").read_text())
    assert record["status"] == "error" and "unlucky" in record["traceback"]
    again = sweep(counted, [failing], 3, out_dir=tmp_path / "runs", progress=False)
    assert again.skipped == 2 and executions(tmp_path) == 4  # only the failed run, once more


def test_an_out_dir_belongs_to_one_experiment(tmp_path):
    def other(config, seed):
        return {"loss": 0.0}

    sweep(toy, [{"scale": 1.0}], 1, out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="own out_dir"):
        sweep(other, [{"scale": 1.0}], 1, out_dir=tmp_path, progress=False)


@pytest.mark.parametrize("first, other", [
    (functools.partial(times, factor=1.0), functools.partial(times, factor=2.0)),
    (functools.partial(times, factor=1.0), functools.partial(plus, factor=1.0)),
    (scaled(1.0), scaled(2.0)),
    (lambda config, seed: {"loss": 1.0}, lambda config, seed: {"loss": 2.0}),
], ids=["partial-args", "partial-function", "closures", "lambdas"])
def test_an_out_dir_is_never_handed_to_another_partial_closure_or_lambda(tmp_path, first, other):
    done = sweep(first, [{}], 2, out_dir=tmp_path, progress=False)
    assert experiment_id(first) != experiment_id(other)
    with pytest.raises(ValueError, match=f"holds runs of another experiment.*{experiment_id(other)}.*own out_dir"):
        sweep(other, [{}], 2, out_dir=tmp_path, progress=False)
    again = sweep(first, [{}], 2, out_dir=tmp_path, progress=False)  # the same function resumes
    assert again.skipped == 2 and again.rows == done.rows


def test_the_experiment_identity_is_stable_across_processes_and_equal_builds():
    assert experiment_id(functools.partial(times, factor=1.0)) == experiment_id(functools.partial(times, factor=1.0))
    assert experiment_id(scaled(3.0)) == experiment_id(scaled(3.0))
    assert experiment_id(functools.partial(times, factor=1)) != experiment_id(functools.partial(times, factor=1.0))
    code = ("import functools; from funcnet import experiments, recipes; "
            "print(experiments.experiment_id(recipes.spiral_experiment), "
            "experiments.experiment_id(functools.partial(recipes.spiral_experiment)))")
    ids = set()
    for hash_seed in ("1", "2"):  # str hashes (and so set and frozenset order) differ between these
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                             cwd=Path(__file__).resolve().parent.parent)
        ids.add(out.stdout.strip())
    assert ids == {f"{experiment_id(spiral_experiment)} {experiment_id(functools.partial(spiral_experiment))}"}


def test_a_keyboard_interrupt_stops_a_sequential_sweep_and_no_cut_run_is_recorded(tmp_path):
    started = []

    def cut_at_seed_2(config, seed):
        started.append(seed)
        if seed == 2:
            raise INTERRUPTS[config["interrupt"]]  # as fit does on Ctrl-C: the experiment catches nothing
        return {"loss": float(seed)}

    for name, interrupt in INTERRUPTS.items():
        started.clear()
        out = tmp_path / name
        with pytest.raises(interrupt):
            sweep(cut_at_seed_2, [{"interrupt": name}], 4, out_dir=out, progress=False)
        assert started == [0, 1, 2]  # the sweep stopped: seed 3 never started
        # seeds 0 and 1 are kept; seed 2, cut short, is not recorded, not even as failed
        assert sorted(p.stem for p in out.iterdir()) == sorted(run_id({"interrupt": name}, s) for s in (0, 1))


# ------------------------------------------------------------------------------ failures


def test_a_failing_run_is_reported_and_the_others_continue(tmp_path):
    config = {"scale": 1.0, "dir": str(tmp_path), "fail": [0, 2]}
    for executor in (None, "pool"):
        with spawn_pool() if executor else contextlib.nullcontext() as pool:
            res = sweep(counted, [config], 4, executor=pool, progress=False)
        assert [r["status"] for r in res] == ["error", "ok", "error", "ok"]
        assert res[0]["error"] == "ValueError: seed 0 is unlucky"
        assert res[0]["loss"] is None and res[0]["history"] == [] and res[1]["loss"] > 0
        assert len(res.failed()) == 2 and len(res.ok()) == 2
    assert executions(tmp_path) == 8


def test_fail_fast_stops_at_the_first_failure(tmp_path):
    config = {"scale": 1.0, "dir": str(tmp_path), "fail": [1]}
    with pytest.raises(SweepError, match="ValueError: seed 1 is unlucky") as info:
        sweep(counted, [config], 5, fail_fast=True, progress=False)
    assert executions(tmp_path) == 2  # seeds 0 and 1; 2, 3 and 4 never ran
    assert [(r["seed"], r["status"]) for r in info.value.results] == [(0, "ok"), (1, "error")]


def test_fail_fast_on_dask_cancels_the_rest(tmp_path, client):
    config = {"scale": 1.0, "dir": str(tmp_path), "fail": [0]}
    with pytest.raises(SweepError, match="unlucky") as info:
        sweep(counted, [config], 6, executor=client, fail_fast=True, progress=False)
    assert [r["status"] for r in info.value.results].count("error") == 1

    def tasks(dask_scheduler):
        return len(dask_scheduler.tasks)

    deadline = time.monotonic() + 10
    while client.run_on_scheduler(tasks) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.run_on_scheduler(tasks) == 0  # nothing left behind on the scheduler


def test_a_killed_dask_worker_neither_loses_nor_duplicates_a_run(tmp_path, client):
    config = {"scale": 1.0, "dir": str(tmp_path), "crash": [1, 4]}
    res = sweep(crash_once, [config], 6, executor=client, out_dir=tmp_path / "runs", progress=False)
    assert (tmp_path / "crashed-1").exists() and (tmp_path / "crashed-4").exists()  # two workers died
    assert [r["seed"] for r in res] == list(range(6)) and [r["status"] for r in res] == ["ok"] * 6
    assert len(list((tmp_path / "runs").glob("*.json"))) == 6
    # Dask reruns the task of a dead worker (and may recompute results that died with it): a run
    # can execute more than once, but it is one row, and pure runs give the same row every time
    assert len(list(tmp_path.glob("attempt-1-*"))) >= 2 and len(list(tmp_path.glob("attempt-4-*"))) >= 2
    reference = sweep(crash_once, [config], 6, progress=False)  # the markers exist: nothing crashes now
    assert reproducible(res) == reproducible(reference)


def test_a_broken_process_pool_fails_its_runs_and_a_resume_completes_them(tmp_path):
    config = {"scale": 1.0, "dir": str(tmp_path), "crash": [2]}
    with spawn_pool() as pool:
        broken = sweep(crash_once, [config], 5, executor=pool, out_dir=tmp_path / "runs", progress=False)
    failed = broken.failed()
    assert 2 in [r["seed"] for r in failed] and all("BrokenProcessPool" in r["error"] for r in failed)
    with spawn_pool() as pool:
        resumed = sweep(crash_once, [config], 5, executor=pool, out_dir=tmp_path / "runs", progress=False)
    assert resumed.skipped == 5 - len(failed) and [r["status"] for r in resumed] == ["ok"] * 5
    assert reproducible(resumed) == reproducible(sweep(crash_once, [config], 5, progress=False))


# ------------------------------------------------------------------------------ output


def test_csv_is_written_and_read_back(tmp_path, sequential):
    path = tmp_path / "results.csv"
    sequential.to_csv(path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(sequential) and list(rows[0]) == sequential.columns
    for text, row in zip(rows, sequential, strict=True):
        assert int(text["hidden"]) == row["hidden"] and float(text["lr"]) == row["lr"]
        assert int(text["seed"]) == row["seed"] and text["status"] == "ok" and text["error"] == ""
        assert float(text["loss"]) == row["loss"]  # exact: floats are written by repr
        assert json.loads(text["history"]) == row["history"]


def test_pandas_and_parquet(tmp_path, sequential):
    pd = pytest.importorskip("pandas")
    frame = sequential.to_pandas()
    assert list(frame.columns) == sequential.columns and len(frame) == len(sequential)
    assert frame["loss"].tolist() == [r["loss"] for r in sequential]
    if not any(experiments.find_spec(m) for m in ("pyarrow", "fastparquet")):
        with pytest.raises(ImportError, match="pyarrow or fastparquet"):
            sequential.to_parquet(tmp_path / "results.parquet")
        return
    sequential.to_parquet(tmp_path / "results.parquet")
    back = pd.read_parquet(tmp_path / "results.parquet")
    assert back["loss"].tolist() == frame["loss"].tolist()
    assert [list(h) for h in back["history"]] == [r["history"] for r in sequential]


def test_parquet_without_an_engine_is_a_clear_error(tmp_path, sequential, monkeypatch):
    monkeypatch.setattr(experiments, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pyarrow or fastparquet"):
        sequential.to_parquet(tmp_path / "results.parquet")


def test_the_plot_is_a_png_with_one_line_per_configuration(tmp_path, sequential):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    fig = sequential.plot(path, eval_interval=10)
    assert path.read_bytes().startswith(PNG_MAGIC)
    ax = fig.axes[0]
    assert len(ax.lines) == len(SPIRAL_GRID) and ax.get_xlabel() == "iterations" and ax.get_ylabel() == "loss"
    assert ax.lines[0].get_label() == "hidden=5, lr=0.3 (n=3)"
    assert "epochs=2" in ax.get_title()
    with pytest.raises(ValueError, match="band"):
        sequential.plot(band="iqr")



# ------------------------------------------------------------------------------ red-team: copies, identity, aggregate

SCALE = 1  # a module constant the next experiment reads: its value is part of the experiment's identity


def scaled_by_global(config, seed):
    return {"loss": SCALE * (seed + 1)}


class Scaler:
    """A callable-object experiment whose result depends on another method of its class."""

    def __call__(self, config, seed):
        return {"loss": self.scale(seed)}

    def scale(self, seed):
        return seed + 1.0


def appends_its_seed(config, seed):
    config["layers"].append(seed)
    config["nested"]["seen"].append(seed)
    return {"depth": len(config["layers"])}


def test_each_run_gets_its_own_deep_copy_and_the_original_is_recorded(tmp_path):
    original = {"layers": [8, 8], "nested": {"seen": []}}
    results = sweep(appends_its_seed, [original], 3, out_dir=tmp_path, progress=False)
    assert [row["depth"] for row in results] == [3, 3, 3]  # no seed saw another's append
    assert all(row["layers"] == [8, 8] and row["nested"] == {"seen": []} for row in results)
    assert original == {"layers": [8, 8], "nested": {"seen": []}}
    records = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*.json"))]
    assert [r["config"] for r in records] == [{"layers": [8, 8], "nested": {"seen": []}}] * 3
    results[0]["layers"].append(99)  # rows do not share their lists either
    assert results[1]["layers"] == [8, 8]


def test_a_changed_module_constant_is_another_experiment(tmp_path, monkeypatch):
    before = experiment_id(scaled_by_global)
    sweep(scaled_by_global, [{}], 2, out_dir=tmp_path, progress=False)
    monkeypatch.setattr(sys.modules[__name__], "SCALE", 100)
    assert experiment_id(scaled_by_global) != before
    with pytest.raises(ValueError, match="holds runs of another experiment"):  # never the stale rows
        sweep(scaled_by_global, [{}], 2, out_dir=tmp_path, progress=False)
    fresh = sweep(scaled_by_global, [{}], 2, out_dir=tmp_path / "new", progress=False)
    assert [row["loss"] for row in fresh] == [100, 200]
    monkeypatch.setattr(sys.modules[__name__], "SCALE", 1)
    assert experiment_id(scaled_by_global) == before  # the same value, the same experiment: resumes
    assert sweep(scaled_by_global, [{}], 2, out_dir=tmp_path, progress=False).skipped == 2


def test_globals_that_are_not_plain_data_do_not_count(monkeypatch):
    before = experiment_id(toy)  # its code names the modules `random` and `np`: they count by name only
    monkeypatch.setattr(sys.modules[__name__], "random", types.SimpleNamespace(**vars(random)))
    assert experiment_id(toy) == before


def test_a_changed_method_of_a_callable_objects_class_is_another_experiment(tmp_path, monkeypatch):
    before, method_before = experiment_id(Scaler()), experiment_id(Scaler().__call__)
    assert experiment_id(Scaler()) == before  # equal objects, equal identities
    sweep(Scaler(), [{}], 2, out_dir=tmp_path, progress=False)

    def scale(self, seed):
        return 100.0 * (seed + 1)

    scale.__qualname__ = "Scaler.scale"
    monkeypatch.setattr(Scaler, "scale", scale)  # as if the class were edited
    assert experiment_id(Scaler()) != before and experiment_id(Scaler().__call__) != method_before
    with pytest.raises(ValueError, match="holds runs of another experiment"):
        sweep(Scaler(), [{}], 2, out_dir=tmp_path, progress=False)


def test_aggregate_refuses_a_list_valued_metric_naming_it():
    results = sweep(lambda config, seed: {"pair": [seed, seed + 1], "loss": 1.0}, [{}], 2, progress=False)
    with pytest.raises(TypeError, match=r"aggregate: metric 'pair' is not a number .*list \[0, 1\]"):
        results.aggregate("pair")
    assert results.aggregate("loss")[0]["n"] == 2


def test_aggregate_of_an_unknown_metric_names_it_and_the_metrics_there_are():
    results = sweep(toy, [{"scale": 1.0}], 2, progress=False)
    with pytest.raises(KeyError, match=r"no metric 'acuracy'; its metrics are \['loss', 'peak'\]"):
        results.aggregate("acuracy")
    assert Results([]).aggregate("anything") == []


_SET_IDENTITIES = """
import functools
from funcnet import experiments

def exp(c, s, tags=frozenset({"alpha", "beta", "gamma", "delta"})):
    return {"loss": float(s)}

def factory():
    names = {"alpha", "beta", "gamma", "delta"}
    def run(c, s):
        return {"loss": float(len(names))}
    return run

class Exp:
    def __init__(self):
        self.tags = {"alpha", "beta", "gamma", "delta"}
    def __call__(self, c, s):
        return {"loss": 1.0}

def plain(c, s, tags=None):
    return {"loss": 1.0}

print(experiments.experiment_id(exp), experiments.experiment_id(factory()), experiments.experiment_id(Exp()),
      experiments.experiment_id(functools.partial(plain, tags={"alpha", "beta", "gamma"})))
"""


def test_an_experiment_holding_sets_has_one_identity_in_every_process():
    # a set's order (and so its pickle) follows the string hash seed, which differs by process:
    # an identity built on it would refuse to resume the sweep's own out_dir
    import subprocess
    import sys

    ids = {subprocess.run([sys.executable, "-c", _SET_IDENTITIES], env={**os.environ, "PYTHONHASHSEED": seed},
                          capture_output=True, text=True, check=True).stdout for seed in ("1", "2", "3")}
    assert len(ids) == 1, ids


def test_a_record_without_an_identity_or_with_a_seed_of_another_type_is_run_again(tmp_path):
    calls = []

    def experiment(config, seed):
        calls.append(seed)
        return {"loss": float(seed)}

    experiments.sweep(experiment, [{"a": 1}], seeds=2, out_dir=tmp_path)
    records = sorted(tmp_path.glob("*.json"))
    assert len(records) == 2 and len(calls) == 2
    first, second = (json.loads(p.read_text()) for p in records)
    del first["experiment_id"]  # malformed: run again, not "another experiment"
    second["seed"] = float(second["seed"]) if second["seed"] else False  # 0.0 / False are not the seed 0 or 1
    records[0].write_text(json.dumps(first))
    records[1].write_text(json.dumps(second))
    results = experiments.sweep(experiment, [{"a": 1}], seeds=2, out_dir=tmp_path)
    assert len(calls) == 4 and len(results.ok()) == 2
