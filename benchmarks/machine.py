"""What the numbers ran on: CPU, cores, library versions, the BLAS NumPy uses, its GEMM rate."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import sys
import time

import numpy as np

BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in ("funcnet", "numpy", "jax", "jaxlib", "optax", "torch", "threadpoolctl"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def blas() -> list[dict[str, str]]:
    """The BLAS libraries loaded in this process, per threadpoolctl (empty when it is not installed)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("internal_api", "version", "architecture", "threading_layer", "num_threads", "prefix")
    return [{k: str(info.get(k, "")) for k in keys} for info in threadpool_info() if info.get("user_api") == "blas"]


def describe() -> dict:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "versions": versions(),
        "blas": blas(),
        "blas_env": {k: os.environ[k] for k in BLAS_ENV if k in os.environ},
        "blas_env_unset": os.environ.get("FUNCNET_BENCH_UNSET", ""),
        "executable": sys.executable,
    }


def gemm_gflops(n: int = 1024, rounds: int = 7) -> dict[str, float]:
    """NumPy's float32 ``n x n @ n x n`` rate in GFLOP/s: the median and the best of ``rounds``."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=out)  # warm-up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - start)
    flop = 2.0 * n**3
    return {"n": n, "median": flop / statistics.median(times) / 1e9, "best": flop / min(times) / 1e9}
