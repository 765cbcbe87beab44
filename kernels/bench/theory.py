"""Benchmark of kernels.theory: ``python -m kernels.bench.theory``.

Prints the issue's target line (a cold depth-8 prediction for 50 spike strengths, < 5 s), the
warm (cached-levels) time, and the cost of the other entry points the sweep calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from kernels.theory import (
    DeepCKPrediction,
    bulk_density,
    cache_clear,
    critical_learning_rate,
    critical_spikes,
    deep_ck_prediction,
    one_step_prediction,
)

T = TypeVar("T")


def _timed(fn: Callable[[], T], repeat: int = 1) -> tuple[float, T]:
    """Best wall time of ``repeat`` calls, and the last result."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    spikes = np.linspace(0.5, 5.0, 50)
    widths = [1.0] * 8

    def deep() -> DeepCKPrediction:
        return deep_ck_prediction("tanh", 2.0, widths, spikes)

    cache_clear()
    cold, pred = _timed(deep)
    warm, _ = _timed(deep, repeat=5)
    print(
        f"depth-8, 50-spike prediction (tanh, all ratios 1): cold {cold:.3f} s, "
        f"warm {warm * 1e3:.1f} ms  [target < 5 s]"
    )
    print(f"  thresholds theta*(l): {np.array2string(pred.threshold, precision=4)}")

    for act in ("sin", "erf"):
        cache_clear()
        t, _ = _timed(
            lambda a=act: deep_ck_prediction(a, 0.5, [4.0, 0.25] * 4, spikes, "spiked_cov")
        )
        print(f"depth-8, 50 spikes, {act}, spiked_cov, mixed ratios: cold {t:.3f} s")

    t, _ = _timed(lambda: critical_spikes("tanh", 2.0, widths), repeat=5)
    print(f"critical_spikes depth 8 (cached levels): {t * 1e3:.1f} ms")

    cache_clear()
    t, p1 = _timed(lambda: one_step_prediction("erf", "erf", 2000, 1600, 2400, 2.0))
    print(
        f"one_step_prediction (cold): {t * 1e3:.1f} ms -> spike {p1.spike:.6f}, "
        f"edge {p1.edge:.6f}, alignment {p1.alignment:.6f}"
    )
    t, lr = _timed(lambda: critical_learning_rate("erf", "erf", 2000, 1600, 2400), repeat=5)
    print(f"critical_learning_rate (cached): {t * 1e3:.1f} ms -> {lr:.6f}")

    x = np.linspace(0.0, 12.0, 400)
    for layer in (1, 3, 8):
        cache_clear()
        t, _ = _timed(lambda la=layer: bulk_density("tanh", 2.0, widths, la, x))
        print(f"bulk_density layer {layer}, 400 points (cold): {t:.2f} s")


if __name__ == "__main__":
    main()
