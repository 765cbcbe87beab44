"""Property tests (hypothesis) of the deep-CK predictions over activations, ratios and spikes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.activations import get_activation
from kernels.theory import DeformedLevel, deep_ck_prediction, deep_levels

ACTIVATIONS = st.sampled_from(["tanh", "arctan", "erf", "sin", "sin:2", "sin:0.5", "identity"])
RATIO = st.floats(0.2, 5.0, allow_nan=False)
SETTINGS = settings(max_examples=20, deadline=None)


@SETTINGS
@given(
    act=ACTIVATIONS,
    input_ratio=RATIO,
    width_ratios=st.lists(RATIO, min_size=1, max_size=4),
    spikes=st.lists(st.floats(0.0, 8.0), min_size=1, max_size=8),
    model=st.sampled_from(["gmm", "spiked_cov"]),
)
def test_depth_monotonicity(act, input_ratio, width_ratios, spikes, model) -> None:
    p = deep_ck_prediction(act, input_ratio, width_ratios, spikes, input_model=model)
    # alignment in [0, 1] and non-increasing in depth (each φ_ℓ ∈ (0, 1))
    assert np.all((p.alignment >= 0) & (p.alignment <= 1))
    assert np.all(np.diff(p.alignment, axis=1) <= 1e-15)
    # the number of outliers is non-increasing in depth; an absorbed spike never returns
    assert np.all(np.diff(p.survives.sum(axis=0)) <= 0)
    assert np.all(np.diff(p.survives.astype(int), axis=1) <= 0)
    # survivors sit right of the bulk, and the thresholds grow with depth
    assert np.all((p.location > p.edge[None, :])[p.survives])
    assert np.all(np.diff(p.threshold) > 0)


@SETTINGS
@given(
    act=ACTIVATIONS,
    input_ratio=RATIO,
    width_ratios=st.lists(RATIO, min_size=1, max_size=4),
    theta=st.lists(st.floats(0.0, 8.0), min_size=2, max_size=10),
)
def test_survival_monotone_in_theta(act, input_ratio, width_ratios, theta) -> None:
    theta = np.sort(theta)
    p = deep_ck_prediction(act, input_ratio, width_ratios, theta)
    # along increasing θ, each layer's survival flag switches at most once, from False to True
    assert np.all(np.diff(p.survives.astype(int), axis=0) >= 0)
    alive = p.survives[:, -1]
    assert np.all(np.diff(p.location[alive, -1]) >= 0)


@SETTINGS
@given(
    act=ACTIVATIONS,
    input_ratio=RATIO,
    width_ratios=st.lists(RATIO, min_size=0, max_size=3),
    g1=st.floats(0.05, 10.0),
    g2=st.floats(0.05, 10.0),
)
def test_edge_increases_with_gamma(act, input_ratio, width_ratios, g1, g2) -> None:
    if abs(g1 - g2) < 1e-6 * max(g1, g2):
        return
    lower = deep_levels(act, input_ratio, width_ratios)[-1]
    b = get_activation(act).b
    lo, hi = sorted((g1, g2))
    assert DeformedLevel(lower, b, lo).edge < DeformedLevel(lower, b, hi).edge
