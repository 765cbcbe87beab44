"""Measured BLAS rate, for the cost model of ``sweep plan`` and the benchmarks."""

from __future__ import annotations

import time

import numpy as np

from kernels.backend import blas_threads

__all__ = ["blas_gflops"]


def blas_gflops(threads: int = 1, size: int = 768, repeats: int = 3) -> float:
    """GFlop/s of a float64 ``size`` x ``size`` matmul with ``threads`` BLAS threads (best of repeats)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((size, size)), rng.standard_normal((size, size))
    best = float("inf")
    with blas_threads(threads):
        a @ b  # warm-up: thread pool start, page faults
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
    return 2.0 * size**3 / best / 1e9
