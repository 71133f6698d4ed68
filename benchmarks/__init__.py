"""Side-by-side benchmarks of funcnet, the book's NumPy code, JAX stax + optax and PyTorch.

    python -m benchmarks.run            # full run: writes docs/benchmarks.md
    python -m benchmarks.run --quick    # smoke test: writes benchmarks/results/quick.md

Modules: ``reference`` (the book's code), ``workloads`` (small spiral, large MLP), ``impls``
(each implementation built the same way), ``timing`` (interleaved rounds), ``machine`` (CPU,
versions, BLAS, GEMM rate), ``memory`` (peak RSS in fresh processes), ``correctness`` (funcnet
against the reference in float64), ``profiling`` (where a small step's time goes), ``suite``
(all of it as one dict), ``report`` (that dict as Markdown), ``run`` (the command).
This package must not import NumPy at import time: ``run`` decides on the BLAS environment first.
"""
