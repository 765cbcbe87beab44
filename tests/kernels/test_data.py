import numpy as np
import pytest

from kernels.backend import get_backend
from kernels.data import INPUT_MODELS, InputNoise, draw_input_noise, make_input
from kernels.eigen import top_eigenpairs
from kernels.seeding import derive

BE = get_backend()


def _noise(n=200, d0=300, r=2, seed=0, model="gmm", backend=BE) -> InputNoise:
    return draw_input_noise(n, d0, r, np.random.SeedSequence(seed), backend, model=model)


@pytest.mark.parametrize("model", INPUT_MODELS)
def test_shapes_and_ground_truth_geometry(model):
    noise = _noise(n=256, d0=300, r=3, model=model)
    assert noise.Z.shape == (300, 256) and noise.shape == (300, 256) and noise.rank == 3
    assert noise.directions.shape == (3, 300) and noise.signals.shape == (3, 256)
    assert np.allclose(noise.directions @ noise.directions.T, np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.norm(noise.signals, axis=1), 1.0, atol=1e-12)


def test_gmm_signals_are_balanced_orthonormal_class_contrasts():
    # 2^r divides n: exact ±1/√n contrasts, orthonormal and orthogonal to the all-ones vector
    noise = _noise(n=256, d0=100, r=3)
    b = noise.signals
    assert np.allclose(b @ b.T, np.eye(3), atol=1e-12)
    assert np.allclose(b.sum(axis=1), 0.0, atol=1e-12)
    assert np.allclose(np.abs(b), 1 / 16, atol=1e-12)


def test_gmm_signals_stay_delocalised_when_n_is_not_a_multiple_of_2_to_the_r():
    noise = _noise(n=301, d0=100, r=2)
    b = noise.signals
    assert np.allclose(b @ b.T, np.eye(2), atol=1e-12)
    assert np.allclose(b.sum(axis=1), 0.0, atol=1e-12)
    # QR correction is O(2^r / n): entries stay within 5 % of 1/√n
    assert np.max(np.abs(np.abs(b) * np.sqrt(301) - 1)) < 0.05


def test_noise_variance_is_one_over_d0():
    noise = _noise(n=400, d0=500, r=0)
    Z = noise.Z
    # 2e5 entries: the sample variance of N(0, 1/d0) has relative sd sqrt(2/2e5) = 0.32 %;
    # 1.5 % is > 4 sd
    assert np.var(Z) * 500 == pytest.approx(1.0, rel=0.015)
    assert abs(np.mean(Z)) * np.sqrt(500) < 4 / np.sqrt(Z.size)


def test_gmm_input_is_noise_plus_rank_r_signal_exactly():
    noise = _noise()
    sample = make_input(noise, [1.5, 0.7], BE)
    expected = noise.Z + 1.5 * np.outer(noise.directions[0], noise.signals[0]) + 0.7 * np.outer(
        noise.directions[1], noise.signals[1]
    )
    assert np.allclose(sample.X, expected, atol=1e-14)
    assert sample.strengths == (1.5, 0.7) and sample.model == "gmm"
    assert sample.signals is noise.signals


def test_make_input_does_not_modify_the_shared_noise():
    noise = _noise()
    before = noise.Z.copy()
    make_input(noise, [2.0, 3.0], BE)
    make_input(noise, [-1.0, 0.5], BE)
    assert np.array_equal(noise.Z, before)


def test_zero_spike_gives_the_noise_itself():
    noise = _noise()
    assert np.array_equal(make_input(noise, [0.0, 0.0], BE).X, noise.Z)


def test_spiked_cov_covariance_and_realised_latent():
    noise = _noise(n=300, d0=200, r=2, model="spiked_cov")
    theta = [3.0, 0.5]
    X = make_input(noise, theta, BE).X
    V = noise.directions
    # X = (I + Σ c_i v_i v_iᵀ) Z with (1 + c_i)² = 1 + θ_i: exact algebraic identities
    assert np.allclose(V @ X, np.sqrt(1 + np.array(theta))[:, None] * (V @ noise.Z), atol=1e-13)
    P = np.eye(200) - V.T @ V
    assert np.allclose(P @ X, P @ noise.Z, atol=1e-13)
    latent = V @ X
    f = latent / np.linalg.norm(latent, axis=1, keepdims=True)
    assert np.allclose(f, noise.signals, atol=1e-12)


def test_spiked_cov_variance_along_v_is_one_plus_theta_over_d0():
    noise = _noise(n=4000, d0=100, r=1, model="spiked_cov", seed=3)
    X = make_input(noise, [2.0], BE).X
    proj = noise.directions[0] @ X
    # n = 4000 samples: relative sd of the variance estimate sqrt(2/4000) = 2.2 %; tolerance 10 %
    assert np.var(proj) * 100 == pytest.approx(3.0, rel=0.10)


