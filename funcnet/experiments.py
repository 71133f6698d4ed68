"""Seeded experiments at scale: one pure function over a grid of settings and a list of seeds.

``sweep(fn, configs, seeds)`` calls ``fn(config, seed) -> {metric: value, ..., "history": [...]}``
once per (configuration, seed) and returns a :class:`Results` table with one row per run, in the
runs' order (configurations outer, seeds inner) whichever executor ran them and in whatever order
they finished. ``fn`` must draw all its randomness from ``funcnet.random.key(seed)``: then a row
depends on nothing but its configuration and seed, and is the same, bit for bit, on every executor.

Where the runs execute is the ``executor`` argument: ``None`` (in this process, one after the
other), any ``concurrent.futures.Executor`` (or any object whose ``submit`` returns a
``concurrent.futures.Future``, such as a small Ray adapter) or a ``dask.distributed.Client``.
Dask is never imported here unless a Client is passed in.

With ``out_dir`` every finished run is written at once to ``out_dir/<run>.json``, where ``<run>``
is a hash of the canonical JSON of (configuration, seed), atomically (temporary file, fsync,
rename). Running the same sweep again loads the successful runs from there instead of running
them again; failed runs are run again.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import hashlib
import io
import itertools
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from funcnet import optim, random, train
from funcnet.checkpoint import write_atomic
from funcnet.datasets import spiral
from funcnet.losses import softmax_cross_entropy
from funcnet.models import TwoLayerNet

__all__ = ["Results", "SweepError", "grid", "run_id", "spiral_experiment", "sweep"]

FORMAT = "funcnet.experiments/1"
# the columns a sweep adds to a row; configurations and metrics may not use these names
RESERVED = ("seed", "history", "status", "error", "time", "run")

Experiment = Callable[[dict[str, Any], int], Mapping[str, Any]]


class SweepError(RuntimeError):
    """A run failed under ``fail_fast=True``; ``results`` holds the runs finished before it."""

    def __init__(self, message: str, results: Results):
        super().__init__(message)
        self.results = results


class _Run(NamedTuple):
    index: int
    config: dict[str, Any]
    seed: int
    id: str


# ------------------------------------------------------------------------------ the grid


def grid(**axes: Any) -> list[dict[str, Any]]:
    """Every combination of the axes' values, the last axis varying fastest; a scalar is a one-value axis."""
    values = []
    for name, axis in axes.items():
        if isinstance(axis, set | frozenset):
            raise TypeError(f"grid: axis {name!r} is a set, whose order is not stable; pass a list")
        single = isinstance(axis, str | bytes | Mapping) or not isinstance(axis, Iterable)
        values.append([axis] if single else list(axis))
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*values)]


def _plain(x: Any) -> Any:
    """json's fallback: NumPy scalars and arrays as Python numbers and lists."""
    if isinstance(x, np.generic | np.ndarray):
        return x.tolist()
    raise TypeError(f"{type(x).__name__} is not a JSON value")


def _json(x: Any, what: str) -> Any:
    """``x`` as JSON would give it back (tuples become lists, NumPy numbers Python numbers)."""
    try:
        return json.loads(json.dumps(x, default=_plain))
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what} must be JSON values (str, int, float, bool, None, lists and dicts "
                        f"of them): {err}") from None


def run_id(config: Mapping[str, Any], seed: int) -> str:
    """The run's name: 16 hex digits of sha256 of the canonical JSON of ``{"config": .., "seed": ..}``."""
    canonical = json.dumps({"config": config, "seed": seed}, sort_keys=True, separators=(",", ":"),
                           default=_plain)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _runs(configs: Sequence[Mapping[str, Any]] | Mapping[str, Any], seeds: int | Iterable[int]) -> list[_Run]:
    if isinstance(configs, Mapping):
        configs = [configs]
    if isinstance(seeds, int | np.integer) and not isinstance(seeds, bool):
        seeds = range(int(seeds))
    seeds = list(seeds)
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"sweep: seeds must be non-negative ints, got {seed!r}")
    runs, seen = [], {}
    for config in configs:
        if not isinstance(config, Mapping) or not all(isinstance(k, str) for k in config):
            raise TypeError(f"sweep: a configuration must be a dict with str keys, got {config!r}")
        clash = [k for k in config if k in RESERVED]
        if clash:
            raise ValueError(f"sweep: configuration keys {clash} are reserved for the table's columns")
        config = _json(dict(config), "sweep: configuration values")
        for seed in seeds:
            run = _Run(len(runs), config, int(seed), run_id(config, int(seed)))
            if run.id in seen:
                raise ValueError(f"sweep: the run (config {config}, seed {seed}) is listed twice")
            seen[run.id] = run
            runs.append(run)
    return runs


