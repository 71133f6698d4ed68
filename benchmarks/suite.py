"""The whole benchmark: every measurement in one process (memory in fresh ones), as one dict.

``run(quick=False)`` returns the results that :mod:`benchmarks.report` turns into Markdown.
Quick mode keeps every row but shrinks sizes and rounds, for CI smoke tests.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import asdict, dataclass

import numpy as np

from benchmarks import correctness, impls, machine, memory, profiling, timing, workloads

SMALL_STEP = ("reference", "inline-floor", "funcnet-numpy", "funcnet-jax", "stax-optax", "torch")
SMALL_FIT = ("reference", "funcnet-numpy", "funcnet-jax", "stax-optax", "torch")
LARGE_STEP = ("reference", "gemms", "funcnet-numpy", "funcnet-jax", "stax-optax", "torch")
MEMORY = ("reference", "funcnet-numpy", "funcnet-jax", "stax-optax", "torch")


@dataclass(frozen=True)
class Plan:
    small: workloads.Workload
    large: workloads.Workload
    large_name: str  # the workloads attribute, for the memory subprocess
    small_step_repeat: int  # steps per timed sample
    small_step_rounds: int
    fit_rounds: int
    large_step_repeat: int
    large_step_rounds: int
    memory_steps: int
    memory_impls: tuple[str, ...]
    gemm_n: int
    profile_steps: int


FULL = Plan(workloads.SMALL, workloads.LARGE, "large", small_step_repeat=200, small_step_rounds=21,
            fit_rounds=7, large_step_repeat=2, large_step_rounds=15, memory_steps=100,
            memory_impls=MEMORY, gemm_n=1024, profile_steps=2000)
QUICK = Plan(workloads.QUICK_SMALL, workloads.QUICK_LARGE, "quick_large", small_step_repeat=5,
             small_step_rounds=3, fit_rounds=2, large_step_repeat=1, large_step_rounds=3, memory_steps=5,
             memory_impls=("reference", "funcnet-numpy"), gemm_n=128, profile_steps=50)


_BUILT: dict = {}  # (name, workload) -> Impl: the step and fit sections share builds (and jit caches)


def _build(names, w):
    built, skipped = {}, {}
    for name in names:
        try:
            if (name, w) not in _BUILT:
                _BUILT[name, w] = impls.build(name, w)
            built[name] = _BUILT[name, w]
        except impls.UnavailableError as err:
            skipped[name] = str(err)
    return built, skipped


def _table(samples, first, labels, base="reference") -> list[dict]:
    rows = []
    for name, xs in samples.items():
        med = timing.median(xs)
        rows.append({"key": name, "name": labels[name], "median_s": med, "best_s": min(xs),
                     "spread": timing.spread(xs),
                     "ratio": timing.ratio(samples, name, base), "first_call_s": first[name],
                     "samples": len(xs)})
    return rows


def _time(built, call, *, rounds, repeat):
    contenders = {name: (lambda impl=impl: call(impl)) for name, impl in built.items()}
    first = {}
    for name, fn in contenders.items():  # the first call (jit compiles here), then one warm-up
        start = time.perf_counter()
        fn()
        first[name] = time.perf_counter() - start
    samples = timing.interleaved(contenders, rounds=rounds, warmup=1, repeat=repeat)
    return samples, first


def small_step(plan: Plan) -> dict:
    built, skipped = _build(SMALL_STEP, plan.small)
    k = plan.small_step_repeat
    samples, first = _time(built, lambda impl: impl.steps(k), rounds=plan.small_step_rounds, repeat=1)
    per_step = {name: [s / k for s in xs] for name, xs in samples.items()}
    first = {name: s / k for name, s in first.items()}
    labels = {name: impl.name for name, impl in built.items()}
    return {"rows": _table(per_step, first, labels), "skipped": skipped, "steps_per_sample": k}


def small_fit(plan: Plan) -> dict:
    built, skipped = _build(SMALL_FIT, plan.small)
    losses = {}

    def call(impl):
        losses[impl.name] = impl.fit()

    samples, first = _time(built, call, rounds=plan.fit_rounds, repeat=1)
    labels = {name: impl.name for name, impl in built.items()}
    rows = _table(samples, first, labels)
    for row in rows:
        row["final_loss"] = losses[row["name"]]
        row["per_step_s"] = row["median_s"] / (plan.small.epochs * plan.small.iters)
    return {"rows": rows, "skipped": skipped, "epochs": plan.small.epochs}


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def large_step(plan: Plan) -> dict:
    built, skipped = _build(LARGE_STEP, plan.large)
    k = plan.large_step_repeat
    faults = dict.fromkeys(built, 0)
    keys = {impl.name: name for name, impl in built.items()}

    def call(impl):
        before = _minor_faults()
        impl.steps(k)
        faults[keys[impl.name]] += _minor_faults() - before

    samples, first = _time(built, call, rounds=plan.large_step_rounds, repeat=1)
    per_step = {name: [s / k for s in xs] for name, xs in samples.items()}
    labels = {name: impl.name for name, impl in built.items()}
    rows = _table(per_step, {n: s / k for n, s in first.items()}, labels)
    calls = (plan.large_step_rounds + 2) * k  # first call, warm-up, rounds
    for row in rows:
        row["minor_faults_per_step"] = faults[row["key"]] / calls
    gemm_share = {name: timing.ratio(per_step, "gemms", name) for name in per_step}
    flops = workloads.gemm_flops(workloads.minimal_gemms(plan.large, np.random.default_rng(0)))
    return {"rows": rows, "skipped": skipped, "gemm_share": gemm_share, "steps_per_sample": k,
            "minimal_gemm_flops": flops}


def peak_memory(plan: Plan) -> dict:
    rows, skipped = [], {}
    for name in plan.memory_impls:
        try:
            rows.append(memory.measure(name, plan.large_name, plan.memory_steps))
        except RuntimeError as err:
            if "UnavailableError" not in str(err):
                raise
            skipped[name] = str(err).strip().splitlines()[-1]
    base = next((r for r in rows if r["impl"] == "reference"), None)
    for r in rows:
        r["ratio"] = r["peak_mib"] / base["peak_mib"] if base else float("nan")
    return {"rows": rows, "skipped": skipped, "steps": plan.memory_steps}


def profile(plan: Plan) -> dict:
    built, _ = _build(("funcnet-jax",), plan.small)
    jax_fit = built.get("funcnet-jax")
    return {
        "cprofile_jax_fit": profiling.cprofile_fit(jax_fit.fit, plan.small.epochs) if jax_fit else None,
        "array_calls": {k: dict(v) for k, v in profiling.array_calls(plan.small).items()},
        "call_costs_us": profiling.call_costs(n=max(plan.profile_steps, 100)),
        "cprofile": profiling.cprofile_step(plan.small, n=plan.profile_steps),
        "phases_small_us": profiling.phases(plan.small, n=max(plan.profile_steps // 4, 20)),
    }


def targets(results: dict) -> list[dict]:
    """The library's goals (ratios to the reference, same run), each met or missed."""

    def ratio(section, key):
        return next((r["ratio"] for r in results[section]["rows"] if r["key"] == key), float("nan"))

    mem = {r["impl"]: r["ratio"] for r in results["memory"]["rows"]}
    # the targets ("Small models at NumPy speed"), as stated there
    goals = [
        ("small step, funcnet NumPy / reference step", ratio("small_step", "funcnet-numpy"), "<=", 0.65),
        ("small 300-epoch fit, funcnet NumPy / reference loop", ratio("small_fit", "funcnet-numpy"), "<=", 0.65),
        ("small fit, funcnet JAX compiled epoch / reference loop", ratio("small_fit", "funcnet-jax"), "<=", 0.12),
        ("large step, minimal GEMM time / funcnet NumPy step", results["large_step"]["gemm_share"].get(
            "funcnet-numpy", float("nan")), ">=", 0.82),
        ("large peak memory (100 steps), funcnet NumPy / reference", mem.get("funcnet-numpy", float("nan")),
         "<=", 1.00),
    ]
    out = []
    for what, value, op, bound in goals:
        met = value <= bound if op == "<=" else value >= bound
        out.append({"target": what, "value": value, "goal": f"{op} {bound:.2f}", "met": bool(met)})
    return out


def run(quick: bool = False, single_thread: bool = False, log=print) -> dict:
    plan = QUICK if quick else FULL
    impls.SINGLE_THREAD = single_thread
    results = {"mode": "quick" if quick else "full", "plan": asdict(plan), "started": time.time(),
               "load_before": os.getloadavg(), "single_thread": single_thread}
    log("machine and GEMM rate ...")
    results["machine"] = machine.describe()
    results["gemm"] = machine.gemm_gflops(plan.gemm_n)
    log("correctness (float64, 300 epochs) ...")
    results["correctness"] = correctness.compare()
    for name, section in (("small_step", small_step), ("small_fit", small_fit), ("large_step", large_step),
                          ("memory", peak_memory), ("profile", profile)):
        log(f"{name} ...")
        start = time.perf_counter()
        results[name] = section(plan)
        results[name]["seconds"] = time.perf_counter() - start
    results["targets"] = targets(results)
    results["load_after"] = os.getloadavg()
    results["seconds"] = time.time() - results["started"]
    return results
