"""Benchmark of the two-layer training experiment at the paper's Fig. 3(a) size.

Prints seconds per gradient step and per one-step measurement (test-CK eigenpairs, edge,
outliers, label alignment, s_max(W_T − W0)) against the matmul floor of a step (two n·d·N GEMMs).

    python -m kernels.bench.training [--n 2000 --d 1600 --N 2400 --steps 3 --threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from kernels.backend import blas_threads, get_backend
from kernels.training import draw_teacher_student, gradient, measure_one_step


def _matmul_rate(backend_name: str, size: int = 1500) -> float:
    """Measured GEMM rate in flop/s on a size³ product (the floor's denominator)."""
    be = get_backend(backend_name)
    A = be.asarray(np.ones((size, size)))
    A @ A
    be.synchronize()
    t0 = time.perf_counter()
    for _ in range(3):
        A @ A
    be.synchronize()
    return 3 * 2 * size**3 / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--d", type=int, default=1600)
    parser.add_argument("--N", type=int, default=2400)
    parser.add_argument("--steps", type=int, default=3, help="gradient steps to time")
    parser.add_argument("--k", type=int, default=8, help="top eigenpairs measured")
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--threads", type=int, default=None, help="BLAS threads (default: all)")
    args = parser.parse_args()

    be = get_backend(args.backend)
    with blas_threads(args.threads):
        data = draw_teacher_student(args.n, args.d, args.N, args.n, "erf", 0.0,
                                    np.random.SeedSequence(0), be)
        gradient(data.W0, data, "erf")  # warm-up (BLAS/cuBLAS initialisation)
        be.synchronize()
        t0 = time.perf_counter()
        W = data.W0.copy()
        for _ in range(args.steps):
            W += (2.0 / args.steps) * args.N**0.5 * gradient(W, data, "erf")
        be.synchronize()
        per_step = (time.perf_counter() - t0) / args.steps

        t0 = time.perf_counter()
        m = measure_one_step(data, "erf", 2.0, 1, args.k, be)
        be.synchronize()
        per_measure = time.perf_counter() - t0 - per_step  # measure_one_step trains one step
        rate = _matmul_rate(args.backend)

    floor = 2 * 2 * args.n * args.d * args.N / rate
    print(f"size n={args.n} d={args.d} N={args.N} backend={args.backend} threads={args.threads}")
    print(f"GEMM rate               {rate / 1e9:8.1f} Gflop/s")
    print(f"gradient step           {per_step:8.3f} s   (matmul floor {floor:.3f} s)")
    print(f"measurement (no train)  {per_measure:8.3f} s")
    print(f"spike {m.eigval[0]:.3f}  edge {m.edge_emp:.3f}  align {m.align_label:.3f}  "
          f"theta1_hat {m.theta1_realised:.3f}")


if __name__ == "__main__":
    main()
