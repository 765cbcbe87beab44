"""CPU benchmarks of one CK layer: threads pinned vs unpinned, Lanczos vs dense, the detector.

Seconds per layer with BLAS threads pinned vs unpinned and top-k Lanczos vs dense eigh; the
Gram-vs-operator choice of kernels.eigen; the outlier detector's error rates.

    python -m kernels.bench.layers                       # timings, n = 2000 and 4000
    python -m kernels.bench.layers --sizes 1000 2000     # other sizes
    python -m kernels.bench.layers --gram-vs-operator    # eigsh on the Gram vs a LinearOperator
    python -m kernels.bench.layers --detector            # false-positive / detection rates
    python -m kernels.bench.layers --window              # detection inside the finite-n window

Timing scenarios (width ratio 1, tanh, top k = 16 i.e. 6 + the detector's 10 extra):
``1 proc x 1 thread``, ``1 proc x all threads``, and two worker processes running the same layer
at the same time, either unpinned (each BLAS pool starts one thread per core: oversubscribed) or
pinned with :func:`kernels.backend.pin_process_threads` to cores/2 threads each — what the sweep's
workers do. A layer is forward (W X, σ) + Gram + Lanczos; dense eigh is timed separately.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

K_TOTAL = 16
_TWO_PROC_DENSE_MAX_N = 2000  # two concurrent dense eigh at n = 4000 take minutes: skipped


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _layer_times(n: int, dense: bool, seed: int = 0) -> dict[str, float]:
    """Seconds for forward, Gram+Lanczos (top_eigenpairs) and dense eigh of one n x n layer."""
    from kernels.backend import get_backend
    from kernels.eigen import top_eigenpairs
    from kernels.network import forward

    be = get_backend()
    rng = np.random.default_rng(seed)
    X0 = rng.standard_normal((n, n)) / np.sqrt(n)
    gen = forward(X0, (n,), "tanh", np.random.SeedSequence(seed), be)
    next(gen)
    t_fwd, F = _timed(lambda: next(gen))
    t_top, _ = _timed(lambda: top_eigenpairs(F, K_TOTAL, seed=np.random.SeedSequence(1)))
    out = {"forward": t_fwd, "topk": t_top, "layer": t_fwd + t_top}
    if dense:
        out["dense_eigh"], _ = _timed(lambda: np.linalg.eigh(F.T @ F))
    return out


def _worker(n: int, dense: bool, threads: int | None, barrier: Any, queue: Any) -> None:
    if threads is not None:
        from kernels.backend import pin_process_threads

        pin_process_threads(threads)
    from kernels.backend import blas_info

    barrier.wait()
    times = _layer_times(n, dense, seed=os.getpid() % 1000)
    queue.put((times, [lib["num_threads"] for lib in blas_info()]))


def _two_workers(n: int, dense: bool, threads: int | None) -> list[dict[str, float]]:
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(n, dense, threads, barrier, queue))
             for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return [r[0] for r in results]


def _single(n: int, dense: bool, threads: int | None) -> dict[str, float]:
    from kernels.backend import blas_threads

    with blas_threads(threads):
        _layer_times(min(n, 300), False)  # warm-up: imports, thread pools
        return _layer_times(n, dense)


def _fmt(times: dict[str, float]) -> str:
    keys = ("forward", "topk", "layer", "dense_eigh")
    return "  ".join(f"{k} {times[k]:7.2f}" if k in times else f"{k} {'-':>7}" for k in keys)


def run_timings(sizes: list[int]) -> None:
    cores = os.cpu_count() or 1
    half = max(1, cores // 2)
    from kernels.backend import blas_info

    print(f"cores {cores}; BLAS {blas_info()}")
    print(f"seconds per layer (width ratio 1, tanh, top k = {K_TOTAL}); two-process rows: "
          "each worker's own time, both running at once")
    for n in sizes:
        print(f"\nn = {n}")
        print(f"  1 proc x 1 thread        {_fmt(_single(n, True, 1))}")
        print(f"  1 proc x {cores} threads       {_fmt(_single(n, True, None))}")
        both = {}
        for label, threads in ((f"2 procs x {half} (pinned)  ", half),
                               (f"2 procs x {cores} (unpinned)", None)):
            both[threads] = _two_workers(n, n <= _TWO_PROC_DENSE_MAX_N, threads)
            for i, t in enumerate(both[threads]):
                print(f"  {label} w{i} {_fmt(t)}")
        for key in ("layer", "dense_eigh"):
            if key in both[half][0]:
                slow = np.mean([t[key] for t in both[None]])
                ratio = slow / np.mean([t[key] for t in both[half]])
                print(f"  two workers, unpinned / pinned {key}: {ratio:.1f}x")


def run_gram_vs_operator(n: int, k: int) -> None:
    from kernels.backend import blas_threads
    from kernels.eigen import top_eigenpairs

    print(f"top-{k} eigsh: explicit Gram vs LinearOperator v -> F^T(F v), n = {n}, tanh features")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, n)) / np.sqrt(n)
    for threads in (1, None):
        with blas_threads(threads):
            for ratio in (0.5, 1.0, 2.0):
                d = int(ratio * n)
                F = np.tanh(rng.standard_normal((d, n)) @ X) / np.sqrt(d)
                top_eigenpairs(F[:, :300], 8)  # warm-up
                row = []
                for op in ("gram", "linear"):
                    t, _ = _timed(lambda op=op, F=F: top_eigenpairs(F, k, operator=op))
                    row.append(f"{op} {t:6.3f} s")
                print(f"  threads {threads or 'all':>3}  d/n = {ratio:3.1f}  " + "   ".join(row))


def run_detector(sizes: list[int], seeds: int, spikes: list[float]) -> None:
    """False-positive rate at spike 0 (tanh, layers 0-2) and detection rate for a gmm spike."""
    from kernels.backend import blas_threads, get_backend
    from kernels.data import draw_input_noise, make_input
    from kernels.network import forward, layer_widths
    from kernels.observables import measure_layer
    from kernels.seeding import derive

    be = get_backend()
    root = np.random.SeedSequence(20240217)
    with blas_threads(1):
        for n in sizes:
            print(f"\nn = {n}, {seeds} seeds per cell, tanh, depth 2, rows: input ratio d0/n, "
                  "width ratio d/n; cells: layer 0 / 1 / 2")
            for theta in spikes:
                total = np.zeros(3)
                cells = []
                for in_ratio in (2.0, 0.5):
                    for wr in (0.5, 1.0, 2.0):
                        hits = np.zeros(3)
                        for s in range(seeds):
                            seed = derive(root, n, s)
                            noise = draw_input_noise(n, round(in_ratio * n), 1,
                                                     derive(seed, "in"), be)
                            sample = make_input(noise, [theta], be)
                            layers = forward(sample.X, layer_widths(n, [wr, wr]), "tanh",
                                             derive(seed, "w"), be)
                            for ell, F in enumerate(layers):
                                m = measure_layer(F, sample.signals, 6)
                                hits[ell] += m.n_outliers > 0 if theta == 0 else m.detected[0]
                        total += hits
                        cells.append(f"({in_ratio:g},{wr:g}) " + "/".join(
                            f"{h / seeds:.2f}" for h in hits))
                what = "false-positive rate" if theta == 0 else f"detection rate, theta = {theta}"
                rate = total.sum() / (3 * 6 * seeds)
                print(f"  {what}: overall {rate:.4f} ({int(total.sum())} of {3 * 6 * seeds})")
                for i in range(0, len(cells), 3):
                    print("    " + "   ".join(cells[i:i + 3]))


def run_window(n: int, draws: int, multiples: list[float], depth: int = 2) -> None:
    """Detection at θ*(ℓ) + k·w_n(ℓ), layers 0..depth, against the best any λ1 threshold can do.

    tanh, gmm input, γ = 1/2 at every layer (d0 = d_ℓ = 2n). For each layer ℓ and multiple k:
    the median top eigenvalue of K_ℓ with the spike, the false-positive rate of an oracle that
    knows the pure-noise law of λ1(K_ℓ) and calls "outlier" above that median (so it has 50 %
    power at θ*(ℓ) + k·w_n(ℓ)), and this package's detector's power there. ``draws`` spectra
    per row; the same noise and weights at every θ (common random numbers).
    """
    from kernels.backend import blas_threads, get_backend
    from kernels.data import draw_input_noise, make_input
    from kernels.network import forward, layer_widths
    from kernels.observables import EXTRA_EIGENVALUES, detect_outliers
    from kernels.seeding import derive
    from kernels.theory import critical_spikes, critical_window

    be = get_backend()
    root = np.random.SeedSequence(20261203)
    ratios = [2.0] * depth
    theta_c = critical_spikes("tanh", 2.0, ratios)
    w = critical_window("tanh", 2.0, ratios, n)
    m = 6 + EXTRA_EIGENVALUES

    def top(theta: float, layer: int) -> list[np.ndarray]:
        out = []
        for s in range(draws):
            noise = draw_input_noise(n, 2 * n, 1, derive(root, n, s), be)
            layers = forward(make_input(noise, [theta], be).X, layer_widths(n, ratios[:layer]),
                             "tanh", derive(root, "w", n, s), be)
            F = list(layers)[layer]
            out.append(np.linalg.eigvalsh(F.T @ F)[::-1][:m])
        return out

    with blas_threads(1):
        print(f"n = {n}, tanh, gamma = 1/2 at every layer, {draws} draws per row")
        for layer in range(depth + 1):
            top_noise = np.array([lam[0] for lam in top(0.0, layer)])
            print(f"layer {layer}: theta* = {theta_c[layer]:.4f}, w_n = {w[layer]:.4f}")
            print("  k    theta    median lambda1   oracle FP at 50% power   detector power")
            for k in multiples:
                theta = theta_c[layer] + k * w[layer]
                lams = top(theta, layer)
                med = float(np.median([lam[0] for lam in lams]))
                power = np.mean([detect_outliers(lam, max_outliers=6)[0] > 0 for lam in lams])
                print(f"  {k:<4g} {theta:.4f}   {med:.4f}           "
                      f"{np.mean(top_noise > med):.3f}                    {power:.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--gram-vs-operator", action="store_true")
    parser.add_argument("--detector", action="store_true")
    parser.add_argument("--window", action="store_true",
                        help="detection at theta* + k w_n vs an oracle threshold (n = --sizes[0])")
    parser.add_argument("--draws", type=int, default=300, help="window: spectra per row")
    parser.add_argument("--seeds", type=int, default=20, help="detector: seeds per cell")
    parser.add_argument("--spikes", type=float, nargs="+", default=[0.0, 2.0],
                        help="detector: spike strengths (0 = false-positive rate)")
    args = parser.parse_args(argv)
    if args.gram_vs_operator:
        run_gram_vs_operator((args.sizes or [2000])[0], K_TOTAL)
    elif args.window:
        run_window((args.sizes or [500])[0], args.draws, [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0])
    elif args.detector:
        run_detector(args.sizes or [500], args.seeds, args.spikes)
    else:
        run_timings(args.sizes or [2000, 4000])


if __name__ == "__main__":
    main()
