import numpy as np
import pytest

from kernels.activations import get_activation
from kernels.backend import get_backend
from kernels.data import draw_input_noise, make_input
from kernels.eigen import top_eigenpairs
from kernels.network import (
    forward,
    forward_batch,
    initial_weights,
    layer_weights,
    layer_widths,
)
from kernels.seeding import derive

BE = get_backend()


def test_layer_widths_round_and_validate():
    assert layer_widths(1000, [0.5, 1, 2.25]) == (500, 1000, 2250)
    assert layer_widths(3, [0.5]) == (2,)  # round half to even: 1.5 -> 2
    with pytest.raises(ValueError, match=r"width_ratios\[1\]"):
        layer_widths(100, [1.0, 0.0])
    with pytest.raises(ValueError, match=r"width_ratios\[0\]"):
        layer_widths(100, [float("nan")])
    with pytest.raises(ValueError, match="rounds to a width < 1"):
        layer_widths(10, [0.01])
    with pytest.raises(ValueError, match="n"):
        layer_widths(0, [1.0])


def test_forward_yields_every_layer_with_the_input_first():
    X0 = np.random.default_rng(0).standard_normal((30, 20)) / np.sqrt(30)
    layers = list(forward(X0, (40, 10), "tanh", np.random.SeedSequence(1), BE))
    assert len(layers) == 3
    assert layers[0] is X0
    assert [F.shape for F in layers] == [(30, 20), (40, 20), (10, 20)]


def test_forward_is_the_layer_recursion_with_the_documented_weights():
    seed = np.random.SeedSequence(5)
    X0 = np.random.default_rng(1).standard_normal((30, 20)) / np.sqrt(30)
    act = get_activation("erf")
    layers = list(forward(X0, (25, 15), act, seed, BE))
    W1 = layer_weights(seed, 1, 25, 30, BE)
    W2 = layer_weights(seed, 2, 15, 25, BE)
    X1 = act(W1 @ X0) / np.sqrt(25)
    X2 = act(W2 @ X1) / np.sqrt(15)
    assert np.allclose(layers[1], X1, rtol=0, atol=1e-15)
    assert np.allclose(layers[2], X2, rtol=0, atol=1e-15)
    # the training code's weights are the same matrices
    Ws = initial_weights(30, (25, 15), seed, BE)
    assert np.array_equal(Ws[0], W1) and np.array_equal(Ws[1], W2)


def test_weights_are_standard_normal():
    W = layer_weights(np.random.SeedSequence(3), 1, 300, 400, BE)
    # 1.2e5 entries: sd of the sample variance sqrt(2/1.2e5) = 0.4 %; 2 % is 5 sd
    assert np.var(W) == pytest.approx(1.0, rel=0.02)
    assert abs(W.mean()) < 5 / np.sqrt(W.size)


def test_same_weights_whatever_the_activation_or_spike():
    # common random numbers: the preactivation W_1 X_0 is identical across activations, so
    # tanh's layer 1 is σ_tanh applied to √d1 · (identity's layer 1), bitwise
    seed = np.random.SeedSequence(9)
    X0 = np.random.default_rng(2).standard_normal((30, 20))
    lin = list(forward(X0, (25,), "identity", seed, BE))[1]
    tanh = list(forward(X0, (25,), "tanh", seed, BE))[1]
    act = get_activation("tanh")
    pre = lin * np.sqrt(25)  # identity's normalisation is exactly 1 (shift 0, scale 1)
    assert get_activation("identity").scale == pytest.approx(1.0, abs=1e-15)
    assert np.allclose(tanh, act(pre) / np.sqrt(25), rtol=0, atol=1e-14)
    # different spikes, same noise seed and weight seed: layer weights do not move
    noise = draw_input_noise(20, 30, 1, np.random.SeedSequence(4), BE)
    a = list(forward(make_input(noise, [0.0], BE).X, (25,), "identity", seed, BE))[1]
    b = list(forward(make_input(noise, [2.0], BE).X, (25,), "identity", seed, BE))[1]
    W = layer_weights(seed, 1, 25, 30, BE)
    diff = 2.0 * W @ np.outer(noise.directions[0], noise.signals[0]) / 5.0
    assert np.allclose(b - a, diff, atol=1e-12)


def test_same_seed_gives_bitwise_identical_layers():
    noise = draw_input_noise(60, 80, 1, np.random.SeedSequence(0), BE)
    X0 = make_input(noise, [1.5], BE).X
    run1 = list(forward(X0, (70, 50), "tanh", np.random.SeedSequence(3), BE))
    run2 = list(forward(X0, (70, 50), "tanh", np.random.SeedSequence(3), BE))
    other = list(forward(X0, (70, 50), "tanh", np.random.SeedSequence(4), BE))
    for a, b, c in zip(run1[1:], run2[1:], other[1:], strict=True):
        assert np.array_equal(a, b)
        assert not np.array_equal(a, c)


