"""Seeded experiments at scale: one pure function over a grid of settings and a list of seeds.

``sweep(fn, configs, seeds)`` calls ``fn(config, seed) -> {metric: value, ..., "history": [...]}``
once per (configuration, seed) and returns a `Results` table with one row per run, in the
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
import copy
import csv
import functools
import hashlib
import io
import itertools
import json
import math
import os
import pickle
import sys
import tempfile
import time
import traceback
import types
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from funcnet import train
from funcnet.io import check_destination, open_regular, write_atomic

__all__ = ["Results", "SweepError", "experiment_id", "grid", "run_id", "sweep"]

# 2: records carry the experiment's identity ("experiment_id"); records of 1 are run again
# 3: the identity also covers the plain-data globals the code names and a callable object's class;
#    records of 2 are run again (their identity was computed without those)
FORMAT = "funcnet.experiments/3"
# the columns a sweep adds to a row; configurations and metrics may not use these names
RESERVED = ("seed", "history", "status", "error", "time", "run")

Experiment = Callable[[dict[str, Any], int], Mapping[str, Any]]


class SweepError(RuntimeError):
    """A run failed under ``fail_fast=True``; ``results`` holds the runs finished before it.

    Args:
        message: what failed, with the run's traceback.
        results: the runs finished before the sweep stopped.

    Examples:
        >>> def fails(config, seed):
        ...     raise ValueError("no")
        >>> try:
        ...     sweep(fails, [{}], 2, fail_fast=True, progress=False)
        ... except SweepError as err:
        ...     print(len(err.results), err.results[0]["error"])
        1 ValueError: no
    """

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
    """Every combination of the axes' values, the last axis varying fastest; a scalar is a one-value axis.

    Args:
        **axes: a name and its values (a list or tuple); a scalar, a str or a dict is one value.

    Returns:
        The configurations, one dict per combination, in the order written.

    Raises:
        TypeError: an axis is a set (its order is not stable).

    Examples:
        >>> grid(hidden=[5, 10], lr=1.0)
        [{'hidden': 5, 'lr': 1.0}, {'hidden': 10, 'lr': 1.0}]
    """
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
    """The run's name: 16 hex digits of sha256 of the canonical JSON of ``{"config": .., "seed": ..}``.

    Args:
        config: the run's configuration (keys in any order; NumPy numbers count as Python ones).
        seed: the run's seed.

    Returns:
        The name of the run's record in ``out_dir`` (``<run>.json``) and its ``run`` column.

    Examples:
        >>> run_id({"hidden": 5, "lr": 0.3}, 1)
        'dd3fafc01b321b94'
    """
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
    """One run, wherever it executes: its metrics, or its error as text.

    An ``Exception`` of the run becomes an error record; a ``KeyboardInterrupt`` (any
    subclass, such as ``fit``'s ``TrainingInterrupted``) is not caught: a run cut short
    is never a result, and the interrupt stops the sweep.
    """
    started = time.perf_counter()
    try:
        # a deep copy: appending to a list in it changes neither the recorded configuration nor the
        # configuration the next seed gets (in this process they are the same objects)
        out = fn(copy.deepcopy(config), seed)
        metrics, history = _checked_output(out, config)
        record = {"status": "ok", "metrics": metrics, "history": history, "error": "", "traceback": ""}
    except Exception as err:
        record = {"status": "error", "metrics": {}, "history": [], "error": f"{type(err).__name__}: {err}",
                  "traceback": traceback.format_exc()}
    record["time"] = time.perf_counter() - started
    return record


def _checked_output(out: Any, config: Mapping[str, Any]) -> tuple[dict[str, Any], list[float]]:
    """The experiment's metrics and history as JSON values; a TypeError or ValueError saying what is wrong."""
    if not isinstance(out, Mapping):
        raise TypeError(f"the experiment must return a dict of metrics, got {type(out).__name__}")
    bad = [k for k in out if not isinstance(k, str)]
    if bad:  # JSON would turn 1 into "1", silently merging it with a metric "1"
        raise TypeError(f"metric names must be str, got {bad[0]!r} ({type(bad[0]).__name__})")
    out = _json(dict(out), "the experiment's metrics")
    history = out.pop("history", [])
    _check_history(history)
    _check_metric_names(out, config)
    return out, history


def _check_history(history: Any) -> None:
    if not isinstance(history, list) or not all(_is_number(v) for v in history):
        shown = type(history).__name__ if not isinstance(history, list) else \
            next(f"an entry {v!r}" for v in history if not _is_number(v))
        raise TypeError(f"the experiment's \"history\" must be a list of numbers (losses), got {shown}")


def _check_metric_names(metrics: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    clash = [k for k in metrics if k in RESERVED or k in config]
    if clash:
        raise ValueError(f"metric names {clash} clash with the table's columns or configuration keys")


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _failed(err: BaseException) -> dict[str, Any]:
    """The record of a run whose executor failed it (a dead process pool, Dask's KilledWorker)."""
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return {"status": "error", "metrics": {}, "history": [], "error": f"{type(err).__name__}: {err}",
            "traceback": text, "time": 0.0}


# ------------------------------------------------------------------------------ what a run's function is


def _name(fn: Callable) -> str:
    """The function for people: ``module.qualname``, a partial with its arguments."""
    if isinstance(fn, functools.partial):
        args = [repr(a) for a in fn.args] + [f"{k}={v!r}" for k, v in fn.keywords.items()]
        return f"functools.partial({', '.join([_name(fn.func), *args])})"[:300]
    return f"{getattr(fn, '__module__', None) or '?'}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"


def experiment_id(fn: Callable) -> str:
    """What identifies an experiment function in an ``out_dir``: 16 hex digits, stable across processes.

    The hash covers the function's ``module.qualname``, its code (bytecode, constants and names,
    not line numbers), its defaults, the values its closure captured and the values of the
    module globals its code names that are plain data (None, bool, int, float, str, bytes, and
    tuples, lists and dicts of those: ``SCALE = 100``, a defaults dict); for a
    ``functools.partial`` the wrapped function and the bound arguments; for a bound method its
    function, its object and the object's class; for a callable object its attributes and its
    class: the code of every method and the plain-data class attributes, along the MRO. Two
    closures of one factory, two partials of one function with other arguments, two lambdas,
    an edited function and an edited module constant are different experiments. Captured
    values are hashed by value (JSON values, NumPy arrays, sets sorted, functions, objects by their
    attributes, and anything else by its pickle); an object that cannot be pickled counts by its
    type only. Not covered: the code of
    other functions, classes and modules it calls, globals that are not plain data (modules,
    functions, arrays), and files it reads.

    Args:
        fn: the experiment function (any callable).

    Returns:
        The identity, as hex text.

    Examples:
        >>> import functools
        >>> def experiment(config, seed, scale=1.0):
        ...     return {"loss": scale * seed}
        >>> experiment_id(functools.partial(experiment, scale=2.0)) == experiment_id(
        ...     functools.partial(experiment, scale=2.0))
        True
        >>> experiment_id(functools.partial(experiment, scale=2.0)) == experiment_id(experiment)
        False
    """
    described = json.dumps(_describe(fn, {}), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(described.encode()).hexdigest()[:16]


def _describe(x: Any, seen: dict[int, Any]) -> Any:
    """``x`` as a JSON value that differs whenever ``x`` does (for functions: code and captured values).

    ``seen`` maps what was described already to its description (shared objects are described
    once) and marks what is being described (a cycle ends there).
    """
    if x is None or isinstance(x, bool | int | str):
        return x
    if isinstance(x, float):
        return repr(x)  # NaN and inf too; and 1.0 apart from 1
    if id(x) in seen:
        return seen[id(x)]
    seen[id(x)] = "<cycle>"
    seen[id(x)] = described = _described(x, seen)
    return described


def _described(x: Any, seen: dict[int, Any]) -> Any:
    if isinstance(x, functools.partial):
        return {"partial": _describe(x.func, seen), "args": _describe(x.args, seen),
                "keywords": _describe(x.keywords, seen)}
    if isinstance(x, types.MethodType):  # the class too: the method may call the object's other methods
        owner = x.__self__ if isinstance(x.__self__, type) else type(x.__self__)
        return {"method": _describe(x.__func__, seen), "self": _describe(x.__self__, seen),
                "class": _class(owner, seen)}
    if isinstance(x, types.FunctionType):
        cells = []
        for cell in x.__closure__ or ():
            try:
                cells.append(_describe(cell.cell_contents, seen))
            except ValueError:  # a cell not yet filled
                cells.append("<empty>")
        return {"function": _name(x), "code": _code(x.__code__), "defaults": _describe(x.__defaults__, seen),
                "kwdefaults": _describe(x.__kwdefaults__, seen), "closure": cells,
                "globals": _globals(x, seen)}
    if isinstance(x, list | tuple):
        return {type(x).__qualname__: [_describe(v, seen) for v in x]}
    if isinstance(x, dict):
        return {"dict": sorted(([_describe(k, seen), _describe(v, seen)] for k, v in x.items()), key=repr)}
    if isinstance(x, set | frozenset):  # sorted: a pickle follows a set's order, which the hash seed sets
        return {type(x).__qualname__: sorted((_describe(v, seen) for v in x), key=repr)}
    if isinstance(x, np.ndarray | np.generic):
        a = np.asarray(x)
        return {"array": [str(a.dtype), list(a.shape), hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()]}
    if hasattr(x, "__dict__") and not isinstance(x, type | types.ModuleType):  # an object: its attributes
        described = {"object": type(x).__qualname__, "state": _describe(vars(x), seen)}
    else:
        described = None
    try:
        described = described or {"pickle": [type(x).__qualname__,
                                              hashlib.sha256(pickle.dumps(x, protocol=4)).hexdigest()]}
    except Exception:  # not picklable: the type is all that can be told
        described = {"object": f"{type(x).__module__}.{type(x).__qualname__}"}
    if callable(x) and not isinstance(x, type) and type(x).__module__ != "builtins":
        described["class"] = _class(type(x), seen)  # a pickle holds the object's state, not its class's code
    return described


def _names_in(code: types.CodeType) -> set[str]:
    """The global (and attribute) names a code object uses, nested code (lambdas, inner functions) included."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_in(const)
    return names


def _globals(fn: types.FunctionType, seen: dict[int, Any]) -> dict[str, Any]:
    """The module globals ``fn``'s code names whose values are plain data, by value.

    Other globals (modules, functions, classes, arrays) are left out: their code or contents
    are not part of the identity.
    """
    namespace = getattr(fn, "__globals__", None) or {}
    out = {}
    for name in sorted(_names_in(fn.__code__)):
        if name in namespace and _is_plain(namespace[name], set()):
            out[name] = _describe(namespace[name], seen)
    return out


def _is_plain(x: Any, path: set[int]) -> bool:
    """Whether ``x`` is plain data: None, bool, int, float, str, bytes, and tuples, lists, dicts of those."""
    if x is None or isinstance(x, bool | int | float | str | bytes):
        return True
    if not isinstance(x, list | tuple | dict) or id(x) in path or len(path) > 100:
        return False  # a cycle, or nesting beyond reason, is not plain
    path = path | {id(x)}
    items = [v for kv in x.items() for v in kv] if isinstance(x, dict) else x
    return all(_is_plain(v, path) for v in items)


def _class(cls: type, seen: dict[int, Any]) -> Any:
    """A class as its methods' code and its plain-data attributes, along its MRO (builtins left out)."""
    out = []
    for klass in cls.__mro__:
        if klass.__module__ == "builtins":
            continue
        members = {}
        for name, value in sorted(vars(klass).items()):
            if isinstance(value, staticmethod | classmethod):
                value = value.__func__
            if isinstance(value, property):
                value = [value.fget, value.fset, value.fdel]
                if all(f is None or isinstance(f, types.FunctionType) for f in value):
                    members[name] = _describe(value, seen)
            elif isinstance(value, types.FunctionType) or (not name.startswith("__") and _is_plain(value, set())):
                members[name] = _describe(value, seen)
        out.append([f"{klass.__module__}.{klass.__qualname__}", members])
    return out


def _code(code: types.CodeType) -> str:
    """A hash of what a code object does: bytecode, constants (nested code too) and names."""
    def const(c: Any) -> str:
        if isinstance(c, types.CodeType):
            return _code(c)
        if isinstance(c, frozenset):  # its repr's order changes with the string hash seed
            return "frozenset(" + ",".join(sorted(const(v) for v in c)) + ")"
        if isinstance(c, tuple):
            return "(" + ",".join(const(v) for v in c) + ")"
        return f"{type(c).__name__}:{c!r}"

    parts = [code.co_code.hex(), const(code.co_consts), repr(code.co_names), repr(code.co_varnames),
             repr(code.co_freevars), str(code.co_argcount), str(code.co_kwonlyargcount)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------ records in out_dir


def _load(out: Path, run: _Run, name: str, identity: str) -> dict[str, Any] | None:
    """The record of a successful earlier run, or None when it must run (again).

    A record is checked as strictly as a new run's: anything missing or malformed means run it
    again. A valid record of another experiment is an error: its folder is not this sweep's.
    """
    path = out / f"{run.id}.json"
    # said before any run: a folder, a FIFO (whose read would block), a device or a loop of links
    # at a record's path could not take the run's record after the run
    check_destination(path, what="run's record")
    try:
        with open_regular(path, what="run's record") as f:
            record = json.loads(f.read())
    except (OSError, ValueError):  # absent, or unreadable: run it
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return None
    if record.get("config") != run.config or type(record.get("seed")) is not int or record["seed"] != run.seed:
        return None  # another run's record (or a seed of 0.0 or False written by hand): run this one
    if not isinstance(record.get("experiment_id"), str):
        return None  # malformed, not another experiment's: run it again
    if record["experiment_id"] != identity:
        raise ValueError(f"sweep: {out} holds runs of another experiment ({str(record.get('experiment'))[:200]}, "
                         f"id {record.get('experiment_id')}), not of {name} (id {identity}); give each experiment "
                         "its own out_dir (an edited function, or other bound arguments, is another experiment)")
    if record.get("status") != "ok" or not _valid(record, run):
        return None
    return record


def _valid(record: dict[str, Any], run: _Run) -> bool:
    """Whether an "ok" record read from disk has every field a fresh one has, of the right kind."""
    try:
        metrics = record["metrics"]
        if not isinstance(metrics, dict) or not all(isinstance(k, str) for k in metrics):
            return False
        _check_metric_names(metrics, run.config)
        _check_history(record["history"])
    except (KeyError, TypeError, ValueError):
        return False
    return (isinstance(record.get("error"), str) and isinstance(record.get("traceback"), str)
            and _is_number(record.get("time")) and record.get("run") == run.id)


def _check_writable(out: Path) -> None:
    """Fail before any run, naming ``out_dir``, when its records could not be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise type(err)(err.errno, f"sweep: cannot write the runs' records into out_dir ({err.strerror})",
                        str(out)) from None


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


def _task_tag(fn: Experiment, identity: str) -> str:
    """The function itself, for Dask's task keys: its cloudpickle bytes (what the workers run) and identity."""
    try:
        import cloudpickle

        shipped = cloudpickle.dumps(fn)
    except Exception:  # it will not travel anyway; a token of this sweep keeps the keys apart
        shipped = uuid.uuid4().bytes
    return hashlib.sha256(shipped + identity.encode()).hexdigest()[:16]


def _dask(client: Any, fn: Experiment, todo: list[_Run], identity: str,
          retries: int) -> Iterator[tuple[_Run, dict]]:
    from distributed import as_completed

    tag = _task_tag(fn, identity)
    # The key names the function and the run: a run of one function submitted twice (two clients,
    # a resubmission) is one task on the scheduler, and runs of different functions never share one.
    # Tasks of a worker that died are rescheduled by the scheduler itself.
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
    """Run ``fn(config, seed)`` for every configuration and seed; one table row per run.

    Args:
        fn: the experiment, ``fn(config, seed) -> {metric: value, ..., "history": [losses]}``;
            metric names are str, values JSON values, ``history`` a list of numbers.
        configs: a list of configurations (dicts of JSON values, str keys), or one.
        seeds: an int n (seeds ``0..n-1``) or the seeds themselves.
        executor: None (here, in order), a ``concurrent.futures.Executor`` (or anything whose
            ``submit`` returns a ``concurrent.futures.Future``) or a ``dask.distributed.Client``.
        out_dir: a folder that keeps every finished run (``<run>.json``); a rerun loads the
            successful ones of the same experiment (see `experiment_id`) instead of running them.
        progress: a bar over runs (None: when stderr is a terminal).
        fail_fast: stop with `SweepError` at the first failed run.
        retries: Dask's retries of a task that raised outside ``fn`` (a task whose worker died is
            rescheduled by the scheduler anyway, up to ``distributed.scheduler.allowed-failures``).

    Returns:
        The `Results`, rows in the runs' order (configurations outer, seeds inner). A
        failed run is a row with status ``"error"``.

    Raises:
        SweepError: a run failed under ``fail_fast``.
        KeyboardInterrupt: Ctrl-C (also ``fit``'s ``TrainingInterrupted`` from ``fn``) stops the
            sweep; the run it cut short is not recorded, the finished ones stay in ``out_dir``.
        ValueError: invalid configurations or seeds; ``out_dir`` holds runs of another experiment.
        TypeError: an executor that is none of the above; configuration values that are not JSON.
        OSError: ``out_dir`` cannot be written (the error names it).

    Examples:
        >>> import tempfile
        >>> from funcnet import random
        >>> def noisy(config, seed):
        ...     draw = float(random.normal(random.key(seed), (), dtype="float32"))
        ...     return {"loss": config["scale"] * draw ** 2}
        >>> folder = tempfile.mkdtemp()
        >>> results = sweep(noisy, grid(scale=[1.0, 2.0]), 3, out_dir=folder, progress=False)
        >>> len(results), results.metrics
        (6, ['loss'])
        >>> sweep(noisy, grid(scale=[1.0, 2.0]), 3, out_dir=folder, progress=False).skipped
        6
    """
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise TypeError(f"sweep: executor must be None, a concurrent.futures.Executor or a dask Client, "
                        f"got {type(executor).__name__}")
    runs = _runs(configs, seeds)
    name, identity = _name(fn), experiment_id(fn)
    out = None if out_dir is None else Path(out_dir)
    records: dict[int, dict[str, Any]] = {}
    if out is not None:
        _check_writable(out)
        records = {run.index: rec for run in runs if (rec := _load(out, run, name, identity)) is not None}
    skipped = len(records)
    todo = [run for run in runs if run.index not in records]
    if executor is None:
        completed = _sequential(fn, todo)
    elif _is_dask_client(executor):
        completed = _dask(executor, fn, todo, identity, retries)
    else:
        completed = _pooled(executor, fn, todo)

    bar = train.progress_bar(progress, len(runs), skipped, unit="run", desc="sweep")
    failures = 0
    try:
        with contextlib.closing(completed):
            for run, record in completed:
                record = {"format": FORMAT, "experiment": name, "experiment_id": identity, "run": run.id,
                          "config": run.config, "seed": run.seed, **record}
                records[run.index] = record
                if out is not None:
                    write_atomic(out / f"{run.id}.json", json.dumps(record).encode() + b"\n", what="run's record")
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
        rows.append({**copy.deepcopy(run.config), "seed": run.seed, **dict.fromkeys(metrics), **rec["metrics"],
                     "history": rec["history"], "status": rec["status"], "error": rec["error"],
                     "time": rec["time"], "run": run.id})
    config_keys = list(dict.fromkeys(k for run in runs for k in run.config))
    return Results(rows, config_keys, skipped=skipped)


# ------------------------------------------------------------------------------ the table


class Results:
    """The table of a sweep: ``rows``, one dict per run in the runs' order.

    Args:
        rows: the rows (configuration keys, ``seed``, metrics, ``history``, ``status``, ``error``,
            ``time``, ``run``).
        config_keys: which columns are the configuration's.
        skipped: how many runs were loaded from ``out_dir`` instead of run.

    Examples:
        >>> table = Results([{"lr": 0.1, "seed": 0, "loss": 1.0, "status": "ok"},
        ...                  {"lr": 0.1, "seed": 1, "loss": 3.0, "status": "ok"}], config_keys=["lr"])
        >>> table.aggregate("loss")[0]["mean"], len(table.where(seed=1))
        (2.0, 1)
    """

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
        """Per configuration, over its successful seeds: n, mean, std (n - 1), min and max of ``metric``.

        Args:
            metric: one of `metrics` whose values are numbers (bools count as 0 and 1), or ``"time"``.

        Returns:
            One dict per configuration, in first-seen order: its configuration keys and ``n``,
            ``mean``, ``std``, ``min``, ``max`` (NaN where no seed succeeded).

        Raises:
            KeyError: the table has no column ``metric`` (the message lists the metrics it has).
            TypeError: a successful run's ``metric`` is not a number (a list, a str): name it.

        Examples:
            >>> table = Results([{"lr": 0.1, "seed": 0, "acc": 0.5, "status": "ok"},
            ...                  {"lr": 0.1, "seed": 1, "acc": 1.0, "status": "ok"}], config_keys=["lr"])
            >>> table.aggregate("acc")
            [{'lr': 0.1, 'n': 2, 'mean': 0.75, 'std': 0.3535533905932738, 'min': 0.5, 'max': 1.0}]
        """
        if not isinstance(metric, str):
            raise TypeError(f"aggregate: metric must be a column name (str), got {type(metric).__name__}")
        if self.rows and metric not in self.metrics and metric != "time":
            raise KeyError(f"aggregate: the table has no metric {metric!r}; its metrics are "
                           f"{self.metrics or 'none (no run succeeded)'}")
        for row in self.ok():
            value = row.get(metric)
            if value is not None and not isinstance(value, int | float):
                raise TypeError(f"aggregate: metric {metric!r} is not a number in run {row.get('run', '?')} "
                                f"(seed {row.get('seed', '?')}): {type(value).__name__} {value!r:.100}; "
                                "aggregate averages one number a run (aggregate a list's items as metrics "
                                "of their own)")
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
        write_atomic(path, buffer.getvalue().encode(), what="table")

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
    from funcnet.plot import finish, subplots

    fig, ax = subplots(show, (7.5, 4.5))
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
    return finish(None, fig, path, show)


# ------------------------------------------------------------------------------ moved names


def __getattr__(name: str) -> Any:
    """``spiral_experiment`` and ``SPIRAL_DEFAULTS`` moved to `funcnet.recipes`; the old names still work."""
    if name in ("spiral_experiment", "SPIRAL_DEFAULTS"):
        warnings.warn(f"funcnet.experiments.{name} moved to funcnet.recipes.{name}", DeprecationWarning,
                      stacklevel=2)
        from funcnet import recipes

        return getattr(recipes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
