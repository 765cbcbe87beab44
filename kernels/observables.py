"""Per-layer observables of a CK spectrum that do not use the theory.

Outlier detector and bulk-edge estimate, both from the top eigenvalues alone. Near a square-root
bulk edge E (density ρ(x) ≈ C √(E − x)) the t-th largest bulk eigenvalue sits at
λ_t ≈ E − κ (t − s)^{2/3} with κ = (3π / (2Cn))^{2/3} ≈ 1.31 Tracy–Widom scales (Airy edge
universality), so the bulk's own top values tell where the edge is and how far above it a
pure-noise eigenvalue can stray. Given the top m eigenvalues λ_1 >= ... >= λ_m
(m = k + :data:`EXTRA_EIGENVALUES`, capped by the rank):

1. r_max = min(k, m − :data:`FIT_POINTS`): never more outliers than the k eigenpairs reported
   (the extra eigenvalues only feed the bulk fit). Start with r = r_max.
2. Fit λ_{r+t} = Ê − κ̂ (t − s)^{2/3}, t = 1..min(:data:`EDGE_POINTS`, m − r), s =
   :data:`EDGE_OFFSET` (least squares): the edge Ê and its scale κ̂, from values below the
   candidates.
3. r' = #{i <= r_max : λ_i > Ê + :data:`EDGE_MARGIN` · κ̂}. Repeat 2–3 with r = r' until r is
   unchanged (at most 50 rounds).
4. Outliers: λ_1..λ_r; edge estimate: Ê of the last fit.

The constants are calibrated on pure noise only (no theory values enter the rule): s = 3/4 makes
Ê unbiased on Marchenko–Pastur inputs (bias < 0.01 at n = 500, γ0 = 1/2 and 2; s = 1/2 or 1 is
off by ±0.03–0.07). False-positive rate at spike 0 (tanh, layers 0–2, input ratios d0/n = 2 and
1/2, width ratios 1/2, 1, 2; k = 6 so m = 16; n = 500: 200 seeds per cell, 3600 spectra;
n = 1000: 60 seeds, 1080 spectra):

    margin   n = 500                       n = 1000
    2.0      0.50 % (worst cell 2.0 %)     0.46 % (worst cell 3.3 %)
    2.4      0.22 % (worst cell 1.5 %)     0.09 % (worst cell 1.7 %)
    2.8      0.06 % (worst cell 0.5 %)     0.0 %

2.4 is used. Power in units of the finite-n window w_n (:func:`kernels.theory.critical_window`;
tanh, gmm, γ = 1/2 at every layer, n = 500, 300 draws per row) at θ*(ℓ) + k·w_n(ℓ),
k = 1, 1.5, 2, 2.5, 3, 3.5, 4 (``python -m kernels.bench.layers --window --sizes 500``, 7 min):

    layer 0   3 / 9 / 24 / 48 / 75 / 91 / 98 %
    layer 1   6 / 13 / 28 / 48 / 74 / 89 / 97 %
    layer 2   5 / 12 / 29 / 50 / 72 / 89 / 96 %

so P = 1/2 at about 2.5 w_n at every layer (``studies/bbp_finite_n.toml`` measures 2.2–3.0 w_n at
n = 250 ... 2000). No threshold on λ1 can do much better at this false-positive rate: an oracle
that knows the pure-noise law of λ1 needs 4–6 % false positives for 50 % power at 1 w_n, and
0.3–2 % at 1.5 w_n.

An earlier rule (Onatski 2010's gap test: the last gap λ_i − λ_{i+1} above 2.5 times the local
bulk slope) had the same false-positive rate (0.25 % on the same 3600 spectra) and less power
(P = 1/2 at about 2.7 w_n; 82 / 80 / 79 % at 3.5 w_n): it compares an outlier with its
neighbour, so a second outlier just above a fluctuating bulk top was often missed (the paper's
Fig. 1, layer 1). Both rules need the cap r_max <= k: with m − 5 = 11 candidates and λ_12..λ_16
nearly flat the bulk fit sees no slope and calls the bulk outliers (a regression test keeps the
case, from ``studies/bbp_finite_n.toml``). Reproduce the false-positive rate (statistically)
with ``python -m kernels.bench.layers --detector --sizes 500 1000 --seeds 100 --spikes 0``.

Non-odd activations (E σ'' ≠ 0, e.g. ReLU) give every feature row a common mean
≈ E σ''·(s² − 1)/2 when input columns have norm s ≠ 1: a real, uninformative outlier along the
all-ones vector, which the detector counts (as it should). With the unit-norm columns of the
input models that term is O(d0^{-1/2}) per sample and no extra outlier was seen at n <= 1000.

Alignments are squared overlaps ⟨v_j, s_i⟩² (eigenvector signs are arbitrary).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kernels.backend import Backend
from kernels.eigen import full_eigensystem, top_eigenpairs
from kernels.seeding import SeedLike

__all__ = [
    "EXTRA_EIGENVALUES",
    "FIT_POINTS",
    "EDGE_MARGIN",
    "MATCH_MIN_CHI2",
    "LayerMeasurement",
    "detect_outliers",
    "match_signals",
    "measure_layer",
    "spectrum_histogram",
]

EXTRA_EIGENVALUES = 10  # computed beyond k so the detector always sees some bulk below the outliers
FIT_POINTS = 5  # fewest bulk eigenvalues a fit may use (so r_max <= m − FIT_POINTS)
EDGE_POINTS = 12  # most bulk eigenvalues used to extrapolate the edge
EDGE_OFFSET = 0.75  # s in (t − s)^{2/3}, calibrated for an unbiased edge on pure noise
EDGE_MARGIN = 2.4  # outlier: λ > Ê + EDGE_MARGIN · κ̂; FPR 0.2 % at spike 0 (module docstring)
MATCH_MIN_CHI2 = 20.0  # a matched outlier needs n⟨v, s⟩² above this to count (match_signals)
_MAX_ROUNDS = 50
_UNIT_TOL = 1e-6


@dataclass(frozen=True)
class LayerMeasurement:
    """What one layer's CK spectrum shows, measured without the theory.

    Attributes:
        eigval: (k,) top eigenvalues, descending.
        edge_emp: empirical right bulk edge (NaN when too few eigenvalues to fit).
        n_outliers: number of detected outliers (the top ``n_outliers`` eigenvalues).
        overlap: (k, r) squared overlaps ⟨v_j, s_i⟩² of the top-k eigenvectors with each signal.
        align: (r,) squared overlap of the eigenvector matched to signal i (NaN if none left).
        spike_emp: (r,) eigenvalue of that eigenvector (NaN if none).
        detected: (r,) whether the matched eigenvalue is one of the detected outliers.
        hist: (bins,) spectrum histogram, counts/(n · bin width), when asked; else None.
    """

    eigval: np.ndarray
    edge_emp: float
    n_outliers: int
    overlap: np.ndarray
    align: np.ndarray
    spike_emp: np.ndarray
    detected: np.ndarray
    hist: np.ndarray | None = None


def _slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares (slope, intercept) of y on x."""
    xc = x - x.mean()
    slope = float(np.dot(xc, y - y.mean()) / np.dot(xc, xc))
    return slope, float(y.mean() - slope * x.mean())


