"""Input models with r spikes and their ground truth (THEORY.md section 1; columns are samples).

Randomness is split from the spike strengths so that grid points differing only in θ share
their noise (common random numbers): :func:`draw_input_noise` draws everything random once,
:func:`make_input` builds X for given strengths from it, deterministically.

- ``"gmm"`` (signal-plus-noise / Gaussian mixture, the paper's Corollary 5):
  X = Σ_i θ_i a_i b_iᵀ + Z with Z entries N(0, 1/d0), a_i orthonormal in R^{d0}, b_i orthonormal,
  balanced (b_i ⟂ 1) and delocalised (entries ±1/√n: class contrasts) in R^n.
  K0 = XᵀX has bulk MP(γ0), γ0 = n/d0, and a spike iff θ_i⁴ > γ0.
- ``"spiked_cov"`` (spiked covariance): columns N(0, (I + Σ_i θ_i v_i v_iᵀ)/d0), built from the
  same Z as X = (I + Σ_i c_i v_i v_iᵀ) Z with (1 + c_i)² = 1 + θ_i (v_i = a_i orthonormal).
  The ground truth in sample space is the realised latent f_i = Xᵀv_i/‖Xᵀv_i‖ = Zᵀv_i/‖Zᵀv_i‖,
  which does not depend on θ_i (so it is computed once, with the noise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernels.backend import Backend
from kernels.seeding import SeedLike, derive, host_rng

__all__ = ["INPUT_MODELS", "InputNoise", "InputSample", "draw_input_noise", "make_input"]

INPUT_MODELS = ("gmm", "spiked_cov")


@dataclass(frozen=True)
class InputNoise:
    """Everything random about an input, independent of the spike strengths.

    Attributes:
        Z: (d0, n) backend array, entries N(0, 1/d0).
        directions: (r, d0) host array, orthonormal rows a_i (the spike directions in R^{d0}).
        signals: (r, n) host array, unit rows: the ground-truth vectors in sample space used for
            alignments. gmm: b_i (orthonormal, balanced, entries ±1/√n when 2^r divides n);
            spiked_cov: f_i = Zᵀa_i/‖Zᵀa_i‖.
        model: one of :data:`INPUT_MODELS`.
    """

    Z: Any
    directions: np.ndarray
    signals: np.ndarray
    model: str

    @property
    def shape(self) -> tuple[int, int]:
        """(d0, n)."""
        return tuple(self.Z.shape)  # type: ignore[return-value]

    @property
    def rank(self) -> int:
        """Number of spikes r."""
        return int(self.directions.shape[0])


@dataclass(frozen=True)
class InputSample:
    """One input matrix X (d0 × n, columns are samples) with its ground truth.

    Attributes:
        X: (d0, n) backend array.
        signals: (r, n) host array of unit vectors in sample space for the alignments.
        strengths: the spike strengths θ_i used.
        model: one of :data:`INPUT_MODELS`.
    """

    X: Any
    signals: np.ndarray
    strengths: tuple[float, ...]
    model: str


def _orthonormal_directions(rng: np.random.Generator, d0: int, r: int) -> np.ndarray:
    """Draw r Haar-random orthonormal vectors in R^{d0} as rows (QR of a Gaussian, signs fixed)."""
    if r == 0:
        return np.zeros((0, d0))
    q, rr = np.linalg.qr(rng.standard_normal((d0, r)))
    return (q * np.sign(np.diag(rr))).T.copy()


def _class_contrasts(rng: np.random.Generator, n: int, r: int) -> np.ndarray:
    """Draw r orthonormal, balanced, delocalised vectors in R^n as rows.

    Each sample gets an r-bit class code; codes are spread evenly over the 2^r patterns and
    randomly permuted, and b_i(j) = ±1/√n is bit i of sample j's code. When 2^r divides n these
    are exactly orthonormal and orthogonal to the all-ones vector; otherwise a QR against
    [1, s_1, ..., s_r] makes them so at O(2^r/n) cost in the ±1/√n structure.
    """
    if r == 0:
        return np.zeros((0, n))
    codes = rng.permutation(np.arange(n) % (2**r))
    bits = (codes[:, None] >> np.arange(r)[None, :]) & 1
    contrasts = (2.0 * bits - 1.0) / np.sqrt(n)
    basis = np.column_stack([np.full(n, 1.0 / np.sqrt(n)), contrasts])
    q, rr = np.linalg.qr(basis)
    diag = np.abs(np.diag(rr))
    if np.any(diag < 1e-8):
        raise ValueError(f"r: {r} class contrasts are degenerate for n = {n}; need n >= 2^r")
    return (q[:, 1:] * np.sign(np.diag(rr)[1:])).T.copy()


def draw_input_noise(
    n: int,
    d0: int,
    r: int,
    seed: SeedLike,
    backend: Backend,
    model: str = "gmm",
) -> InputNoise:
    """Draw the noise Z (N(0, 1/d0) entries), spike directions and sample-space signals.

    Children of ``seed``: "input-Z" (backend generator), "input-directions" and
    "input-signals" (host PCG64), so each part is reproducible on its own.

    Raises:
        ValueError: non-positive sizes, r > d0 or r + 1 > n, or an unknown model.
    """
    if model not in INPUT_MODELS:
        raise ValueError(f"model: {model!r} is not an input model; choose one of {INPUT_MODELS}")
    for name, val in (("n", n), ("d0", d0)):
        if not isinstance(val, (int, np.integer)) or val < 1:
            raise ValueError(f"{name}: must be a positive int, got {val!r}")
    if not isinstance(r, (int, np.integer)) or r < 0:
        raise ValueError(f"r: must be a non-negative int, got {r!r}")
    if r > d0 or r + 1 > n:
        raise ValueError(f"r: {r} spikes need d0 >= r and n >= r + 1 (d0 = {d0}, n = {n})")
    Z = backend.standard_normal(backend.rng(derive(seed, "input-Z")), (d0, n))
    Z *= 1.0 / np.sqrt(d0)
    directions = _orthonormal_directions(host_rng(seed, "input-directions"), d0, r)
    if model == "gmm":
        signals = _class_contrasts(host_rng(seed, "input-signals"), n, r)
    else:
        latent = np.asarray(backend.to_host(backend.asarray(directions) @ Z), dtype=np.float64)
        signals = latent / np.linalg.norm(latent, axis=1, keepdims=True)
    return InputNoise(Z=Z, directions=directions, signals=signals, model=model)


def make_input(
    noise: InputNoise, spikes: Sequence[float], backend: Backend, noise_scale: float = 1.0
) -> InputSample:
    """Build X from ``noise`` and the spike strengths θ (one per direction; see module doc).

    gmm: X = sZ + Σ_i θ_i a_i b_iᵀ. spiked_cov: X = sZ + Σ_i c_i v_i (v_iᵀ sZ), c_i = √(1+θ_i) − 1.
    s = ``noise_scale`` (default 1: columns of unit norm, the theory's setting); s ≠ 1 gives
    columns of norm ≈ s, which an activation normalised for N(0, 1) pre-activations does not
    expect (for non-odd σ, E σ(sξ) ≠ 0: an uninformative outlier along the all-ones vector).
    ``noise.Z`` is never modified.

    Raises:
        ValueError: wrong number of strengths, non-finite values, θ <= −1 for spiked_cov, or a
            noise scale that is not finite and > 0.
    """
    theta = np.asarray(list(spikes), dtype=np.float64)
    if theta.ndim != 1 or theta.shape[0] != noise.rank:
        raise ValueError(
            f"spikes: expected {noise.rank} strengths (one per direction), got {list(spikes)!r}"
        )
    if not np.all(np.isfinite(theta)):
        raise ValueError(f"spikes: strengths must be finite, got {theta.tolist()}")
    if not (np.isfinite(noise_scale) and noise_scale > 0):
        raise ValueError(f"noise_scale: must be finite and > 0, got {noise_scale!r}")
    Z = noise.Z
    X = Z.copy()
    if noise_scale != 1.0:
        X *= noise_scale
        Z = X  # spiked_cov reads sZ; each += evaluates its right side before writing X
    if noise.rank:
        A = backend.asarray(noise.directions)
        if noise.model == "gmm":
            X += (A.T * backend.asarray(theta)) @ backend.asarray(noise.signals)
        else:
            if np.any(theta <= -1.0):
                raise ValueError(
                    f"spikes: spiked_cov needs θ > -1 (covariance I + θvvᵀ), got {theta.tolist()}"
                )
            c = np.sqrt(1.0 + theta) - 1.0
            X += (A.T * backend.asarray(c)) @ (A @ Z)
    return InputSample(
        X=X, signals=noise.signals, strengths=tuple(float(t) for t in theta), model=noise.model
    )
