"""Bulk densities of deformed Marchenko–Pastur laws, for histogram overlays (THEORY.md §3).

The population law ν is represented by weighted atoms t_k (quantile atoms of the level below,
mapped by t = b² x + 1 − b²). The companion transform m̃(z) of the deformed MP law with ratio γ
solves the Silverstein equation (Silverstein & Bai 1995; Fan & Wang 2020, eq. (2.3))

    z = −1/m̃ + γ Σ_k w_k t_k / (1 + t_k m̃),        Im m̃ > 0 for Im z > 0,

and m(z) = (m̃ + (1 − γ)/z)/γ, density = Im m(x + iε)/π. It is solved at z = x + iε by a damped
fixed-point iteration m̃ ← −1/(z − γ Σ w t/(1 + t m̃)) at a large ε (where it contracts), then
Newton steps while ε is shrunk to its final value (continuation keeps Newton on the right root).
Edges and spikes never come from here: they use the exact real-axis route in :mod:`levels`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cdf_quantile_atoms", "deformed_mp_density", "solve_companion"]


def _residual(
    mt: np.ndarray, z: np.ndarray, t: np.ndarray, w: np.ndarray, gamma: float
) -> tuple[np.ndarray, np.ndarray]:
    """F(m̃) = −1/m̃ + γ Σ w t/(1 + t m̃) − z and F'(m̃) = 1/m̃² − γ Σ w t²/(1 + t m̃)²."""
    r = t[None, :] / (1.0 + t[None, :] * mt[:, None])
    f = -1.0 / mt + gamma * (r @ w) - z
    df = 1.0 / mt**2 - gamma * ((r * r) @ w)
    return f, df


def solve_companion(
    z: np.ndarray,
    t: np.ndarray,
    w: np.ndarray,
    gamma: float,
    *,
    fixed_point_iters: int = 40,
    newton_iters: int = 12,
    tol: float = 1e-12,
) -> np.ndarray:
    """Companion transform m̃(z) (Im z > 0) of the deformed MP law MP(γ, ν), ν = Σ w_k δ_{t_k}.

    ε = Im z is lowered from a large start value to its target in factors of 10; the damped
    fixed point converges at the start (the map is a contraction for large Im z), and Newton
    tracks the solution down. Newton steps that would leave the upper half plane are halved.
    """
    z = np.asarray(z, dtype=complex)
    t = np.asarray(t, dtype=float)
    w = np.asarray(w, dtype=float)
    eps_target = z.imag.copy()
    scale = max(float(np.max(np.abs(z.real))), float(np.max(t)), 1.0)
    eps = np.maximum(eps_target, 0.5 * scale)
    zz = z.real + 1j * eps
    mt = -1.0 / zz
    for _ in range(fixed_point_iters):
        new = -1.0 / (zz - gamma * ((t[None, :] / (1.0 + t[None, :] * mt[:, None])) @ w))
        mt = 0.5 * mt + 0.5 * new
    while True:
        eps = np.maximum(eps / 10.0, eps_target)
        zz = z.real + 1j * eps
        active = np.ones(z.shape, dtype=bool)
        for _ in range(newton_iters):
            idx = np.flatnonzero(active)
            if idx.size == 0:
                break
            f, df = _residual(mt[idx], zz[idx], t, w, gamma)
            step = f / df
            new = mt[idx] - step
            bad = new.imag <= 0
            while np.any(bad):  # keep Im m̃ > 0: halve offending steps
                step[bad] *= 0.5
                new[bad] = mt[idx][bad] - step[bad]
                bad = new.imag <= 0
            mt[idx] = new
            active[idx] = np.abs(step) > tol * np.abs(new)
        if np.all(eps == eps_target):
            return mt


def deformed_mp_density(
    x: np.ndarray,
    t: np.ndarray,
    w: np.ndarray,
    gamma: float,
    atom_zero: float,
    eps: float,
) -> np.ndarray:
    """Density (continuous part) of MP(γ, ν) at real x, ν = Σ w_k δ_{t_k}, via Im m(x + iε)/π.

    The atom at 0 (mass ``atom_zero``, e.g. 1 − 1/γ when γ > 1) is removed from m before taking
    the imaginary part, so the result integrates to 1 − atom_zero.
    """
    x = np.asarray(x, dtype=float)
    z = x.ravel() + 1j * eps
    mt = solve_companion(z, t, w, gamma)
    m = (mt + (1.0 - gamma) / z) / gamma + atom_zero / z
    return np.maximum(m.imag / np.pi, 0.0).reshape(x.shape)


def cdf_quantile_atoms(
    density: np.ndarray, u: np.ndarray, x: np.ndarray, dxdu: np.ndarray, k: int
) -> np.ndarray:
    """k equal-mass atoms of a density sampled at x(u): the means of its k quantile bins.

    Bin j is [F⁻¹((j−1)/k), F⁻¹(j/k)]; its atom is the bin's conditional mean, which keeps the
    first moment exactly and integrates smooth functions to second order even in the bins at a
    square-root edge (a mid-quantile point is first-order wrong there). CDF F and first moment
    are integrated in the grid variable u (trapezoid on ρ(x(u)) x'(u), smooth at square-root
    edges when x(u) clusters there) and normalised to total mass 1.
    """
    g = density * dxdu
    du = np.diff(u)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (g[1:] + g[:-1]) * du)])
    gx = g * x
    first = np.concatenate([[0.0], np.cumsum(0.5 * (gx[1:] + gx[:-1]) * du)])
    if cdf[-1] <= 0:
        raise ValueError("density: no mass on the grid to take quantiles from")
    first /= cdf[-1]
    cdf /= cdf[-1]
    # cdf is non-decreasing; np.interp needs strictly increasing abscissae, so drop flat runs
    keep = np.concatenate([[True], np.diff(cdf) > 0])
    p = np.linspace(0.0, 1.0, k + 1)
    moment_at = np.interp(p, cdf[keep], first[keep])
    return np.diff(moment_at) * k
