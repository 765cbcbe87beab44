"""run_block: deterministic, independent of blocking, common random numbers, theory beside data."""

from __future__ import annotations

import numpy as np
import pytest

from sweep.grid import Block, blocks
from sweep.spec import parse_spec
from sweep.task import run_block

STUDY = """
[study]
name = "t"
experiment = "deep-ck"
seed = 5
replicates = 2
[fixed]
n = 160
input_ratio = 2.0
width_ratio = 2.0
depth = 2
[axes]
spike = [0.0, 2.0]
activation = ["tanh", "relu"]
[measure]
top_k = 4
[run]
block = {block}
"""


def _spec(block: str = "{}"):
    return parse_spec(STUDY.format(block=block))


def test_same_block_twice_is_bitwise_identical() -> None:
    spec = _spec()
    b = blocks(spec)[3]
    r1, r2 = run_block(spec, b), run_block(spec, b)
    for name in r1.values:
        np.testing.assert_array_equal(r1.values[name], r2.values[name], err_msg=name)


def test_blocking_does_not_change_numbers() -> None:
    whole = _spec("{ spike = 2, activation = 2, replicate = 2 }")
    single = _spec()
    big = run_block(whole, blocks(whole)[0]).values
    for b in blocks(single):
        small = run_block(single, b).values
        for name, arr in small.items():
            lead = b.slices if arr.ndim >= len(b.slices) and name in (
                "eigval", "edge_emp", "n_outliers", "overlap", "align", "spike_emp", "detected") \
                else b.slices[:-1]
            np.testing.assert_array_equal(big[name][lead], arr, err_msg=name)


def test_common_random_numbers_across_spike_and_activation() -> None:
    """Layer 0 does not depend on the activation: same noise gives identical K_0 spectra."""
    spec = _spec("{ activation = 2 }")
    b = Block((0, 0, 0), (0, 0, 0), (1, 2, 1))  # spike 0.0, both activations, replicate 0
    vals = run_block(spec, b).values
    np.testing.assert_array_equal(vals["eigval"][0, 0, 0, 0], vals["eigval"][0, 1, 0, 0])
    # a different replicate draws different noise
    b1 = Block((0, 0, 1), (0, 0, 1), (1, 2, 2))
    other = run_block(spec, b1).values
    assert not np.array_equal(other["eigval"][0, 0, 0, 0], vals["eigval"][0, 0, 0, 0])


def test_theory_beside_measurement() -> None:
    """At theta = 2 (gamma0 = gamma1 = 0.5, tanh) the K_0 spike is 5.625, alignment 0.861 (THEORY §7)."""
    spec = _spec("{ spike = 2, replicate = 2 }")
    b = Block((0, 0, 0), (0, 0, 0), (2, 1, 2))  # tanh, both spikes, both replicates
    vals = run_block(spec, b).values
    assert vals["theory_spike"][1, 0, 0, 0] == pytest.approx(5.625, rel=1e-9)
    assert vals["theory_align"][1, 0, 0, 0] == pytest.approx(0.861111, abs=1e-6)
    assert vals["theory_valid"][1, 0] == 1
    assert np.isnan(vals["theory_spike"][0, 0, 0, 0])  # theta = 0: no spike
    # n = 160: location fluctuates ~ n^-1/2 ~ 8 %; 2 replicates -> allow 12 %
    measured = vals["spike_emp"][1, 0, :, 0, 0].mean()
    assert measured == pytest.approx(5.625, rel=0.12)
    assert (vals["detected"][1, 0, :, 0, 0] == 1).all()
    relu = run_block(spec, Block((0, 1, 0), (0, 1, 0), (2, 2, 2))).values
    assert (relu["theory_valid"] == 0).all()


def test_deep_training_axis_changes_hidden_layers_only() -> None:
    text = STUDY.format(block="{ lr = 2 }").replace('activation = ["tanh", "relu"]',
                                                   'activation = ["tanh"]\nlr = [0.0, 1.0]')
    spec = parse_spec(text)
    b = Block((1, 0, 0, 0), (1, 0, 0, 0), (2, 1, 2, 1))  # spike 2, tanh, lr 0 and 1, replicate 0
    vals = run_block(spec, b).values
    np.testing.assert_array_equal(vals["eigval"][0, 0, 0, 0, 0], vals["eigval"][0, 0, 1, 0, 0])
    assert not np.allclose(vals["eigval"][0, 0, 0, 0, 1], vals["eigval"][0, 0, 1, 0, 1])
    assert vals["theory_valid"][0, 0, 0] == 1 and vals["theory_valid"][0, 0, 1] == 0


def test_input_scale_scales_the_same_noise_and_leaves_the_theory() -> None:
    """s = 1.5 multiplies the shared noise: at θ = 0, K_0 = s² ZᵀZ exactly; theory flagged off."""
    text = STUDY.format(block="{ input_scale = 2 }").replace(
        'activation = ["tanh", "relu"]', 'activation = ["tanh"]\ninput_scale = [1.0, 1.5]')
    spec = parse_spec(text)
    b = Block((0, 0, 0, 0), (0, 0, 0, 0), (1, 1, 2, 1))  # spike 0, tanh, s = 1 and 1.5, rep 0
    vals = run_block(spec, b).values
    np.testing.assert_allclose(vals["eigval"][0, 0, 1, 0, 0], 2.25 * vals["eigval"][0, 0, 0, 0, 0],
                               rtol=1e-10)
    assert vals["theory_valid"][0, 0, 0] == 1 and vals["theory_valid"][0, 0, 1] == 0


ONE_STEP = """
[study]
name = "os"
experiment = "one-step"
seed = 2
replicates = 1
[fixed]
n = 200
input_ratio = 0.8
width_ratio = 1.2
activation = "erf"
teacher = "erf"
[axes]
lr = [0.5, 2.0]
[measure]
top_k = 4
[run]
block = { lr = 2 }
"""


def test_one_step_block_has_prediction_at_nominal_and_realised_size() -> None:
    spec = parse_spec(ONE_STEP)
    vals = run_block(spec, blocks(spec)[0]).values
    # eta = 2 (THEORY §7): theta1 = 2.502399, test-CK spike 8.353392, alignment 0.359360
    assert vals["theory_theta1"][1] == pytest.approx(2.502399, rel=1e-6)
    assert vals["theory_spike"][1, 0, 0] == pytest.approx(8.353392, rel=1e-6)
    assert vals["theory_align"][1, 0, 0] == pytest.approx(0.359360, rel=1e-5)
    assert np.isnan(vals["theory_spike"][0, 0, 0])  # eta = 0.5: theta1^4 < gamma0, no spike
    # realised rank-one size at n = 200: within a few n^-1/2 ~ 7 % of theta1
    assert vals["theta1_realised"][1, 0] == pytest.approx(2.502399, rel=0.25)
    assert np.isfinite(vals["theory_spike_realised"][1, 0, 0, 0])
    assert vals["loss_after"][1, 0] < vals["loss_before"][1, 0]
