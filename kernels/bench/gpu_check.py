"""Prepared GPU check: cupy results against numpy, then seconds per layer on the device.

    python -m kernels.bench.gpu_check            # full check (~1-2 minutes on one modern GPU)
    python -m kernels.bench.gpu_check --quick    # smaller sizes

Exits 0 with a message when cupy or a CUDA device is absent; exits 1 if a comparison fails.

Comparisons (the cupy generator differs from numpy's, so like is compared with like):
1. top-k eigenpairs of the same host features solved on the device vs dense numpy eigh
   (primal and dual Gram): eigenvalues to 1e-8 relative, eigenvectors |<u, v>| to 1e-7;
2. full spectrum (eigvalsh on the device) vs numpy;
3. the forward recursion with the device's weights, recomputed on the host, to 1e-10;
4. the THEORY.md section 7 tanh example (gmm, gamma = 1/2, theta = 2) run end to end on both
   backends: mean spike and alignment per layer within 3 % / 0.03 of the listed limits.
Timings: forward, Gram + Lanczos top-k and dense eigh per layer for n = 2000, 4000, 8000 at
width ratio 1, float64 and float32, with device synchronisation around each timer.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

THEORY_SPIKES = (5.625000, 6.010385, 6.461356)
THEORY_ALIGNS = (0.861111, 0.713160, 0.557571)


def _features(d: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n)) / np.sqrt(n)
    b = rng.choice([-1.0, 1.0], n) / np.sqrt(n)
    X += 3.0 * np.outer(rng.standard_normal(n) / np.sqrt(n), b)
    return np.tanh(rng.standard_normal((d, n)) @ X) / np.sqrt(d)


class _Report:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def check(self, name: str, ok: bool, detail: str) -> None:
        print(f"  [{'ok' if ok else 'FAIL'}] {name}: {detail}")
        if not ok:
            self.failures.append(name)


def compare(cp_be: Any, np_be: Any, n: int, report: _Report) -> None:
    from kernels.activations import get_activation
    from kernels.eigen import all_eigenvalues, top_eigenpairs
    from kernels.network import forward, layer_weights

    print("\ncomparisons (cupy vs numpy)")
    for d in (n, n // 2):
        F = _features(d, n, seed=d)
        ref_vals, ref_vecs = top_eigenpairs(F, 16, method="dense")
        for method in ("lanczos", "dense"):
            vals, vecs = top_eigenpairs(cp_be.asarray(F), 16, method=method)
            rel = float(np.max(np.abs(vals - ref_vals) / ref_vals))
            ov = float(np.max(np.abs(np.abs(np.sum(vecs * ref_vecs, axis=0)) - 1)))
            report.check(f"top-16 {method}, d = {d}, n = {n}", rel < 1e-8 and ov < 1e-7,
                         f"max rel eigenvalue diff {rel:.2e}, max |1 - |<u,v>|| {ov:.2e}")
    F = _features(n // 2, n, seed=1)
    diff = float(np.max(np.abs(all_eigenvalues(cp_be.asarray(F)) - all_eigenvalues(F))))
    report.check("full spectrum", diff < 1e-9 * float(np.max(all_eigenvalues(F))),
                 f"max abs diff {diff:.2e}")
    seed = np.random.SeedSequence(3)
    X0 = np.random.default_rng(0).standard_normal((n // 2, n)) / np.sqrt(n // 2)
    layers = list(forward(cp_be.asarray(X0), (n,), "tanh", seed, cp_be))
    W = cp_be.to_host(layer_weights(seed, 1, n, n // 2, cp_be))
    expected = get_activation("tanh")(W @ X0) / np.sqrt(n)
    err = float(np.max(np.abs(cp_be.to_host(layers[1]) - expected)))
    report.check("forward recursion", err < 1e-10, f"max abs diff {err:.2e}")


def tanh_example(be: Any, n: int, reps: int) -> tuple[np.ndarray, np.ndarray]:
    from kernels.data import draw_input_noise, make_input
    from kernels.network import forward, layer_widths
    from kernels.observables import measure_layer

    spikes, aligns = np.zeros(3), np.zeros(3)
    for rep in range(reps):
        noise = draw_input_noise(n, 2 * n, 1, np.random.SeedSequence([11, rep]), be)
        sample = make_input(noise, [2.0], be)
        layers = forward(sample.X, layer_widths(n, [2.0, 2.0]), "tanh",
                         np.random.SeedSequence([12, rep]), be)
        for ell, F in enumerate(layers):
            m = measure_layer(F, sample.signals, 6, backend=be)
            spikes[ell] += m.spike_emp[0] / reps
            aligns[ell] += m.align[0] / reps
    return spikes, aligns


def statistics(cp_be: Any, np_be: Any, n: int, report: _Report) -> None:
    print(f"\nTHEORY.md section 7 tanh example, n = {n}, 3 draws per backend")
    for be in (np_be, cp_be):
        t0 = time.perf_counter()
        spikes, aligns = tanh_example(be, n, 3)
        rel = np.abs(spikes / np.array(THEORY_SPIKES) - 1)
        err = np.abs(aligns - np.array(THEORY_ALIGNS))
        report.check(f"{be.name} spikes/alignments vs theory",
                     bool(np.all(rel < 0.03) and np.all(err < 0.03)),
                     f"spikes {np.round(spikes, 3).tolist()} align {np.round(aligns, 3).tolist()} "
                     f"({time.perf_counter() - t0:.1f} s)")


def _timed(be: Any, fn: Callable[[], Any]) -> tuple[float, Any]:
    be.synchronize()
    t0 = time.perf_counter()
    out = fn()
    be.synchronize()
    return time.perf_counter() - t0, out


def timings(sizes: list[int]) -> None:
    from kernels.backend import get_backend
    from kernels.eigen import top_eigenpairs
    from kernels.network import forward

    print("\nseconds per layer on the device (width ratio 1, tanh, top k = 16)")
    for dtype in ("float64", "float32"):
        be = get_backend("cupy", dtype)
        for n in sizes:
            X0 = be.asarray(np.random.default_rng(0).standard_normal((n, n)) / np.sqrt(n))
            gen = forward(X0, (n,), "tanh", np.random.SeedSequence(0), be)
            next(gen)
            t_fwd, F = _timed(be, lambda gen=gen: next(gen))
            t_top, _ = _timed(be, lambda F=F: top_eigenpairs(F, 16))
            t_top2, _ = _timed(be, lambda F=F: top_eigenpairs(F, 16))  # after warm-up
            G = (F.T @ F).astype(be.xp.float64)
            t_dense, _ = _timed(be, lambda G=G, xp=be.xp: xp.linalg.eigh(G))
            print(f"  {dtype}  n = {n:5d}  forward {t_fwd:7.3f}  top-k {t_top2:7.3f} "
                  f"(first call {t_top:6.3f})  dense eigh {t_dense:7.3f}")
            del G, F, gen, X0
            be.xp.get_default_memory_pool().free_all_blocks()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args(argv)
    from kernels.backend import BackendUnavailableError, get_backend

    try:
        cp_be = get_backend("cupy")
    except BackendUnavailableError as exc:
        print(f"gpu_check: skipped, no usable cupy backend here ({exc})")
        return 0
    np_be = get_backend("numpy")
    print("device:", cp_be.describe())
    report = _Report()
    compare(cp_be, np_be, 1000 if args.quick else 2000, report)
    statistics(cp_be, np_be, 1000 if args.quick else 2000, report)
    timings([1000, 2000] if args.quick else [2000, 4000, 8000])
    if report.failures:
        print(f"\n{len(report.failures)} comparison(s) failed: {report.failures}")
        return 1
    print("\nall comparisons passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