def test_same_seed_gives_bitwise_identical_inputs_and_children_are_independent():
    a = _noise(seed=11)
    b = _noise(seed=11)
    assert np.array_equal(a.Z, b.Z)
    assert np.array_equal(a.directions, b.directions)
    assert np.array_equal(a.signals, b.signals)
    c = _noise(seed=12)
    assert not np.array_equal(a.Z, c.Z)
    # the noise does not depend on r or the model: adding a spike keeps the same Z
    assert np.array_equal(a.Z, _noise(seed=11, r=0).Z)
    assert np.array_equal(a.Z, _noise(seed=11, model="spiked_cov").Z)


def test_float32_backend():
    be32 = get_backend("numpy", "float32")
    noise = draw_input_noise(100, 120, 1, np.random.SeedSequence(0), be32)
    X = make_input(noise, [2.0], be32).X
    assert noise.Z.dtype == np.float32 and X.dtype == np.float32


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((0, 10, 1), "n"),
        ((10, 0, 1), "d0"),
        ((10, 10, -1), "r"),
        ((10, 3, 4), "r"),
        ((4, 10, 4), "r"),
    ],
)
def test_bad_sizes_are_refused(args, needle):
    with pytest.raises(ValueError, match=needle):
        draw_input_noise(*args, np.random.SeedSequence(0), BE)


def test_bad_model_and_bad_spikes_are_refused():
    with pytest.raises(ValueError, match="model"):
        draw_input_noise(10, 10, 1, np.random.SeedSequence(0), BE, model="ica")
    noise = _noise(r=2)
    with pytest.raises(ValueError, match="spikes"):
        make_input(noise, [1.0], BE)
    with pytest.raises(ValueError, match="spikes"):
        make_input(noise, [1.0, np.nan], BE)
    cov = _noise(r=1, model="spiked_cov")
    with pytest.raises(ValueError, match="spikes"):
        make_input(cov, [-1.0], BE)


def _k0_top(theta: float, n: int, d0: int, seed: int, model: str) -> tuple[float, float]:
    noise = draw_input_noise(n, d0, 1, derive(np.random.SeedSequence(99), seed), BE, model=model)
    sample = make_input(noise, [theta], BE)
    vals, vecs = top_eigenpairs(sample.X, 1)
    return vals[0], float((vecs[:, 0] @ sample.signals[0]) ** 2)


@pytest.mark.parametrize(
    ("model", "theta", "lam", "align", "tol_lam", "tol_align"),
    [
        # THEORY.md section 1, γ0 = 1/2: gmm λ = (1+θ²)(γ0+θ²)/θ², c0 = 1 − γ0(1+θ²)/(θ²(θ²+γ0))
        ("gmm", 2.0, 5.625, 0.861111, 0.25, 0.02),
        # spiked covariance: λ0 = (1+θ)(γ0 + 1/θ), alignment 1 − 1/(γ0 θ²)
        ("spiked_cov", 3.0, 4 * (0.5 + 1 / 3), 1 - 1 / (0.5 * 9), 0.2, 0.08),
    ],
)
def test_input_gram_spike_matches_the_bbp_formulas(model, theta, lam, align, tol_lam, tol_align):
    # n = 800, d0 = 1600. Per-draw sd measured over 40 draws (O(n^{-1/2})): gmm λ 0.115,
    # alignment 0.008; spiked_cov λ 0.091, alignment 0.037. Mean of 4 draws: half that; each
    # tolerance is >= 4 sd of the mean.
    vals = [_k0_top(theta, 800, 1600, s, model) for s in range(4)]
    assert np.mean([v[0] for v in vals]) == pytest.approx(lam, abs=tol_lam)
    assert np.mean([v[1] for v in vals]) == pytest.approx(align, abs=tol_align)


def test_noise_scale_scales_the_noise_not_the_signal():
    be = get_backend("numpy")
    noise = draw_input_noise(64, 128, 1, 3, be)
    plain, scaled = make_input(noise, [1.5], be), make_input(noise, [1.5], be, noise_scale=1.5)
    signal = plain.X - noise.Z
    np.testing.assert_allclose(scaled.X - 1.5 * noise.Z, signal, atol=1e-14)
    # column norms² ≈ s²: per column sd s²√(2/d0) = 0.28, so the mean of 64 has sd 1.6 %
    assert np.mean(np.sum(np.asarray(noise.Z) ** 2, axis=0) * 1.5**2) == pytest.approx(2.25, rel=0.03)
    with pytest.raises(ValueError, match="noise_scale"):
        make_input(noise, [1.5], be, noise_scale=0.0)
