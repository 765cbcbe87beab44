"""The public entry points the sweep calls: shapes, flags, errors, caching and speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

import kernels.theory as theory
from kernels.theory import (
    DeepCKPrediction,
    bulk_atom_mass,
    bulk_density,
    cache_clear,
    critical_spikes,
    deep_ck_prediction,
    deep_levels,
)


def test_all_is_explicit_and_importable() -> None:
    for name in theory.__all__:
        assert hasattr(theory, name), name
    for name in (
        "deep_ck_prediction",
        "critical_spikes",
        "one_step_prediction",
        "critical_learning_rate",
        "bulk_density",
    ):
        assert name in theory.__all__


@pytest.mark.parametrize("model", ["gmm", "spiked_cov"])
def test_prediction_shapes_and_fields(model: str) -> None:
    spikes = [0.0, 0.5, 1.5, 3.0, 6.0]
    p = deep_ck_prediction("tanh", 1.5, [1.0, 2.0, 0.5], spikes, input_model=model)
    assert isinstance(p, DeepCKPrediction)
    r, layers = len(spikes), 4
    assert p.edge.shape == (layers,) and p.threshold.shape == (layers,)
    for arr in (p.location, p.survives, p.phi, p.alignment):
        assert arr.shape == (r, layers)
    assert p.survives.dtype == bool
    assert p.gammas == pytest.approx((1 / 1.5, 1.0, 0.5, 2.0))
    np.testing.assert_array_equal(p.threshold, critical_spikes("tanh", 1.5, [1.0, 2.0, 0.5], model))
    # survival is exactly "θ above the layer's threshold"
    np.testing.assert_array_equal(p.survives, np.asarray(spikes)[:, None] > p.threshold[None, :])
    with pytest.raises(AttributeError):
        p.valid = False  # frozen


def test_depth_zero_and_no_spikes() -> None:
    p = deep_ck_prediction("tanh", 2.0, [], [])
    assert p.edge.shape == (1,) and p.location.shape == (0, 1)


def test_outside_theory_is_flagged_with_numbers() -> None:
    p = deep_ck_prediction("relu", 2.0, [2.0, 2.0], [3.0])
    assert not p.valid and "E sigma''" in p.reason
    assert np.all(np.isfinite(p.edge)) and p.survives[0, 0]
    assert deep_ck_prediction("sin", 2.0, [2.0], [3.0]).valid


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"input_ratio": 0.0}, "input_ratio"),
        ({"input_ratio": -2.0}, "input_ratio"),
        ({"input_ratio": np.inf}, "input_ratio"),
        ({"width_ratios": [1.0, 0.0]}, r"width_ratios\[1\]"),
        ({"width_ratios": [np.nan]}, r"width_ratios\[0\]"),
        ({"width_ratios": 2.0}, "width_ratios"),
        ({"spikes": [1.0, -1.0]}, "spikes"),
        ({"spikes": [np.nan]}, "spikes"),
        ({"input_model": "mixture"}, "input_model"),
        ({"activation": "swish"}, "swish"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict, name: str) -> None:
    args = {"activation": "tanh", "input_ratio": 2.0, "width_ratios": [1.0], "spikes": [2.0]}
    with pytest.raises(ValueError, match=name):
        deep_ck_prediction(**(args | kwargs))


def test_levels_are_cached_and_shared_across_depths() -> None:
    a = deep_levels("tanh", 2.0, [1.0, 0.5])
    b = deep_levels("tanh", 2.0, [1.0, 0.5, 2.0])
    assert a[1] is b[1] and a[2] is b[2]
    # width ratios that differ below the rounding of the cache key share levels
    c = deep_levels("tanh", 2.0, [1.0 + 1e-15, 0.5])
    assert c[1] is a[1]
    # 'sin' and 'sin:1' are the same activation
    assert deep_levels("sin", 2.0, [1.0])[1] is deep_levels("sin:1", 2.0, [1.0])[1]


def test_depth8_fifty_spikes_under_five_seconds() -> None:
    """Issue target: a cold depth-8 prediction for 50 spike strengths in < 5 s (~0.3 s here)."""
    cache_clear()
    t0 = time.perf_counter()
    p = deep_ck_prediction("tanh", 2.0, [1.0] * 8, np.linspace(0.5, 5.0, 50))
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    deep_ck_prediction("tanh", 2.0, [1.0] * 8, np.linspace(0.6, 5.1, 50))
    warm = time.perf_counter() - t0
    assert p.location.shape == (50, 9)
    assert cold < 5.0 and warm < cold


def test_bulk_density_and_atom() -> None:
    x = np.linspace(0.0, 12.0, 400)
    rho0 = bulk_density("tanh", 0.5, [0.5], 0, x)  # γ0 = 2: MP with an atom 1/2 at 0
    assert bulk_atom_mass("tanh", 0.5, [0.5], 0) == pytest.approx(0.5)
    assert bulk_atom_mass("tanh", 0.5, [0.5, 2.0], 2) == 0.0
    rho1 = bulk_density("tanh", 0.5, [0.5], 1, x)
    edge1 = deep_levels("tanh", 0.5, [0.5])[1].edge
    assert rho0.shape == x.shape and np.all(rho0 >= 0) and np.all(rho1 >= 0)
    assert np.all(rho1[x > 1.01 * edge1] < 1e-5) and rho1[x < 0.9 * edge1].max() > 0.05
    with pytest.raises(ValueError, match="layer"):
        bulk_density("tanh", 0.5, [0.5], 2, x)
