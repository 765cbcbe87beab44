"""Finite-size scaling: the n -> inf threshold recovered from thresholds with a known n^-1/3 lag."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from sweep.boundaries import empirical_threshold
from sweep.maps import make_map
from sweep.scaling import MIN_POINTS, extrapolate_threshold
from tests.sweep.synthetic_cube import synthetic_cube

NS = [250, 500, 1000, 2000]


def _thresholds(value: np.ndarray, err: np.ndarray, status: np.ndarray | None = None,
                theory: float | None = None) -> xr.Dataset:
    """An empirical_threshold-shaped dataset over (case, n)."""
    dims = ("case", "n")
    coords = {"case": np.arange(value.shape[0]), "n": NS}
    ds = xr.Dataset({
        "threshold": (dims, value), "threshold_err": (dims, err),
        "threshold_status": (dims, np.zeros(value.shape, np.int8) if status is None else status),
    }, coords=coords)
    if theory is not None:
        ds["theory_threshold"] = xr.full_like(ds["threshold"], theory)
    return ds


def test_exact_scaling_is_recovered_exactly() -> None:
    # θ(n) = 0.84 + 2.2 n^(-1/3) with no noise: the weighted fit is exact whatever the errors
    x = np.asarray(NS, float) ** (-1 / 3)
    value = np.stack([0.84 + 2.2 * x, 1.38 + 4.0 * x])
    err = np.array([[0.04, 0.03, 0.02, 0.02], [0.1, 0.05, 0.05, 0.01]])
    out = extrapolate_threshold(_thresholds(value, err, theory=0.84))
    np.testing.assert_allclose(out["threshold_inf"], [0.84, 1.38], rtol=0, atol=1e-12)
    np.testing.assert_allclose(out["scaling_amplitude"], [2.2, 4.0], rtol=0, atol=1e-11)
    np.testing.assert_allclose(out["fit_chi2_dof"], 0.0, atol=1e-18)
    assert (out["fit_points"] == 4).all()
    # χ²/dof = 0 never deflates the error: SE is the covariance one, √((XᵀWX)⁻¹)₀₀
    w = 1 / err[0] ** 2
    design = np.stack([np.ones(4), x], axis=1)
    se = np.sqrt(np.linalg.inv(design.T @ (w[:, None] * design))[0, 0])
    assert float(out["threshold_inf_se"][0]) == pytest.approx(se, rel=1e-12)
    assert float(out["theory_z"][0]) == pytest.approx(0.0, abs=1e-9)


def test_scatter_beyond_the_errors_inflates_the_se() -> None:
    x = np.asarray(NS, float) ** (-1 / 3)
    wiggle = np.array([1.0, -1.0, -1.0, 1.0])  # a zig-zag no line a + b x can follow
    value = (0.9 + x + 0.05 * wiggle)[None, :]
    tight = extrapolate_threshold(_thresholds(value, np.full((1, 4), 0.01))).squeeze("case")
    loose = extrapolate_threshold(_thresholds(value, np.full((1, 4), 0.2))).squeeze("case")
    assert float(tight["fit_chi2_dof"]) > 1 > float(loose["fit_chi2_dof"])
    # tight errors but large scatter: the SE is the scatter's (Birge ratio), not 0.01-sized
    design = np.stack([np.ones(4), x], axis=1)
    cov = np.linalg.inv(design.T @ design) * 0.01**2
    assert float(tight["threshold_inf_se"]) == pytest.approx(
        np.sqrt(cov[0, 0] * float(tight["fit_chi2_dof"])), rel=1e-10)
    assert float(tight["threshold_inf"]) == pytest.approx(float(loose["threshold_inf"]), abs=1e-12)


def test_too_few_sizes_on_the_grid_give_nan() -> None:
    x = np.asarray(NS, float) ** (-1 / 3)
    value = np.stack([0.8 + x] * 2)
    status = np.array([[0, 0, 1, 1], [0, 0, 0, -1]], np.int8)  # thresholds beyond the grid
    out = extrapolate_threshold(_thresholds(value, np.full((2, 4), 0.02), status))
    assert out["fit_points"].values.tolist() == [2, 3]
    assert MIN_POINTS == 3 and np.isnan(float(out["threshold_inf"][0]))
    assert float(out["threshold_inf"][1]) == pytest.approx(0.8, abs=1e-12)
    with pytest.raises(ValueError, match="along='width_ratio'.*valid: case, n"):
        extrapolate_threshold(_thresholds(value, np.full((2, 4), 0.02)), along="width_ratio")


def test_extrapolation_from_simulated_detections_recovers_the_limit(tmp_path: Path) -> None:
    # Replicate thresholds θ_c(n) + 0.03 z with θ_c(n) = θ_inf + 2 n^(-1/3) (the lag of a
    # finite-n detector), 24 replicates on a 0.02 grid: each P = 1/2 crossing is within about
    # 1.25·0.03/√24 ≈ 0.008 of θ_c(n) (errors floored at half a step, 0.01), and the intercept's
    # SE is about 3 times that. Assert |θ_∞ − θ_inf| < 0.06 (about 2 SE at the floor).
    spikes = np.round(np.arange(0.7, 2.0, 0.02), 10)
    theta_inf = 0.8 + 0.3 * xr.DataArray([0, 1, 2], dims="layer")

    def truth(p: dict) -> xr.DataArray:
        return 0.8 + 0.3 * p["layer"] + 2.0 * p["n"] ** (-1 / 3) + 0 * p["spike"]

    cube = synthetic_cube({"n": NS, "spike": spikes}, replicates=24, smear=0.03, seed=7,
                          threshold=truth, fixed={"input_ratio": 2.0, "width_ratio": 2.0,
                                                  "depth": 2})
    cube["theory_threshold"] = (theta_inf + 0 * cube["theory_threshold"]).transpose(
        *cube["theory_threshold"].dims)  # the limit θ*, the same at every n (as in real cubes)
    out = extrapolate_threshold(empirical_threshold(cube))
    dev = abs(out["threshold_inf"] - theta_inf)
    assert float(dev.max()) < 0.06, dev.values
    assert (out["threshold_inf_se"] > 0.005).all() and (out["threshold_inf_se"] < 0.05).all()
    np.testing.assert_allclose(out["scaling_amplitude"], 2.0, atol=0.6)
    assert (abs(out["theory_z"]) < 3).all()
    # the phase map over (spike, n) carries the same fit, prints it and draws it
    m = make_map(cube, "phase", tmp_path, x="spike", y="n")
    np.testing.assert_allclose(m.data["threshold_inf"], out["threshold_inf"], rtol=0, atol=1e-12)
    assert "finite-size scaling" in m.table and "threshold_inf" in m.table
    with xr.open_dataset(m.data_path) as back:
        assert set(back["threshold_inf"].dims) == {"layer"}
