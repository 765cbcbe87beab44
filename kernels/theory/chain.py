"""Chains of levels μ_0, μ_1, …, μ_L for one (b, γ0, γ1, …, γL), built once and cached.

μ_0 is MP(γ0) for Gaussian-noise inputs (or any :class:`Level`, e.g. a plug-in
:class:`EmpiricalLevel`); μ_ℓ = :class:`DeformedLevel`(μ_{ℓ−1}, b, γ_ℓ) (THEORY.md §3). The cached
chain is keyed by b and the ratios rounded to 12 significant digits and built from those rounded
values, so equal keys give identical levels; a deeper chain reuses the shallower one's levels.
Levels are reused across spike strengths, learning rates and input models.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from kernels.theory.levels import DeformedLevel, Level, MarchenkoPasturLevel

__all__ = ["build_chain", "cache_clear", "gaussian_chain"]


def _key(v: float) -> float:
    return float(f"{v:.12g}")


def build_chain(base: Level, b: float, gammas: Sequence[float]) -> tuple[Level, ...]:
    """Build (base, DeformedLevel(base, b, γ1), …) for layer ratios γ1, …, γL (not cached)."""
    chain: list[Level] = [base]
    for g in gammas:
        chain.append(DeformedLevel(chain[-1], b, g))
    return tuple(chain)


@functools.lru_cache(maxsize=256)
def _gaussian_chain(b: float, gammas: tuple[float, ...]) -> tuple[Level, ...]:
    if len(gammas) == 1:
        return (MarchenkoPasturLevel(gammas[0]),)
    head = _gaussian_chain(b, gammas[:-1])
    return (*head, DeformedLevel(head[-1], b, gammas[-1]))


def gaussian_chain(b: float, gammas: Sequence[float]) -> tuple[Level, ...]:
    """Return the cached chain MP(γ0), then one Fan–Wang level per later ratio (keyed by |b|)."""
    gs = tuple(_key(float(g)) for g in gammas)
    if not gs or not all(np.isfinite(g) and g > 0 for g in gs):
        raise ValueError(f"gammas: need at least γ0, all positive and finite, got {gammas!r}")
    return _gaussian_chain(_key(abs(float(b))), gs)


def cache_clear() -> None:
    """Drop every cached chain (for benchmarks of cold starts)."""
    _gaussian_chain.cache_clear()
