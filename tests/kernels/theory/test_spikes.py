"""Spike propagation (Theorem 4), input models and thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.activations import get_activation
from kernels.theory import (
    EmpiricalLevel,
    IsotropicLevel,
    build_chain,
    critical_locations,
    critical_spikes_bisect,
    critical_spikes_for_chain,
    deep_levels,
    input_spikes,
    input_threshold,
    propagate_spikes,
    spike_strength_at,
)

B_TANH = get_activation("tanh").b


@pytest.mark.parametrize("gamma", [0.1, 0.5, 1.0, 3.0])
def test_bbp_closed_form_on_isotropic_bulk(gamma: float) -> None:
    """ν = δ_1: θ' = b²(λ0 − 1); outlier α + γα/θ' iff θ' > √γ; φ = (1 − γ/θ'²)/(1 + γ/θ')."""
    chain = build_chain(IsotropicLevel(), B_TANH, [gamma])
    b2 = B_TANH**2
    lam0 = np.array([1.2, 1.5, 2.0, 3.0, 5.0, 20.0])
    c0 = np.full(lam0.shape, 0.9)
    paths = propagate_spikes(chain, lam0, c0)
    tp = b2 * (lam0 - 1)
    alpha = 1 + tp
    sep = tp > np.sqrt(gamma)
    assert np.array_equal(paths.survives[:, 1], sep)
    outlier = alpha + gamma * alpha / tp
    np.testing.assert_allclose(paths.location[sep, 1], outlier[sep], rtol=1e-10)
    phi = (1 - gamma / tp**2) / (1 + gamma / tp)
    np.testing.assert_allclose(paths.phi[sep, 1], phi[sep], rtol=1e-10)
    np.testing.assert_allclose(paths.alignment[sep, 1], 0.9 * phi[sep], rtol=1e-10)
    assert chain[1].edge == pytest.approx((1 + np.sqrt(gamma)) ** 2, rel=1e-12)


def test_wide_layers_lose_nothing() -> None:
    """γ → 0: ψ(α) → α and φ → 1."""
    chain = deep_levels("tanh", 2.0, [1e6])
    paths = propagate_spikes(chain, np.array([6.0]), np.array([1.0]))
    alpha = B_TANH**2 * 6.0 + 1 - B_TANH**2
    assert paths.location[0, 1] == pytest.approx(alpha, rel=1e-5)
    assert paths.phi[0, 1] == pytest.approx(1.0, abs=1e-5)


def test_absorbed_stays_absorbed_and_flags_match() -> None:
    chain = deep_levels("sin", 1.0, [0.5, 2.0, 0.5, 2.0])
    theta = np.linspace(0.0, 4.0, 41)
    lam0, c0, sep = input_spikes("gmm", theta, 1.0)
    paths = propagate_spikes(chain, lam0, c0)
    assert np.array_equal(paths.survives[:, 0], sep)
    assert np.all(np.diff(paths.survives.astype(int), axis=1) <= 0)
    assert np.array_equal(paths.survives, np.isfinite(paths.location))
    assert np.all(paths.alignment[~paths.survives] == 0.0)
    assert np.all(np.isnan(paths.phi[:, 0]))
    alive = paths.survives[:, 1:]
    assert np.all((paths.phi[:, 1:][alive] > 0) & (paths.phi[:, 1:][alive] < 1))
    # every surviving spike sits right of its layer's bulk edge
    edges = np.array([lv.edge for lv in chain])
    assert np.all(
        paths.location[paths.survives]
        > np.broadcast_to(edges, paths.location.shape)[paths.survives]
    )


@pytest.mark.parametrize("model", ["gmm", "spiked_cov"])
@pytest.mark.parametrize("gamma0", [0.25, 1.0, 3.0])
def test_input_models(model: str, gamma0: float) -> None:
    edge = (1 + np.sqrt(gamma0)) ** 2
    t0 = input_threshold(model, gamma0)
    # at threshold the location meets the MP edge and the alignment vanishes
    lam, c0, sep = input_spikes(model, np.array([t0 * (1 + 1e-9), t0 * 0.999, 0.0]), gamma0)
    assert lam[0] == pytest.approx(edge, rel=1e-7)
    assert c0[0] == pytest.approx(0.0, abs=1e-7)
    assert sep.tolist() == [True, False, False]
    assert np.isnan(lam[1:]).all() and np.all(c0[1:] == 0.0)
    theta = t0 * np.array([1.1, 1.5, 3.0, 10.0])
    lam, c0, _ = input_spikes(model, theta, gamma0)
    assert np.all(np.diff(lam) > 0) and np.all(np.diff(c0) > 0) and np.all(c0 < 1)
    np.testing.assert_allclose(spike_strength_at(model, lam, gamma0), theta, rtol=1e-12)


def test_spiked_cov_formulas() -> None:
    lam, c0, _ = input_spikes("spiked_cov", 3.0, 0.5)
    assert float(lam) == pytest.approx(4.0 * (0.5 + 1 / 3), rel=1e-15)
    assert float(c0) == pytest.approx(1 - 1 / (0.5 * 9), rel=1e-15)


def test_input_errors() -> None:
    with pytest.raises(ValueError, match="input_model"):
        input_spikes("mixture", 1.0, 0.5)
    with pytest.raises(ValueError, match="spikes"):
        input_spikes("gmm", -1.0, 0.5)


@pytest.mark.parametrize("model", ["gmm", "spiked_cov"])
@pytest.mark.parametrize(("act", "ratios"), [("tanh", [2.0, 1.0, 0.5]), ("sin:2", [4.0, 4.0])])
def test_inverse_thresholds_match_bisection(model: str, act: str, ratios: list[float]) -> None:
    """Backward map through the tabulated inverses = bisection on the forward survival flag."""
    chain = deep_levels(act, 1.5, ratios)
    gamma0 = 1 / 1.5
    exact = critical_spikes_for_chain(chain, model, gamma0)
    bisect = critical_spikes_bisect(chain, model, gamma0)
    np.testing.assert_allclose(exact, bisect, rtol=1e-9)
    assert np.all(np.diff(exact) > 0)
    # just above / below θ*(ℓ) the spike does / does not reach layer ℓ
    for layer in range(1, len(chain)):
        lam, c0, _ = input_spikes(model, exact[layer] * np.array([1 + 1e-7, 1 - 1e-7]), gamma0)
        surv = propagate_spikes(chain, lam, c0).survives[:, layer]
        assert surv.tolist() == [True, False]


def test_critical_locations_zero_b() -> None:
    chain = build_chain(IsotropicLevel(), 0.0, [0.5, 0.5])
    crit = critical_locations(chain)
    assert crit[0] == 1.0 and np.all(np.isinf(crit[1:]))


def test_plug_in_chain_propagates() -> None:
    """A plug-in level works as layer 0: propagation on top of measured eigenvalues."""
    rng = np.random.default_rng(1)
    eig = np.linalg.eigvalsh(np.cov(rng.standard_normal((200, 800)), bias=True))
    chain = build_chain(EmpiricalLevel(eig), B_TANH, [0.5, 0.5])
    paths = propagate_spikes(chain, np.array([8.0, 0.5 * eig.max()]), np.array([0.8, 0.8]))
    assert paths.survives[0].all() and not paths.survives[1].any()
    assert 0 < paths.alignment[0, 2] < paths.alignment[0, 1] < 0.8