def detect_outliers(eigvals: np.ndarray, max_outliers: int | None = None) -> tuple[int, float]:
    """Count outliers and estimate the bulk edge from the top eigenvalues (module doc).

    ``eigvals``: the top m nonzero eigenvalues, descending (m >= FIT_POINTS + 1 for a result;
    fewer gives (0, NaN)). ``max_outliers``: cap on the count (:func:`measure_layer` passes k;
    None: m − FIT_POINTS). Uses no theory: only the bulk's own edge and scale.
    """
    lam = np.asarray(eigvals, dtype=np.float64)
    if lam.ndim != 1:
        raise ValueError(f"eigvals: need a 1-D array, got shape {lam.shape}")
    if not np.all(np.isfinite(lam)):
        raise ValueError("eigvals: must be finite")
    if np.any(np.diff(lam) > 1e-12 * max(1.0, float(np.abs(lam).max(initial=0.0)))):
        raise ValueError("eigvals: must be sorted in descending order")
    m = lam.shape[0]
    if m < FIT_POINTS + 1:
        return 0, float("nan")
    r_max = m - FIT_POINTS if max_outliers is None else max(0, min(int(max_outliers), m - FIT_POINTS))
    r = r_max
    edge, kappa = _edge_fit(lam, r)
    for _ in range(_MAX_ROUNDS):
        r_new = int(np.count_nonzero(lam[:r_max] > edge + EDGE_MARGIN * kappa))
        if r_new == r:
            break
        r = r_new
        edge, kappa = _edge_fit(lam, r)
    return r, edge


def _edge_fit(lam: np.ndarray, r: int) -> tuple[float, float]:
    """(Ê, κ̂) of λ_{r+t} ≈ Ê − κ̂ (t − EDGE_OFFSET)^{2/3}, t = 1..min(EDGE_POINTS, m − r).

    κ̂ is clipped at 0: a rising fit (never seen on real spectra) would otherwise lower the bar.
    """
    n_edge = min(EDGE_POINTS, lam.shape[0] - r)
    t = np.arange(1, n_edge + 1, dtype=np.float64)
    slope, intercept = _slope((t - EDGE_OFFSET) ** (2.0 / 3.0), lam[r : r + n_edge])
    return intercept, max(0.0, -slope)


