"""Levels: closed forms, the tabulated Fan–Wang recursion against independent references, and
the density route (atoms + Silverstein equation) against the real-axis route."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.optimize import brentq

from kernels.activations import get_activation
from kernels.theory import (
    DeformedLevel,
    EmpiricalLevel,
    IsotropicLevel,
    MarchenkoPasturLevel,
    build_chain,
    deep_levels,
)
from kernels.theory.density import edge_clustered_cells

B_TANH = get_activation("tanh").b


@pytest.mark.parametrize("gamma", [0.3, 1.0, 2.5])
def test_mp_transform_matches_quadrature(gamma: float) -> None:
    """m and m' of the closed form against ∫ ρ(λ)/(λ − x)^k dλ plus the atom at 0."""
    mp = MarchenkoPasturLevel(gamma)
    for x in (mp.edge * 1.01, mp.edge * 1.5, 3 * mp.edge):
        got_m, got_dm = mp.transform(x)
        m = quad(lambda t, x=x: mp.density(t) / (t - x), mp.left_edge, mp.edge, limit=200)[0]
        dm = quad(lambda t, x=x: mp.density(t) / (t - x) ** 2, mp.left_edge, mp.edge, limit=200)[0]
        m += mp.atom_zero / (0.0 - x)
        dm += mp.atom_zero / x**2
        assert float(got_m) == pytest.approx(m, rel=1e-8)
        assert float(got_dm) == pytest.approx(dm, rel=1e-8)
    total = quad(mp.density, mp.left_edge, mp.edge, limit=200)[0] + mp.atom_zero
    assert total == pytest.approx(1.0, abs=1e-8)


def test_transform_is_nan_inside_the_bulk() -> None:
    for level in (MarchenkoPasturLevel(0.5), deep_levels("tanh", 2.0, [2.0])[1]):
        m, dm = level.transform(np.array([0.5 * level.edge, level.edge]))
        assert np.all(np.isnan(m)) and np.all(np.isnan(dm))


@pytest.mark.parametrize("gamma", [0.01, 0.5, 1.0, 4.0, 50.0])
def test_fan_wang_on_delta_one_is_marchenko_pastur(gamma: float) -> None:
    """ν = δ_1 turns the tabulated recursion into MP(γ): edge, m, m' to 1e-10."""
    level = DeformedLevel(IsotropicLevel(), B_TANH, gamma)
    mp = MarchenkoPasturLevel(gamma)
    assert level.edge == pytest.approx(mp.edge, rel=1e-12)
    assert level.alpha_c == pytest.approx(1 + np.sqrt(gamma), rel=1e-12)
    x = mp.edge * np.array([1 + 1e-4, 1 + 1e-3, 1.05, 1.5, 3.0, 1e2, 1e5, 1e9])
    m, dm = level.transform(x)
    m_ref, dm_ref = mp.transform(x)
    np.testing.assert_allclose(m, m_ref, rtol=1e-10)
    np.testing.assert_allclose(dm, dm_ref, rtol=1e-10)
    # At x = E(1 + r) m' ~ r^{-1/2} and α(x) has slope 1/ψ' ~ r^{-1/2}: rounding x alone costs
    # m' a relative eps/(2r) ≈ 5.6e-11 at r = 1e-6; allow 100× that conditioning floor there.
    x_near = mp.edge * (1 + 1e-6)
    assert float(level.dm(x_near)) == pytest.approx(float(mp.dm(x_near)), rel=6e-9)
    assert float(level.m(x_near)) == pytest.approx(float(mp.m(x_near)), rel=1e-10)


def test_second_layer_over_tabulated_equals_over_closed_form() -> None:
    """A level on top of the tabulated MP(0.5) agrees with one on top of the closed form."""
    via_table = DeformedLevel(DeformedLevel(IsotropicLevel(), B_TANH, 0.5), B_TANH, 0.7)
    via_closed = DeformedLevel(MarchenkoPasturLevel(0.5), B_TANH, 0.7)
    assert via_table.edge == pytest.approx(via_closed.edge, rel=1e-12)
    x = via_closed.edge * np.array([1.001, 1.2, 2.0, 50.0])
    np.testing.assert_allclose(via_table.transform(x), via_closed.transform(x), rtol=1e-10)


