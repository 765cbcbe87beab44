"""The finite-n transition window: edge fluctuation scale and its width in spike strength."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.theory import (
    DeformedLevel,
    MarchenkoPasturLevel,
    critical_spikes,
    critical_window,
    deep_ck_prediction,
    deep_levels,
    edge_density_coefficient,
    edge_fluctuation_scale,
    input_spikes,
)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_mp_scale_is_johnstones_sigma(gamma: float) -> None:
    """K = GᵀG/d with G d × n standard: σ_np/d = (√d + √n)(1/√d + 1/√n)^{1/3}/d (Johnstone 2001)."""
    n = 1000
    d = n / gamma
    johnstone = (np.sqrt(d) + np.sqrt(n)) * (1 / np.sqrt(d) + 1 / np.sqrt(n)) ** (1 / 3) / d
    assert edge_fluctuation_scale(MarchenkoPasturLevel(gamma), n) == pytest.approx(johnstone, rel=1e-12)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_deformed_level_without_linear_part_is_mp(gamma: float) -> None:
    """b = 0: population δ_1, so the ψ route must reproduce the MP closed form."""
    level = DeformedLevel(MarchenkoPasturLevel(0.7), 0.0, gamma)
    assert edge_density_coefficient(level) == pytest.approx(
        edge_density_coefficient(MarchenkoPasturLevel(gamma)), rel=1e-6)


def test_psi_coefficient_matches_density_near_edge() -> None:
    """C from ψ''(α_c) against ρ(E − δ)/√δ from the Silverstein density, independent routes.

    ρ(E − δ)/√δ = C(1 + aδ + …): Richardson over δ = 1e-2 E and 2.5e-3 E removes the linear term.
    The density route is discretised (atoms of the level below, a small imaginary part), which
    leaves it ~0.5 % noisy this close to the edge; hence 1 %.
    """
    for level in deep_levels("tanh", 2.0, [1.0, 0.5])[1:]:
        def ratio(r: float, level=level) -> float:
            return float(level.density(level.edge * (1 - r))) / np.sqrt(r * level.edge)

        from_density = (4 * ratio(2.5e-3) - ratio(1e-2)) / 3
        assert edge_density_coefficient(level) == pytest.approx(from_density, rel=1e-2)


def test_window_is_the_quadratic_edge_crossing_at_large_n() -> None:
    """Layer 0, gmm: λ0(θ) − E ≈ ½ λ0''(θ*) (θ − θ*)², so w_n n^{1/3} → √(2 s₁ / λ0''(θ*))."""
    gamma0 = 0.5
    theta_c = critical_spikes("tanh", 1 / gamma0, [1.0])[0]
    h = 1e-4
    lam = [float(input_spikes("gmm", theta_c + k * h, gamma0)[0]) for k in (1, 2, 3)]
    second = (lam[0] - 2 * lam[1] + lam[2]) / h**2  # one-sided: λ0 is undefined below θ*
    s1 = edge_fluctuation_scale(MarchenkoPasturLevel(gamma0), 1)
    n = 10**12
    w = critical_window("tanh", 1 / gamma0, [1.0], n)[0]
    assert w * n ** (1 / 3) == pytest.approx(np.sqrt(2 * s1 / second), rel=1e-3)


def test_window_shrinks_like_n_to_minus_one_third_at_every_layer() -> None:
    w1 = critical_window("tanh", 2.0, [2.0, 2.0], 10**6)
    w8 = critical_window("tanh", 2.0, [2.0, 2.0], 8 * 10**6)
    np.testing.assert_allclose(w8 / w1, 0.5, rtol=0.01)
    assert np.all(np.diff(w1) > 0)  # deeper bulks have larger edge scales and flatter spike maps


@pytest.mark.parametrize(("act", "width"), [("tanh", 2.0), ("sin", 0.5), ("erf", 1.0)])
def test_window_end_sits_one_edge_scale_above_the_edge_at_every_layer(act: str, width: float) -> None:
    """Round trip: propagate θ* + w_n forward; at layer ℓ the outlier is at E_ℓ + s_n(ℓ)."""
    n, widths = 700, [width, width]
    theta_c = critical_spikes(act, 2.0, widths)
    w = critical_window(act, 2.0, widths, n)
    levels = deep_levels(act, 2.0, widths)
    for layer in range(3):
        pred = deep_ck_prediction(act, 2.0, widths, [theta_c[layer] + w[layer]])
        target = pred.edge[layer] + edge_fluctuation_scale(levels[layer], n)
        assert pred.location[0, layer] == pytest.approx(target, rel=1e-8)


@pytest.mark.parametrize("n", [0, -5, 2.5])
def test_bad_n_is_named(n) -> None:
    with pytest.raises(ValueError, match="n: "):
        critical_window("tanh", 1.0, [1.0], n)
