"""Spike propagation through depth: the paper's Theorem 4 in ψ form (THEORY.md §4).

For an input spike (λ0, c0) and layer ℓ = 1, 2, … with level μ_ℓ = :class:`DeformedLevel`:

1. population spike α = b² λ_{ℓ−1} + 1 − b²;
2. it survives iff ψ_ℓ'(α) > 0, i.e. α > α_c (BBP-type threshold); once absorbed it stays absorbed;
3. location λ_ℓ = ψ_ℓ(α);
4. factor φ_ℓ = α ψ_ℓ'(α)/ψ_ℓ(α) ∈ (0, 1);
5. squared alignment with the input signal c_ℓ = c0 Π_{k≤ℓ} φ_k.

ψ_ℓ at α reads the level below at w = (α − 1 + b²)/b² = λ_{ℓ−1}: one evaluation per layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kernels.theory.levels import DeformedLevel, Level

__all__ = ["SpikePaths", "propagate_spikes"]


@dataclass(frozen=True, eq=False)
class SpikePaths:
    """Per-spike, per-layer results, shape (r, L+1).

    Attributes:
        location: λ_ℓ, NaN where absorbed.
        survives: whether a separated outlier exists at layer ℓ.
        phi: φ_ℓ (NaN at layer 0 and where absorbed).
        alignment: c0 Π φ_k, 0.0 where absorbed.
    """

    location: np.ndarray
    survives: np.ndarray
    phi: np.ndarray
    alignment: np.ndarray


def propagate_spikes(
    chain: Sequence[Level], location0: np.ndarray, alignment0: np.ndarray
) -> SpikePaths:
    """Propagate K0 spikes at λ0 (NaN = none) with alignments c0 through ``chain[1:]``.

    ``chain[0]`` is the input level (a λ0 at or below its edge is no spike); each later entry is
    the :class:`DeformedLevel` of that layer (which carries its b and γ).
    """
    lam0 = np.atleast_1d(np.asarray(location0, dtype=float))
    c0 = np.broadcast_to(np.asarray(alignment0, dtype=float), lam0.shape)
    depth = len(chain) - 1
    loc = np.full((lam0.size, depth + 1), np.nan)
    phi = np.full((lam0.size, depth + 1), np.nan)
    align = np.zeros((lam0.size, depth + 1))
    alive = np.isfinite(lam0) & (lam0 > chain[0].edge)
    loc[alive, 0] = lam0[alive]
    align[alive, 0] = c0[alive]
    for layer in range(1, depth + 1):
        level = chain[layer]
        if not isinstance(level, DeformedLevel):
            raise TypeError(f"chain[{layer}]: expected a DeformedLevel, got {type(level).__name__}")
        alpha = level.b2 * loc[:, layer - 1] + 1.0 - level.b2
        alive = alive & (alpha > level.alpha_c)
        idx = np.flatnonzero(alive)
        if idx.size == 0:
            break
        p, dp = level.psi(alpha[idx])
        loc[idx, layer] = p
        phi[idx, layer] = alpha[idx] * dp / p
        align[idx, layer] = align[idx, layer - 1] * phi[idx, layer]
    survives = np.isfinite(loc)
    return SpikePaths(location=loc, survives=survives, phi=phi, alignment=align)
