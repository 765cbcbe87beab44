"""The finite-n smearing window of the BBP-type transition, in spike-strength units (THEORY.md §6).

At finite n the top bulk eigenvalue fluctuates on the Tracy–Widom scale of the right edge: if the
limit density is ρ(x) ≈ C √(E − x) near E, about (2/3)·n·C·t^{3/2} eigenvalues lie within t of E,
so the scale is of order (nC)^{-2/3}; matching n·ρ to the Airy edge density √(−u)/π fixes the
constant, s_n = (π C n)^{-2/3} (for MP exactly Johnstone's 2001 σ_np; for the GOE semicircle
n^{-2/3}). Near the threshold θ* the predicted outlier leaves the edge quadratically,
λ(θ) − E ∝ (θ − θ*)², so it clears the edge by one fluctuation scale only at

    θ⁺(n):  λ_ℓ(θ⁺) = E_ℓ + s_n(ℓ),      window w_n(ℓ) = θ⁺ − θ*  ∝  n^{-1/3}.

Inside [θ*, θ* + w_n] a separated outlier and the top of the bulk cannot be told apart at this n
(Baik, Ben Arous & Péché 2005 call this the critical window). The maps report an empirical
threshold's lag (θ_emp − θ*)/w_n. A detector held to a small false-positive rate lags by a
roughly fixed number of windows (about 2.5 for :mod:`kernels.observables`), so a constant lag
across n and layers is the signature of convergence at the predicted rate. w_n depends on the
layer because deeper bulks have larger edge scales and the spike map flattens, which is why a
bare n^{-1/3} is no yardstick across layers.

Near-edge coefficient of a :class:`DeformedLevel`: x = ψ(α) has ψ'(α_c) = 0 at the edge, so for
x < E the root is complex, α − α_c ≈ i √(2(E − x)/ψ''(α_c)), and with the companion transform
m̃ = −1/α and m = (m̃ + (1 − γ)/x)/γ, ρ = Im m/π gives C = √(2/ψ''(α_c)) / (π γ α_c²).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kernels.theory.inputs import spike_strength_at
from kernels.theory.levels import DeformedLevel, Level, MarchenkoPasturLevel
from kernels.theory.thresholds import critical_spikes_for_chain

__all__ = ["critical_window_for_chain", "edge_density_coefficient", "edge_fluctuation_scale"]

_CURVATURE_STEP = 1e-4  # relative step for the central difference of ψ' at α_c


def edge_density_coefficient(level: Level) -> float:
    """C in ρ(x) ≈ C √(E − x) at the right edge E of ``level`` (module docstring)."""
    if isinstance(level, MarchenkoPasturLevel):
        # ρ = √((E − x)(x − E₋))/(2πγx) → √(E − E₋)/(2πγE) · √(E − x)
        return float(np.sqrt(level.edge - level.left_edge) / (2 * np.pi * level.gamma * level.edge))
    if not isinstance(level, DeformedLevel):
        raise TypeError(f"level: need a MarchenkoPasturLevel or DeformedLevel, got {type(level).__name__}")
    a = level.alpha_c
    h = _CURVATURE_STEP * a
    # α_c − h must stay right of the population support T for ψ' to exist there
    h = min(h, 0.5 * (a - level.support_right)) if a > level.support_right else h
    d2 = float((level.psi(a + h)[1] - level.psi(a - h)[1]) / (2 * h))
    if not np.isfinite(d2) or d2 <= 0:
        raise ValueError(f"{level!r}: no square-root edge (ψ''(α_c) = {d2})")
    return float(np.sqrt(2.0 / d2) / (np.pi * level.gamma * a * a))


def edge_fluctuation_scale(level: Level, n: int) -> float:
    """Tracy–Widom scale s_n = (π C n)^{-2/3} of the top bulk eigenvalue of an n × n kernel."""
    if n < 1:
        raise ValueError(f"n: must be a positive sample size, got {n!r}")
    return float((np.pi * edge_density_coefficient(level) * n) ** (-2.0 / 3.0))


def _input_location(chain: Sequence[Level], layer: int, location: float) -> float:
    """K0 spike location λ0 whose path reaches ``location`` at ``layer`` (inverse spike maps)."""
    x = location
    for k in range(layer, 0, -1):
        level = chain[k]
        assert isinstance(level, DeformedLevel)
        if level.b2 == 0.0:
            return float("inf")
        x = (float(level.inverse(x)) - 1.0 + level.b2) / level.b2
    return x


def critical_window_for_chain(
    chain: Sequence[Level], model: str, gamma0: float, n: int
) -> np.ndarray:
    """w_n(ℓ) = θ⁺(ℓ) − θ*(ℓ), ℓ = 0..L: the spike strengths over which the transition is smeared.

    θ⁺(ℓ) is the input strength whose predicted layer-ℓ outlier sits one edge fluctuation scale
    above the edge E_ℓ (module docstring); ∞ where no linear part carries the spike (b = 0).
    """
    theta_c = critical_spikes_for_chain(chain, model, gamma0)
    out = np.empty(len(chain))
    for layer, level in enumerate(chain):
        lam0 = _input_location(chain, layer, level.edge + edge_fluctuation_scale(level, n))
        out[layer] = float(spike_strength_at(model, lam0, gamma0)) - theta_c[layer] if np.isfinite(
            lam0) else np.inf
    return out
