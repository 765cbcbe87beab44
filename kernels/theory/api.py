"""Stable entry points for the sweep: deep-CK predictions, thresholds and bulk densities.

Grid conventions (DESIGN.md): ``input_ratio`` = d0/n (γ0 = 1/input_ratio) and ``width_ratios`` =
(d1/n, …, dL/n) (γ_ℓ = 1/width_ratio_ℓ). Levels are cached per (|b|, γ's) in
:mod:`kernels.theory.chain`, so a call for 50 spike strengths builds each level once and the
next call with the same activation and ratios builds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kernels.theory.chain import gaussian_chain
from kernels.theory.inputs import INPUT_MODELS, input_spikes
from kernels.theory.levels import Level
from kernels.theory.spikes import propagate_spikes
from kernels.theory.thresholds import critical_spikes_for_chain
from kernels.theory.validation import activation_status, positive, positive_ratios
from kernels.theory.window import critical_window_for_chain

__all__ = [
    "DeepCKPrediction",
    "bulk_atom_mass",
    "bulk_density",
    "critical_spikes",
    "critical_window",
    "deep_ck_prediction",
    "deep_levels",
]


@dataclass(frozen=True, eq=False)
class DeepCKPrediction:
    """Theorem 4 predictions for r input spikes through layers 0..L.

    Attributes:
        activation, b: activation name and its linear coefficient.
        gammas: (γ0, γ1, …, γL).
        input_model: ``"gmm"`` or ``"spiked_cov"``.
        spikes: (r,) input spike strengths θ.
        edge: (L+1,) right bulk edge E_ℓ.
        location: (r, L+1) spike location λ_ℓ, NaN where absorbed.
        survives: (r, L+1) whether a separated outlier exists.
        phi: (r, L+1) per-layer factor φ_ℓ (NaN at layer 0 and where absorbed).
        alignment: (r, L+1) squared alignment with the signal vector, 0.0 where absorbed.
        threshold: (L+1,) critical spike strength θ*(ℓ) for survival to layer ℓ.
        valid: whether the activation is covered by the theory; reason says why not.
    """

    activation: str
    b: float
    gammas: tuple[float, ...]
    input_model: str
    spikes: np.ndarray
    edge: np.ndarray
    location: np.ndarray
    survives: np.ndarray
    phi: np.ndarray
    alignment: np.ndarray
    threshold: np.ndarray
    valid: bool
    reason: str


def _gammas(input_ratio: float, width_ratios: Sequence[float]) -> tuple[float, ...]:
    d0 = positive("input_ratio", input_ratio)
    ws = positive_ratios("width_ratios", width_ratios)
    return (1.0 / d0, *(1.0 / w for w in ws))


def _check_input_model(input_model: str) -> None:
    if input_model not in INPUT_MODELS:
        raise ValueError(f"input_model: {input_model!r} is not one of {list(INPUT_MODELS)}")


def deep_levels(
    activation: str, input_ratio: float, width_ratios: Sequence[float]
) -> tuple[Level, ...]:
    """Return the cached levels μ_0 = MP(γ0), μ_1, …, μ_L for this activation and ratios."""
    act, _, _ = activation_status(activation)
    return gaussian_chain(act.b, _gammas(input_ratio, width_ratios))


def deep_ck_prediction(
    activation: str,
    input_ratio: float,
    width_ratios: Sequence[float],
    spikes: Sequence[float],
    input_model: str = "gmm",
) -> DeepCKPrediction:
    """Edges, spike locations, φ's, alignments and thresholds through depth (THEORY.md §1–4).

    Raises:
        ValueError: a ratio not finite and > 0, a negative spike, an unknown input model or
            activation (the message names the argument).
    """
    _check_input_model(input_model)
    act, valid, reason = activation_status(activation)
    gammas = _gammas(input_ratio, width_ratios)
    theta = np.atleast_1d(np.asarray(spikes, dtype=float))
    if theta.ndim != 1 or not np.all(np.isfinite(theta)) or np.any(theta < 0):
        raise ValueError(f"spikes: need a 1-d sequence of finite strengths >= 0, got {spikes!r}")
    chain = gaussian_chain(act.b, gammas)
    lam0, c0, _ = input_spikes(input_model, theta, gammas[0])
    paths = propagate_spikes(chain, lam0, c0)
    return DeepCKPrediction(
        activation=act.name,
        b=act.b,
        gammas=gammas,
        input_model=input_model,
        spikes=theta,
        edge=np.array([level.edge for level in chain]),
        location=paths.location,
        survives=paths.survives,
        phi=paths.phi,
        alignment=paths.alignment,
        threshold=critical_spikes_for_chain(chain, input_model, gammas[0]),
        valid=valid,
        reason=reason,
    )


def critical_spikes(
    activation: str, input_ratio: float, width_ratios: Sequence[float], input_model: str = "gmm"
) -> np.ndarray:
    """θ*(ℓ), ℓ = 0..L: a spike of strength θ > θ*(ℓ) survives to layer ℓ (∞ if b = 0)."""
    _check_input_model(input_model)
    chain = deep_levels(activation, input_ratio, width_ratios)
    return critical_spikes_for_chain(chain, input_model, 1.0 / float(input_ratio))


def critical_window(
    activation: str,
    input_ratio: float,
    width_ratios: Sequence[float],
    n: int,
    input_model: str = "gmm",
) -> np.ndarray:
    """w_n(ℓ), ℓ = 0..L: width in θ of the finite-n smearing of the transition at layer ℓ.

    θ* + w_n is where the predicted outlier clears the edge by one Tracy–Widom scale
    (π C n)^{-2/3}; w_n ∝ n^{-1/3} (:mod:`kernels.theory.window`). ∞ where b = 0.
    """
    _check_input_model(input_model)
    if not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n: must be a positive integer sample size, got {n!r}")
    chain = deep_levels(activation, input_ratio, width_ratios)
    return critical_window_for_chain(chain, input_model, 1.0 / float(input_ratio), int(n))


def _layer(width_ratios: Sequence[float], layer: int) -> int:
    if not isinstance(layer, int | np.integer) or not 0 <= layer <= len(width_ratios):
        raise ValueError(f"layer: must be an integer in [0, {len(width_ratios)}], got {layer!r}")
    return int(layer)


def bulk_density(
    activation: str,
    input_ratio: float,
    width_ratios: Sequence[float],
    layer: int,
    x_grid: np.ndarray,
) -> np.ndarray:
    """Density of the continuous part of μ_layer on ``x_grid`` (for histogram overlays).

    Integrates to 1 − :func:`bulk_atom_mass`; layer 0 is the MP closed form, deeper layers use
    the Silverstein equation on atoms of the layer below (a second or so per new layer).
    """
    layer = _layer(width_ratios, layer)
    chain = deep_levels(activation, input_ratio, list(width_ratios)[:layer])
    return chain[layer].density(np.asarray(x_grid, dtype=float))


def bulk_atom_mass(
    activation: str, input_ratio: float, width_ratios: Sequence[float], layer: int
) -> float:
    """Mass of μ_layer at 0: 1 − 1/γ_layer when γ_layer > 1 (K_ℓ has rank ≤ d_ℓ), else 0."""
    layer = _layer(width_ratios, layer)
    return deep_levels(activation, input_ratio, list(width_ratios)[:layer])[layer].atom_zero
