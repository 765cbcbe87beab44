"""Input spikes of the input Gram K0 = XᵀX and their thresholds (THEORY.md §1; γ0 = n/d0).

- ``"gmm"`` — signal-plus-noise / Gaussian mixture X = θ a bᵀ + Z (the paper's Corollary 5;
  Benaych-Georges & Nadakuditi 2012): a spike iff θ⁴ > γ0, at λ0 = (1+θ²)(γ0+θ²)/θ², with
  squared alignment c0 = 1 − γ0(1+θ²)/(θ²(θ²+γ0)) with b.
- ``"spiked_cov"`` — columns N(0, (I + θ v vᵀ)/d0) (Baik–Ben Arous–Péché; Bai–Yao 2012 through the
  dual Gram): a spike iff θ > γ0^{-1/2}, at λ0 = (1+θ)(γ0 + 1/θ), with squared alignment
  1 − 1/(γ0 θ²) with the realised latent f = Xᵀv/‖Xᵀv‖.

Both locations meet the MP(γ0) edge (1+√γ0)² at the threshold and increase beyond it, so each has
an inverse on the spike branch (:func:`spike_strength_at`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["INPUT_MODELS", "input_spikes", "input_threshold", "spike_strength_at"]

INPUT_MODELS = ("gmm", "spiked_cov")


def _check_model(model: str) -> None:
    if model not in INPUT_MODELS:
        raise ValueError(f"input_model: {model!r} is not one of {list(INPUT_MODELS)}")


def input_threshold(model: str, gamma0: float) -> float:
    """Smallest spike strength θ that separates from the MP(γ0) bulk: γ0^{1/4} or γ0^{-1/2}."""
    _check_model(model)
    return float(gamma0**0.25) if model == "gmm" else float(gamma0**-0.5)


def input_spikes(
    model: str, theta: np.ndarray | float, gamma0: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(λ0, c0, separated) for spike strengths θ ≥ 0: NaN location and 0 alignment below threshold.

    θ = 0 means no signal. Strengths are non-negative (the sign of θ a bᵀ is immaterial and a
    negative covariance spike is a different, lower-edge problem).
    """
    _check_model(model)
    theta = np.asarray(theta, dtype=float)
    if np.any(~np.isfinite(theta)) or np.any(theta < 0):
        raise ValueError("spikes: spike strengths must be finite and >= 0")
    sep = theta > input_threshold(model, gamma0)
    th = np.where(sep, theta, np.nan)
    if model == "gmm":
        t2 = th * th
        lam = (1.0 + t2) * (gamma0 + t2) / t2
        c0 = 1.0 - gamma0 * (1.0 + t2) / (t2 * (t2 + gamma0))
    else:
        lam = (1.0 + th) * (gamma0 + 1.0 / th)
        c0 = 1.0 - 1.0 / (gamma0 * th * th)
    return lam, np.where(sep, c0, 0.0), sep


def spike_strength_at(model: str, location: np.ndarray | float, gamma0: float) -> np.ndarray:
    """θ on the spike branch whose K0 spike sits at λ0 (inverse of :func:`input_spikes`).

    With D = (λ0 − 1 − γ0)² − 4γ0 (zero at the edge): θ² = (λ0 − 1 − γ0 + √D)/2 for ``"gmm"``,
    θ = (λ0 − 1 − γ0 + √D)/(2γ0) for ``"spiked_cov"``. λ0 = ∞ maps to θ = ∞.
    """
    _check_model(model)
    lam = np.asarray(location, dtype=float)
    with np.errstate(invalid="ignore", over="ignore"):
        a = lam - 1.0 - gamma0
        root = a + np.sqrt(np.maximum(a * a - 4.0 * gamma0, 0.0))
        theta = np.sqrt(root / 2.0) if model == "gmm" else root / (2.0 * gamma0)
    return np.where(lam == np.inf, np.inf, theta)
