import math

import numpy as np
import pytest
from scipy import integrate

from kernels.activations import UnknownActivationError, get_activation, registered_activations


def _gauss(g) -> float:
    """E g(ξ) by adaptive quadrature: independent of the module's Gauss–Legendre rule."""
    pdf = lambda x: math.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    left = integrate.quad(lambda x: g(x) * pdf(x), -np.inf, 0.0, epsabs=1e-13, epsrel=1e-12)[0]
    right = integrate.quad(lambda x: g(x) * pdf(x), 0.0, np.inf, epsabs=1e-13, epsrel=1e-12)[0]
    return left + right


# THEORY.md section 7 acceptance values (6 decimals given, so tolerance 5e-7 absolute)
@pytest.mark.parametrize(
    ("name", "b"),
    [("tanh", 0.964609), ("arctan", 0.977754), ("erf", 0.955815), ("sin", 0.922452)],
)
def test_linear_coefficient_acceptance_values(name, b):
    assert get_activation(name).b == pytest.approx(b, abs=5e-7)


def test_sin_b_squared_is_one_over_sinh_one():
    assert get_activation("sin").b ** 2 == pytest.approx(1.0 / math.sinh(1.0), rel=1e-10)


@pytest.mark.parametrize("omega", [0.25, 0.5, 1.5, 2.0, 3.0])
def test_sin_omega_b_squared_closed_form(omega):
    # sin(ωξ): E[ξ sin ωξ] = ω e^{-ω²/2}, Var = (1 − e^{-2ω²})/2 ⇒ b² = ω²/sinh(ω²)
    act = get_activation(f"sin:{omega}")
    assert act.b**2 == pytest.approx(omega**2 / math.sinh(omega**2), rel=1e-9)


@pytest.mark.parametrize("name", ["tanh", "arctan", "erf", "sin", "sin:2", "identity", "relu",
                                  "gelu", "softplus"])
def test_normalised_mean_zero_variance_one(name):
    act = get_activation(name)
    f = lambda x: float(act(np.array([x]))[0])  # noqa: E731
    assert _gauss(f) == pytest.approx(0.0, abs=1e-9)
    assert _gauss(lambda x: f(x) ** 2) == pytest.approx(1.0, abs=1e-9)
    # b and E σ'' agree with the independent quadrature as well
    assert act.b == pytest.approx(_gauss(lambda x: x * f(x)), abs=1e-9)
    assert act.second == pytest.approx(_gauss(lambda x: (x * x - 1) * f(x)), abs=1e-9)


def test_relu_hermite_data_closed_form():
    # relu: mean φ(0), E relu² = 1/2, E[ξ relu] = 1/2, E[(ξ²−1) relu] = φ(0), φ(0) = 1/√(2π)
    phi0 = 1.0 / math.sqrt(2 * math.pi)
    sd = math.sqrt(0.5 - phi0**2)
    act = get_activation("relu")
    assert act.b == pytest.approx(0.5 / sd, rel=1e-12)
    assert act.second == pytest.approx(phi0 / sd, rel=1e-12)


@pytest.mark.parametrize("name", ["relu", "gelu", "softplus"])
def test_non_odd_activations_are_flagged_not_valid(name):
    act = get_activation(name)
    assert not act.theory_valid
    assert "sigma''" in act.theory_reason and name in act.theory_reason


@pytest.mark.parametrize("name", ["tanh", "arctan", "erf", "sin", "sin:0.5", "identity"])
def test_odd_activations_are_valid(name):
    act = get_activation(name)
    assert act.theory_valid and act.theory_reason == ""
    assert act.second == 0.0


def test_identity_and_alias():
    assert get_activation("linear").name == "identity"
    assert get_activation("identity").b == pytest.approx(1.0, abs=1e-13)
    x = np.linspace(-3, 3, 7)
    assert np.allclose(get_activation("linear")(x), x)


def test_canonical_names_and_caching():
    assert get_activation("sin:1").name == "sin"
    assert get_activation("sin:2.0").name == "sin:2"
    assert get_activation(" TANH ").name == "tanh"
    assert get_activation("tanh") is get_activation("tanh")


def test_unknown_name_lists_the_registry():
    with pytest.raises(UnknownActivationError) as info:
        get_activation("swish")
    msg = str(info.value)
    for name in ("tanh", "relu", "sin:<omega>", "identity"):
        assert name in msg
    assert isinstance(info.value, ValueError)
    assert set(["tanh", "arctan", "erf", "sin", "relu", "gelu", "softplus"]) <= set(
        registered_activations()
    )


@pytest.mark.parametrize("bad", ["sin:0", "sin:-1", "sin:abc", "sin:nan"])
def test_bad_omega_is_refused(bad):
    with pytest.raises(UnknownActivationError, match="omega"):
        get_activation(bad)


def test_application_is_the_normalised_raw_function():
    act = get_activation("tanh")
    x = np.linspace(-4, 4, 41)
    assert np.allclose(act(x), (np.tanh(x) - act.shift) / act.scale, rtol=0, atol=1e-15)
    assert np.array_equal(act.raw(x), np.tanh(x))
