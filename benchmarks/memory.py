"""Peak memory: each implementation in a fresh process, ``ru_maxrss`` after N steps of a workload.

Run as ``python -m benchmarks.memory IMPL WORKLOAD STEPS``; prints one JSON line with the peak
RSS once the implementation is built and one step has run (``before_mib``: libraries, data,
params, first-step buffers) and after all steps (``peak_mib``).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _vm_hwm_mib() -> float:
    """The kernel's high-water mark of this process's RSS (a cross-check of ru_maxrss)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


# Linux keeps the peak RSS of a process across exec, and a child spawned from this (large)
# process starts out as a copy of it: ru_maxrss would report this process's size. A small
# launcher in between makes the measured process the child of a small one.
_LAUNCHER = (
    "import subprocess, sys; "
    "sys.exit(subprocess.call([sys.executable, '-m', 'benchmarks.memory', *sys.argv[1:]]))"
)


def measure(impl: str, workload: str, steps: int, timeout: float = 300.0) -> dict:
    """Run one measurement in a fresh interpreter (with this process's environment)."""
    cmd = [sys.executable, "-c", _LAUNCHER, impl, workload, str(steps)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ))
    if proc.returncode != 0:
        raise RuntimeError(f"memory run of {impl} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    impl, workload, steps = argv[0], argv[1], int(argv[2])
    from benchmarks import impls, workloads

    w = getattr(workloads, workload.upper())
    bench = impls.build(impl, w, with_fit=False)
    bench.steps(1)
    before = _maxrss_mib()
    bench.steps(steps - 1)
    print(json.dumps({"impl": impl, "workload": workload, "steps": steps,
                      "before_mib": before, "peak_mib": _maxrss_mib(), "vm_hwm_mib": _vm_hwm_mib()}))


if __name__ == "__main__":
    main(sys.argv[1:])