def test_forward_batch_equals_forward_bitwise():
    rng = np.random.default_rng(8)
    inputs = [rng.standard_normal((30, 20)) for _ in range(3)]
    seed = np.random.SeedSequence(21)
    acts = ["tanh", "sin", "relu"]
    batch = list(forward_batch(inputs, (25, 12), acts, seed, BE))
    for i, (X0, act) in enumerate(zip(inputs, acts, strict=True)):
        alone = list(forward(X0, (25, 12), act, seed, BE))
        for layer in range(3):
            assert np.array_equal(batch[layer][i], alone[layer])


def test_forward_rejects_bad_input():
    seed = np.random.SeedSequence(0)
    with pytest.raises(ValueError, match="widths"):
        list(forward(np.ones((3, 4)), (0,), "tanh", seed, BE))
    with pytest.raises(ValueError, match="inputs"):
        list(forward_batch([np.ones((3, 4)), np.ones((3, 5))], (2,), "tanh", seed, BE))
    with pytest.raises(ValueError, match="activation"):
        list(forward_batch([np.ones((3, 4))], (2,), ["tanh", "sin"], seed, BE))
    with pytest.raises(ValueError, match="not registered"):
        list(forward(np.ones((3, 4)), (2,), "swish", seed, BE))


def test_float32_layers_stay_float32():
    be32 = get_backend("numpy", "float32")
    X0 = np.random.default_rng(0).standard_normal((30, 20))
    layers = list(forward(X0, (25,), "tanh", np.random.SeedSequence(0), be32))
    assert all(F.dtype == np.float32 for F in layers)


def test_one_pass_holds_one_layer_at_a_time():
    # the generator draws W_ℓ only when layer ℓ is asked for: stopping after layer 1 never
    # touches layer 2 (its width is absurdly large and would not fit in memory)
    X0 = np.random.default_rng(0).standard_normal((30, 20))
    gen = forward(X0, (25, 10**12), "tanh", np.random.SeedSequence(0), BE)
    next(gen)
    assert next(gen).shape == (25, 20)
    gen.close()


def _isotropic_spiked_input(n: int, theta_eff: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """X0 (n × n) with X0ᵀX0 = I + θ' b bᵀ exactly: the classical BBP population (ν = δ_1)."""
    rng = np.random.default_rng(seed)
    b = rng.choice([-1.0, 1.0], size=n) / np.sqrt(n)
    c = np.sqrt(1 + theta_eff) - 1
    return np.eye(n) + c * np.outer(b, b), b


def test_identity_activation_layer_one_spike_is_classical_bbp():
    # With σ = identity, K_1 = X0ᵀ W1ᵀW1 X0 / d1 is a sample covariance with d1 samples and
    # population Σ = X0ᵀX0 = I + θ' b bᵀ. Classical BBP (Baik–Ben Arous–Péché; THEORY.md §4 with
    # ν = δ_1): spike α + γα/θ' with α = 1 + θ' when θ' > √γ, squared alignment
    # (1 − γ/θ'²)/(1 + γ/θ').  n = 600, d1 = 1200 (γ = 1/2), θ' = 2: λ = 3.75, φ = 0.7.
    n, d1, theta_eff, gamma = 600, 1200, 2.0, 0.5
    alpha = 1 + theta_eff
    lam_theory = alpha + gamma * alpha / theta_eff
    align_theory = (1 - gamma / theta_eff**2) / (1 + gamma / theta_eff)
    lams, aligns = [], []
    for s in range(4):
        X0, b = _isotropic_spiked_input(n, theta_eff, s)
        F = list(forward(X0, (d1,), "identity", derive(np.random.SeedSequence(17), s), BE))[1]
        vals, vecs = top_eigenpairs(F, 1)
        lams.append(vals[0])
        aligns.append((vecs[:, 0] @ b) ** 2)
    # spike CLT (Bai–Yao 2008): var λ ≈ 2α²(1 − γ/θ'²)/d1 ⇒ sd ≈ 3·sqrt(2·0.875/1200) = 0.115
    # per draw, 0.057 for the mean of 4; 0.2 is 3.5 sd. Alignment sd is O(n^{-1/2}) ≈ 0.04,
    # mean of 4 within 0.05.
    assert np.mean(lams) == pytest.approx(lam_theory, abs=0.2)
    assert np.mean(aligns) == pytest.approx(align_theory, abs=0.05)


def test_identity_activation_below_threshold_has_no_outlier():
    # θ' = 0.5 < √γ = 0.707: the top eigenvalue sticks to the MP edge (1 + √γ)² = 2.914
    n, d1 = 600, 1200
    X0, _ = _isotropic_spiked_input(n, 0.5, 0)
    F = list(forward(X0, (d1,), "identity", np.random.SeedSequence(3), BE))[1]
    vals, _ = top_eigenpairs(F, 1)
    # TW scale at n = 600 is ~ n^{-2/3}·(1+√γ)^{4/3}/√γ^{1/3} ≈ 0.04; 0.15 is > 3.5 TW units
    assert vals[0] == pytest.approx((1 + np.sqrt(0.5)) ** 2, abs=0.15)