# ------------------------------------------------------------------------------ one run


def _execute(fn: Experiment, config: dict[str, Any], seed: int) -> dict[str, Any]:
    """One run, wherever it executes: its metrics, or its error as text; never an exception."""
    started = time.perf_counter()
    try:
        out = fn(dict(config), seed)  # a copy: the function cannot change the sweep's configuration
        if not isinstance(out, Mapping):
            raise TypeError(f"the experiment must return a dict of metrics, got {type(out).__name__}")
        out = _json(dict(out), "the experiment's metrics")
        history = out.pop("history", [])
        clash = [k for k in out if k in RESERVED or k in config]
        if clash:
            raise ValueError(f"metric names {clash} clash with the table's columns or configuration keys")
        record = {"status": "ok", "metrics": out, "history": history, "error": "", "traceback": ""}
    except Exception as err:
        record = {"status": "error", "metrics": {}, "history": [], "error": f"{type(err).__name__}: {err}",
                  "traceback": traceback.format_exc()}
    record["time"] = time.perf_counter() - started
    return record


def _failed(err: BaseException) -> dict[str, Any]:
    """The record of a run whose executor failed it (a dead process pool, Dask's KilledWorker)."""
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return {"status": "error", "metrics": {}, "history": [], "error": f"{type(err).__name__}: {err}",
            "traceback": text, "time": 0.0}