def _nested_reference_level(lower_transform, lower_edge: float, b2: float, gamma: float):
    """Independent Fan–Wang level by plain root finding at every call (no tables)."""

    def psi(a: float) -> tuple[float, float]:
        m, dm = lower_transform((a - 1 + b2) / b2)
        s, ds = m / b2, dm / b2**2
        return a * (1 - gamma) - gamma * a * a * s, 1 - gamma * (1 + 2 * a * s + a * a * ds)

    t_right = b2 * lower_edge + 1 - b2
    alpha_c = brentq(lambda a: psi(a)[1], t_right + 1e-9, t_right + 50, xtol=1e-15, rtol=1e-15)
    edge = psi(alpha_c)[0]

    def transform(x: float) -> tuple[float, float]:
        a = brentq(lambda a: psi(a)[0] - x, alpha_c, x + 50, xtol=1e-15, rtol=1e-15)
        m = (-1 / a + (1 - gamma) / x) / gamma
        return m, (1 / (a * a * psi(a)[1]) - (1 - gamma) / x**2) / gamma

    return transform, edge


def test_depth_two_against_nested_root_finding() -> None:
    b2 = B_TANH**2
    chain = deep_levels("tanh", 1 / 0.4, [1 / 0.6, 1 / 1.3])
    mp = chain[0]
    t1, e1 = _nested_reference_level(lambda w: tuple(map(float, mp.transform(w))), mp.edge, b2, 0.6)
    t2, e2 = _nested_reference_level(t1, e1, b2, 1.3)
    assert chain[1].edge == pytest.approx(e1, rel=1e-11)
    assert chain[2].edge == pytest.approx(e2, rel=1e-11)
    for x in (e2 * 1.001, e2 * 1.3, e2 * 4.0):
        m, dm = chain[2].transform(x)
        m_ref, dm_ref = t2(x)
        assert float(m) == pytest.approx(m_ref, rel=1e-9)
        assert float(dm) == pytest.approx(dm_ref, rel=1e-8)


@pytest.mark.parametrize("lower", [MarchenkoPasturLevel(0.5), IsotropicLevel()])
def test_edge_increases_with_gamma(lower) -> None:
    edges = [DeformedLevel(lower, B_TANH, g).edge for g in (0.05, 0.2, 0.5, 1.0, 2.0, 8.0)]
    assert np.all(np.diff(edges) > 0)


def test_zero_b_gives_isotropic_population() -> None:
    """b = 0: ν = δ_1 whatever the level below, so the level is MP(γ)."""
    level = DeformedLevel(MarchenkoPasturLevel(3.0), 0.0, 0.5)
    assert level.edge == pytest.approx(MarchenkoPasturLevel(0.5).edge, rel=1e-12)


def test_atom_at_zero() -> None:
    assert MarchenkoPasturLevel(4.0).atom_zero == pytest.approx(0.75)
    assert DeformedLevel(MarchenkoPasturLevel(0.5), B_TANH, 2.0).atom_zero == pytest.approx(0.5)
    assert DeformedLevel(MarchenkoPasturLevel(0.5), B_TANH, 0.5).atom_zero == 0.0
    # linear activation: rank of K_ℓ is capped by every earlier width
    ident = get_activation("identity").b
    assert DeformedLevel(MarchenkoPasturLevel(4.0), ident, 0.5).atom_zero == pytest.approx(0.75)


def test_empirical_level_sums() -> None:
    lam = np.array([0.0, 0.5, 1.0, 2.0])
    level = EmpiricalLevel(lam)
    m, dm = level.transform(np.array([3.0, 5.0]))
    np.testing.assert_allclose(m, [np.mean(1 / (lam - 3.0)), np.mean(1 / (lam - 5.0))])
    np.testing.assert_allclose(dm, [np.mean(1 / (lam - 3.0) ** 2), np.mean(1 / (lam - 5.0) ** 2)])
    assert level.edge == 2.0 and level.atom_zero == 0.25 and level.mean == pytest.approx(0.875)


