"""Critical spike strengths θ*(ℓ) for an input spike to survive to layer ℓ (THEORY.md §4).

Survival to layer ℓ means α_k = b² λ_{k−1} + 1 − b² > α_c(k) at every k ≤ ℓ. The last condition is
the binding one (at θ*(ℓ−1) the spike sits at the edge of μ_{ℓ−1}, so α_ℓ = T_ℓ < α_c(ℓ)), and
survival is monotone in θ because every map on the way increases. Two routes:

- :func:`critical_locations` (exact, used by the API): start from the critical λ_{ℓ−1} =
  (α_c(ℓ) − 1 + b²)/b² and map it back through the layers with the tabulated inverse
  α = ψ_k⁻¹(λ_k), λ_{k−1} = (α − 1 + b²)/b²; then invert the input model to get θ*;
- :func:`critical_spikes_bisect`: monotone bisection on the forward survival flag (a
  cross-check; ~50 forward passes per layer).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kernels.theory.inputs import input_spikes, input_threshold, spike_strength_at
from kernels.theory.levels import DeformedLevel, Level
from kernels.theory.spikes import propagate_spikes

__all__ = ["critical_locations", "critical_spikes_bisect", "critical_spikes_for_chain"]


def critical_locations(chain: Sequence[Level]) -> np.ndarray:
    """Critical K0 spike location λ0*(ℓ), ℓ = 0..L: a spike survives to ℓ iff λ0 > λ0*(ℓ).

    λ0*(0) is the input edge; ∞ where b = 0 (no linear part carries the spike).
    """
    out = np.empty(len(chain))
    out[0] = chain[0].edge
    for layer in range(1, len(chain)):
        level = chain[layer]
        assert isinstance(level, DeformedLevel)
        if level.b2 == 0.0:
            out[layer:] = np.inf
            break
        x = (level.alpha_c - 1.0 + level.b2) / level.b2
        for k in range(layer - 1, 0, -1):
            below = chain[k]
            assert isinstance(below, DeformedLevel)
            x = (float(below.inverse(x)) - 1.0 + below.b2) / below.b2
        out[layer] = x
    return out


def critical_spikes_for_chain(chain: Sequence[Level], model: str, gamma0: float) -> np.ndarray:
    """θ*(ℓ), ℓ = 0..L, for the input model on a Gaussian-noise chain (μ_0 = MP(γ0))."""
    theta = spike_strength_at(model, critical_locations(chain), gamma0)
    theta[0] = input_threshold(model, gamma0)  # exact; the inverse at the edge loses digits
    return theta


def critical_spikes_bisect(
    chain: Sequence[Level], model: str, gamma0: float, *, rtol: float = 1e-13
) -> np.ndarray:
    """θ*(ℓ) by bisection on the forward survival flag (monotone in θ), layer by layer."""
    out = np.empty(len(chain))
    out[0] = input_threshold(model, gamma0)

    def survives(theta: float, layer: int) -> bool:
        lam, c0, _ = input_spikes(model, theta, gamma0)
        return bool(propagate_spikes(chain[: layer + 1], lam, c0).survives[0, layer])

    for layer in range(1, len(chain)):
        lo = out[layer - 1]
        hi = 2.0 * lo
        while not survives(hi, layer):
            if hi > 1e8:
                out[layer:] = np.inf
                return out
            lo, hi = hi, 2.0 * hi
        while hi - lo > rtol * hi:
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if survives(mid, layer) else (mid, hi)
        out[layer] = hi
    return out