def match_signals(
    overlap: np.ndarray, eigval: np.ndarray, n_outliers: int, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Match signals to eigenvectors greedily.

    Signal i (in order) takes the unused top-k eigenvector with the largest squared overlap. It
    counts as detected when that eigenvector is an outlier *and* the overlap exceeds
    :data:`MATCH_MIN_CHI2`/n: a direction unrelated to the signal has n⟨v, s⟩² ≈ χ²₁, so without
    the floor a signal below threshold could claim an uninformative outlier (e.g. the all-ones
    one) about once in k; with it, P(χ²₁ > 20) ≈ 8e-6 per candidate. A genuine outlier's
    overlap is O(1) (≥ n^{-1/3} even inside the finite-n window), far above 20/n for n ≥ 100.

    Returns (align (r,), spike_emp (r,), detected (r,)); NaN/False once eigenvectors run out.
    """
    k, r = overlap.shape
    align = np.full(r, np.nan)
    spike = np.full(r, np.nan)
    detected = np.zeros(r, dtype=bool)
    free = np.ones(k, dtype=bool)
    for i in range(r):
        if not free.any():
            break
        j = int(np.argmax(np.where(free, overlap[:, i], -np.inf)))
        free[j] = False
        align[i], spike[i] = overlap[j, i], eigval[j]
        detected[i] = j < n_outliers and overlap[j, i] > MATCH_MIN_CHI2 / n
    return align, spike, detected


def spectrum_histogram(
    spectrum: np.ndarray, bins: int, hist_range: tuple[float, float] | None = None
) -> np.ndarray:
    """Histogram counts / (n · bin width) over ``hist_range`` (default: the spectrum's min to max).

    Normalised by the total number of eigenvalues n, not by those inside the range, so it is
    comparable to a limiting density (including an atom at 0 when d < n) on any window.
    """
    if not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"hist_bins: must be a positive int, got {bins!r}")
    lo, hi = (float(spectrum.min()), float(spectrum.max())) if hist_range is None else hist_range
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"hist_range: need finite lo < hi, got {hist_range!r}")
    counts, edges = np.histogram(spectrum, bins=int(bins), range=(lo, hi))
    return counts / (spectrum.shape[0] * np.diff(edges))


def _check_signals(signals: np.ndarray, n: int) -> np.ndarray:
    s = np.asarray(signals, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != n:
        raise ValueError(f"signals: need shape (r, n) with n = {n}, got {s.shape}")
    norms = np.linalg.norm(s, axis=1)
    if np.any(np.abs(norms - 1.0) > _UNIT_TOL):
        raise ValueError(f"signals: rows must be unit vectors, got norms {norms.tolist()}")
    return s


def measure_layer(
    F: Any,
    signals: np.ndarray,
    k: int,
    *,
    hist_bins: int = 0,
    hist_range: tuple[float, float] | None = None,
    method: str = "lanczos",
    seed: SeedLike | None = None,
    backend: Backend | None = None,
) -> LayerMeasurement:
    """Measure the CK K = FᵀF of one layer from its features F (d × n).

    Computes the top min(k + EXTRA_EIGENVALUES, n) eigenpairs once (Lanczos by default; one dense
    solve when a histogram is asked, which also gives the full spectrum), runs the detector on
    the nonzero ones, and matches signals (unit rows of ``signals``, shape (r, n)) to the top-k
    eigenvectors.
    """
    shape = getattr(F, "shape", None)
    if shape is None or len(shape) != 2:
        raise ValueError(f"F: need a 2-D feature matrix (d x n), got shape {shape}")
    d, n = (int(v) for v in shape)
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= n:
        raise ValueError(f"k: must be an int in [1, n = {n}], got {k!r}")
    s = _check_signals(signals, n)
    m = min(k + EXTRA_EIGENVALUES, n)
    hist = None
    if hist_bins:
        spectrum, vals, vecs = full_eigensystem(F, m, backend=backend)
        hist = spectrum_histogram(spectrum, hist_bins, hist_range)
    else:
        vals, vecs = top_eigenpairs(F, m, method=method, seed=seed, backend=backend)
    n_out, edge = detect_outliers(vals[: min(m, d, n)], max_outliers=k)
    eigval, V = vals[:k], vecs[:, :k]
    overlap = (V.T @ s.T) ** 2
    align, spike, detected = match_signals(overlap, eigval, n_out, n)
    return LayerMeasurement(
        eigval=eigval,
        edge_emp=edge,
        n_outliers=n_out,
        overlap=overlap,
        align=align,
        spike_emp=spike,
        detected=detected,
        hist=hist,
    )