def test_plug_in_chain_from_simulated_noise_matches_mp_chain() -> None:
    """A plug-in level from an n = 800 MP(0.5) sample gives the next edge to O(n^{-2/3})."""
    rng = np.random.default_rng(0)
    n, d0 = 800, 1600
    z = rng.standard_normal((d0, n)) / np.sqrt(d0)
    eig = np.linalg.eigvalsh(z.T @ z)
    plug = build_chain(EmpiricalLevel(eig), B_TANH, [0.5])
    exact = deep_levels("tanh", 2.0, [2.0])
    # the sample edge sits ≈ 1.21 κ ≈ 0.8 % (sd 0.9 %) inside (1+√γ)² at n = 800; the next edge
    # inherits that: 2 % is > 2 sd
    assert plug[0].edge == pytest.approx(exact[0].edge, rel=0.02)
    assert plug[1].edge == pytest.approx(exact[1].edge, rel=0.02)


@pytest.mark.parametrize(("act", "ratio"), [("tanh", 2.0), ("sin", 0.5)])
def test_edges_agree_with_density_route(act: str, ratio: float) -> None:
    """Edge of μ_ℓ from the real-axis route vs from ν's atoms (density route), to 1e-3."""
    chain = deep_levels(act, ratio, [ratio] * 3)
    b = get_activation(act).b
    for layer in range(1, 4):
        atoms, weights = chain[layer - 1].atoms(400)
        via_atoms = DeformedLevel(EmpiricalLevel(atoms, weights), b, 1 / ratio).edge
        assert via_atoms == pytest.approx(chain[layer].edge, rel=1e-3)


def test_density_route_reproduces_mp() -> None:
    """Silverstein solve on ν = δ_1 against the MP closed form."""
    for gamma in (0.5, 2.0):
        level = DeformedLevel(IsotropicLevel(), B_TANH, gamma)
        mp = MarchenkoPasturLevel(gamma)
        x = np.linspace(0.01, 1.05 * mp.edge, 300)
        np.testing.assert_allclose(level.density(x), mp.density(x), atol=2e-5)


@pytest.mark.parametrize(("act", "ratios"), [("tanh", [2.0, 2.0]), ("sin", [1.0, 0.5])])
def test_density_mass_and_stieltjes(act: str, ratios: list[float]) -> None:
    """The density integrates to 1 − atom and its Stieltjes transform matches m right of E."""
    chain = deep_levels(act, 2.0, ratios)
    level = chain[-1]
    x, width = edge_clustered_cells(0.0, level.edge, 2500)
    mass = level.density(x) * width
    assert mass.sum() + level.atom_zero == pytest.approx(1.0, abs=1e-4)
    assert (mass @ x) == pytest.approx(level.mean, rel=1e-4)
    for xq in (1.02 * level.edge, 2 * level.edge):
        st = mass @ (1 / (x - xq)) - level.atom_zero / xq
        assert st == pytest.approx(float(level.m(xq)), rel=1e-4)
    beyond = level.density(level.edge * np.array([1.01, 1.1]))
    assert np.all(beyond < 1e-5)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf])
def test_bad_gamma(bad: float) -> None:
    with pytest.raises(ValueError, match="gamma"):
        MarchenkoPasturLevel(bad)
    with pytest.raises(ValueError, match="gamma"):
        DeformedLevel(IsotropicLevel(), 0.9, bad)


def test_bad_empirical_input() -> None:
    with pytest.raises(ValueError, match="eigenvalues"):
        EmpiricalLevel(np.array([]))
    with pytest.raises(ValueError, match="eigenvalues"):
        EmpiricalLevel(np.array([-1.0, 2.0]))
    with pytest.raises(ValueError, match="weights"):
        EmpiricalLevel(np.array([1.0, 2.0]), np.array([0.2, 0.2]))
