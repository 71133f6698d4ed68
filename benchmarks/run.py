"""Run the benchmarks and write the report.

    python -m benchmarks.run            # full: writes docs/benchmarks.md and benchmarks/results/full.json
    python -m benchmarks.run --quick    # tiny sizes, for CI: writes benchmarks/results/quick.{md,json}

OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, when set, slow current NumPy here; run as a command,
this module re-executes itself once without them (before NumPy is imported), and the report
says so. ``--keep-blas-env`` keeps them. Only stdlib is imported before that decision.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes and rounds (CI smoke test)")
    p.add_argument("--out", type=Path, help="where to write the Markdown report (default: docs/benchmarks.md "
                                            "for a full run, benchmarks/results/quick.md for --quick)")
    p.add_argument("--write-docs", action="store_true", help="write docs/benchmarks.md even with --quick")
    p.add_argument("--keep-blas-env", action="store_true", help="do not unset OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE")
    p.add_argument("--single-thread", action="store_true",
                   help="run every library on one thread (NumPy's BLAS, PyTorch, XLA): steadier numbers on a "
                        "machine shared with other work")
    return p.parse_args(argv)


def _single_thread() -> None:
    """One thread for every library; set before they load (and through threadpoolctl for NumPy if loaded)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    flag = "--xla_cpu_multi_thread_eigen=false"
    if flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1)


def _reexec_without_blas_env(argv: list[str]) -> None:
    present = [k for k in BLAS_ENV if k in os.environ]
    if not present or "numpy" in sys.modules:
        return
    env = {k: v for k, v in os.environ.items() if k not in BLAS_ENV}
    env["FUNCNET_BENCH_UNSET"] = ", ".join(f"{k}={os.environ[k]}" for k in present)
    os.execve(sys.executable, [sys.executable, "-m", "benchmarks.run", *argv], env)


def command(argv: list[str]) -> str:
    cmd = shlex.join(["python", "-m", "benchmarks.run", *argv])
    unset = os.environ.get("FUNCNET_BENCH_UNSET")
    return f"{cmd}  # re-executed with {unset} unset" if unset else cmd


def main(argv: list[str] | None = None, *, allow_reexec: bool = False) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if allow_reexec and not args.keep_blas_env:
        _reexec_without_blas_env(argv)
    if args.single_thread:
        _single_thread()

    from benchmarks import report, suite

    results = suite.run(quick=args.quick, single_thread=args.single_thread,
                        log=lambda msg: print(msg, file=sys.stderr, flush=True))
    stem = "quick" if args.quick else "full"
    out = args.out or (DOCS if (not args.quick or args.write_docs) else RESULTS / f"{stem}.md")
    text = report.render(results, command(argv))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    json_path = out.with_suffix(".json") if args.out else RESULTS / f"{stem}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1, default=str))
    print(f"wrote {out} and {json_path}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main(allow_reexec=True)