def _name(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', None) or '?'}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"


def _load(out: Path, run: _Run, experiment: str) -> dict[str, Any] | None:
    """The record of a successful earlier run, or None when it must run (again)."""
    try:
        record = json.loads((out / f"{run.id}.json").read_text())
    except (OSError, ValueError):  # absent, or unreadable: run it
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return None
    if record.get("config") != run.config or record.get("seed") != run.seed:
        return None
    if record.get("experiment") != experiment:
        raise ValueError(f"sweep: {out} holds runs of {record.get('experiment')}, not of {experiment}; "
                         "give each experiment its own out_dir")
    return record if record.get("status") == "ok" else None


# ------------------------------------------------------------------------------ executors


def _is_dask_client(executor: Any) -> bool:
    # look the class up only if distributed is already imported: a Client cannot exist otherwise
    distributed = sys.modules.get("distributed")
    return distributed is not None and isinstance(executor, distributed.Client)


def _sequential(fn: Experiment, todo: list[_Run]) -> Iterator[tuple[_Run, dict]]:
    for run in todo:
        yield run, _execute(fn, run.config, run.seed)


def _pooled(executor: Any, fn: Experiment, todo: list[_Run]) -> Iterator[tuple[_Run, dict]]:
    futures = {executor.submit(_execute, fn, run.config, run.seed): run for run in todo}
    try:
        for future in concurrent.futures.as_completed(futures):
            yield futures[future], _outcome(future)
    finally:  # fail_fast, Ctrl-C: drop what has not started
        for future in futures:
            future.cancel()


def _dask(client: Any, fn: Experiment, todo: list[_Run], experiment: str,
          retries: int) -> Iterator[tuple[_Run, dict]]:
    from distributed import as_completed

    tag = hashlib.sha256(experiment.encode()).hexdigest()[:8]
    # The key is the run's own name: a run submitted twice (two clients, a resubmission) is one task
    # on the scheduler. Tasks of a worker that died are rescheduled by the scheduler itself.
    futures = {client.submit(_execute, fn, run.config, run.seed, key=f"funcnet-run-{tag}-{run.id}",
                             retries=retries): run for run in todo}
    try:
        for future in as_completed(list(futures)):
            yield futures[future], _outcome(future)
    finally:
        pending = [future for future in futures if not future.done()]
        if pending:
            client.cancel(pending)


def _outcome(future: Any) -> dict[str, Any]:
    try:
        return future.result()
    except Exception as err:
        return _failed(err)


# ------------------------------------------------------------------------------ sweep


def sweep(fn: Experiment, configs: Sequence[Mapping[str, Any]] | Mapping[str, Any],
          seeds: int | Iterable[int], *, executor: Any = None, out_dir: str | os.PathLike[str] | None = None,
          progress: bool | None = None, fail_fast: bool = False, retries: int = 3) -> Results:
    """Run ``fn(config, seed)`` for every configuration and seed (an int n means ``range(n)``).

    ``executor``: None (here, in order), a ``concurrent.futures.Executor`` or a
    ``dask.distributed.Client``. ``out_dir`` keeps every finished run and lets a rerun skip the
    successful ones. A failing run is a row with status ``"error"``; with ``fail_fast`` the first
    one stops the sweep with :class:`SweepError`. ``retries``: Dask's retries of a task that
    raised outside ``fn`` (a task whose worker died is rescheduled by the scheduler anyway, up
    to ``distributed.scheduler.allowed-failures`` times). ``progress``: a bar over runs (None:
    when stderr is a terminal).
    """
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise TypeError(f"sweep: executor must be None, a concurrent.futures.Executor or a dask Client, "
                        f"got {type(executor).__name__}")
    runs = _runs(configs, seeds)
    experiment = _name(fn)
    out = None if out_dir is None else Path(out_dir)
    records: dict[int, dict[str, Any]] = {}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        records = {run.index: rec for run in runs if (rec := _load(out, run, experiment)) is not None}
    skipped = len(records)
    todo = [run for run in runs if run.index not in records]
    if executor is None:
        completed = _sequential(fn, todo)
    elif _is_dask_client(executor):
        completed = _dask(executor, fn, todo, experiment, retries)
    else:
        completed = _pooled(executor, fn, todo)

    bar = train.progress_bar(progress, len(runs), skipped, unit="run", desc="sweep")
    failures = 0
    try:
        with contextlib.closing(completed):
            for run, record in completed:
                record = {"format": FORMAT, "experiment": experiment, "run": run.id, "config": run.config,
                          "seed": run.seed, **record}
                records[run.index] = record
                if out is not None:
                    write_atomic(str(out / f"{run.id}.json"), [json.dumps(record).encode() + b"\n"])
                failures += record["status"] != "ok"
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(failed=failures, refresh=False)
                if fail_fast and record["status"] != "ok":
                    done = _results([r for r in runs if r.index in records], records, skipped)
                    raise SweepError(f"run {run.index} (config {run.config}, seed {run.seed}) failed: "
                                     f"{record['error']}\n{record['traceback']}", done)
    finally:
        if bar is not None:
            bar.close()
    return _results(runs, records, skipped)


def _results(runs: list[_Run], records: dict[int, dict[str, Any]], skipped: int) -> Results:
    """The table: every record as a row; a metric a failed run lacks is None."""
    metrics = list(dict.fromkeys(k for run in runs for k in records[run.index]["metrics"]))
    rows = []
    for run in runs:
        rec = records[run.index]
        rows.append({**run.config, "seed": run.seed, **dict.fromkeys(metrics), **rec["metrics"],
                     "history": rec["history"], "status": rec["status"], "error": rec["error"],
                     "time": rec["time"], "run": run.id})
    config_keys = list(dict.fromkeys(k for run in runs for k in run.config))
    return Results(rows, config_keys, skipped=skipped)


# ------------------------------------------------------------------------------ the table


class Results:
    """The table of a sweep: ``rows``, one dict per run in the runs' order."""

    def __init__(self, rows: Iterable[dict[str, Any]], config_keys: Sequence[str] = (), *, skipped: int = 0):
        self.rows = list(rows)
        self.config_keys = tuple(config_keys)
        self.skipped = skipped  # runs loaded from out_dir instead of run

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]

    def __repr__(self) -> str:
        failed = sum(row["status"] != "ok" for row in self.rows)
        return f"Results({len(self)} runs, {failed} failed, {self.skipped} skipped)"

    @property
    def columns(self) -> list[str]:
        """Every column, in the order of first appearance."""
        return list(dict.fromkeys(k for row in self.rows for k in row))

    @property
    def metrics(self) -> list[str]:
        """The experiment's own metric columns."""
        return [c for c in self.columns if c not in self.config_keys and c not in RESERVED]

    def _new(self, rows: Iterable[dict[str, Any]]) -> Results:
        return Results(rows, self.config_keys, skipped=self.skipped)

    def ok(self) -> Results:
        """The successful runs."""
        return self._new(row for row in self.rows if row["status"] == "ok")

    def failed(self) -> Results:
        """The failed runs."""
        return self._new(row for row in self.rows if row["status"] != "ok")

    def where(self, **values: Any) -> Results:
        """The rows whose columns equal ``values``."""
        return self._new(row for row in self.rows if all(row.get(k) == v for k, v in values.items()))

    def drop(self, *columns: str) -> Results:
        """The table without ``columns`` (``drop("time")`` leaves what is reproducible)."""
        return self._new({k: v for k, v in row.items() if k not in columns} for row in self.rows)

    def groups(self, *keys: str) -> dict[tuple, Results]:
        """The rows by their values of ``keys`` (default: the configuration keys), in first-seen order."""
        keys = keys or self.config_keys
        out: dict[tuple, list] = {}
        for row in self.rows:
            out.setdefault(tuple(_hashable(row.get(k)) for k in keys), []).append(row)
        return {k: self._new(rows) for k, rows in out.items()}

    def aggregate(self, metric: str) -> list[dict[str, Any]]:
        """Per configuration, over its successful seeds: n, mean, std (n - 1), min and max of ``metric``."""
        table = []
        for group in self.groups().values():
            first = group.rows[0]
            values = np.array([row[metric] for row in group.ok() if row.get(metric) is not None], dtype=float)
            n = len(values)
            stats = {"n": n, "mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan}
            if n:
                std = float(values.std(ddof=1)) if n > 1 else 0.0
                stats = {"n": n, "mean": float(values.mean()), "std": std, "min": float(values.min()),
                         "max": float(values.max())}
            table.append({**{k: first.get(k) for k in self.config_keys}, **stats})
        return table

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write the table as CSV (lists and dicts as JSON, None as an empty cell), atomically."""
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
        write_atomic(os.fspath(path), [buffer.getvalue().encode()])

    def to_pandas(self) -> Any:
        """The table as a pandas DataFrame (``history`` a column of lists)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Results.to_pandas needs pandas: pip install pandas") from None
        return pd.DataFrame(self.rows, columns=self.columns)

    def to_parquet(self, path: str | os.PathLike[str]) -> None:
        """Write the table as Parquet (needs pandas and pyarrow or fastparquet)."""
        if find_spec("pyarrow") is None and find_spec("fastparquet") is None:
            raise ImportError("Results.to_parquet needs pyarrow or fastparquet: pip install pyarrow "
                              "(or write CSV with to_csv)")
        self.to_pandas().to_parquet(os.fspath(path), index=False)

    def plot(self, path: str | os.PathLike[str] | None = None, *, eval_interval: int | None = None,
             band: str = "minmax", show: bool = False, title: str | None = None) -> Any:
        """The loss histories: per configuration the mean over seeds and a band (min-max or ±1 std)."""
        return _plot_histories(self, path=path, eval_interval=eval_interval, band=band, show=show,
                               title=title)


def _hashable(x: Any) -> Any:
    return json.dumps(x, sort_keys=True) if isinstance(x, list | dict) else x


def _cell(x: Any) -> Any:
    if x is None:
        return ""
    return json.dumps(x) if isinstance(x, list | dict) else x


def _plot_histories(results: Results, *, path: str | os.PathLike[str] | None = None,
                   eval_interval: int | None = None, band: str = "minmax", show: bool = False,
                   title: str | None = None) -> Any:
    """One line a configuration: the mean loss history over its successful seeds, with its spread."""
    if band not in ("minmax", "std"):
        raise ValueError(f"plot: band must be 'minmax' or 'std', got {band!r}")
    from funcnet.plot import finish, pyplot

    plt = pyplot(show)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    keys = results.config_keys
    # a key with one value in the whole sweep says nothing in a legend: it goes to the title
    varying = [k for k in keys if len({_hashable(row.get(k)) for row in results}) > 1]
    fixed = [k for k in keys if k not in varying] if results.rows else []
    n_seeds = 0
    for i, group in enumerate(results.groups().values()):
        histories = [row["history"] for row in group.ok() if row["history"]]
        if not histories:
            continue
        n_seeds = max(n_seeds, len(histories))
        length = min(len(h) for h in histories)  # a shared prefix, should lengths differ
        h = np.array([h[:length] for h in histories], dtype=float)
        x = np.arange(1, length + 1) * (eval_interval or 1)
        mean = h.mean(axis=0)
        if band == "minmax":
            low, high = h.min(axis=0), h.max(axis=0)
        else:
            low, high = mean - h.std(axis=0), mean + h.std(axis=0)
        first = group.rows[0]
        label = ", ".join(f"{k}={first.get(k)}" for k in varying) or "all runs"
        color = f"C{i % 10}"
        ax.plot(x, mean, color=color, linewidth=1.6, label=f"{label} (n={len(histories)})")
        ax.fill_between(x, low, high, color=color, alpha=0.15, linewidth=0)
    ax.set_xlabel("iterations" if eval_interval else "history entry")
    ax.set_ylabel("loss")
    spread = "min-max" if band == "minmax" else "±1 std"
    if title is None:
        title = f"loss over {n_seeds} seeds: mean and {spread}"
        if fixed:
            title += " (" + ", ".join(f"{k}={results.rows[0].get(k)}" for k in fixed) + ")"
    ax.set_title(title, fontsize="medium")
    if ax.lines:
        ax.legend(fontsize="small", loc="upper right", ncol=2 if len(ax.lines) > 6 else 1)
    ax.grid(alpha=0.3)
    return finish(plt, fig, None if path is None else Path(path), show)


# ------------------------------------------------------------------------------ the spiral


SPIRAL_DEFAULTS = {"hidden": 10, "lr": 1.0, "epochs": 300, "batch_size": 30, "eval_interval": 10}


def spiral_experiment(config: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The seed's run, TwoLayerNet(2, hidden, 3) and SGD(lr) on the spiral; settings as SPIRAL_DEFAULTS."""
    unknown = set(config) - set(SPIRAL_DEFAULTS)
    if unknown:
        raise ValueError(f"spiral_experiment: unknown settings {sorted(unknown)}; "
                         f"known: {list(SPIRAL_DEFAULTS)}")
    c = {**SPIRAL_DEFAULTS, **config}
    x, t = spiral.load_data(dtype="float32")
    model, optimizer = TwoLayerNet(2, c["hidden"], 3), optim.SGD(lr=c["lr"])
    step = train.make_train_step(model, softmax_cross_entropy, optimizer)
    state = train.init_state(model, optimizer, random.key(seed), (2,))
    state, history = train.fit(step, state, x, t, epochs=c["epochs"], batch_size=c["batch_size"],
                               eval_interval=c["eval_interval"], progress=False)
    if history["interrupted"]:  # fit hands Ctrl-C back as a flag: a cut-short run is no result
        raise KeyboardInterrupt
    result = train.evaluate(model, state.params, x, t)
    return {"loss": result["loss"], "accuracy": result["accuracy"], "history": history["loss"]}
