"""Boundaries: thresholds, windows and validity boundaries recovered from cubes with a known truth."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from kernels.theory import critical_window
from sweep.boundaries import (
    breakdown_error,
    empirical_threshold,
    extra_outliers,
    transition_window,
    validity_boundary,
)
from tests.sweep.synthetic_cube import synthetic_cube

SPIKES = np.round(np.linspace(0.5, 3.0, 26), 10)  # grid step 0.1
STEP = 0.1
WIDTHS = [0.5, 1.0, 2.0, 4.0]


def _theta_c(layer: xr.DataArray, width: xr.DataArray) -> xr.DataArray:
    return 0.8 + 0.3 * layer / np.sqrt(width)


@pytest.fixture(scope="module")
def phase_cube() -> xr.Dataset:
    # smear = one grid step: the finite-n smearing window (THEORY §6, O(n^-1/3)) spans a cell.
    return synthetic_cube({"spike": SPIKES, "width_ratio": WIDTHS,
                           "activation": ["tanh", "relu"]},
                          replicates=16, smear=STEP, seed=3)


def test_empirical_threshold_within_one_grid_step(phase_cube: xr.Dataset) -> None:
    th = empirical_threshold(phase_cube)
    truth = _theta_c(th["layer"], th["width_ratio"])
    assert set(th["threshold"].dims) == {"width_ratio", "activation", "layer"}
    assert (th["threshold_status"] == 0).all()
    # Each replicate's threshold is θ_c + 0.1 z: the median of 16 has sd ≈ 1.25·0.1/4 ≈ 0.03,
    # well inside the acceptance of one grid step (0.1).
    dev = abs(th["threshold"] - truth)
    assert float(dev.max()) <= STEP, dev.values
    assert 0.01 < float(dev.mean()) < 0.06  # it is an estimate, not a copy of the truth
    assert (th["threshold_err"] >= STEP / 2 - 1e-9).all() and (th["threshold_se"] > 0).all()
    # the theory's θ_c sits beside it where the theory is valid, NaN for ReLU
    np.testing.assert_allclose(th["theory_threshold"].sel(activation="tanh"),
                               truth.broadcast_like(th["theory_threshold"].sel(
                                   activation="tanh")))
    assert th["theory_threshold"].sel(activation="relu").isnull().all()


def test_empirical_threshold_ignores_replicates_not_run() -> None:
    cube = synthetic_cube({"spike": SPIKES, "width_ratio": [1.0]}, replicates=16, smear=STEP,
                          seed=5, not_run=[{"replicate": r} for r in range(10)])
    assert int((cube["detected"] == -1).sum()) > 0
    th = empirical_threshold(cube)
    assert (th["n_replicates"] == 6).all()
    # -1 (not run) is neither a detection nor a miss: same estimate as the 6 that ran
    ran = empirical_threshold(cube.isel(replicate=slice(10, 16)))
    np.testing.assert_allclose(th["threshold"], ran["threshold"], rtol=0, atol=1e-12)
    # points where no replicate ran (θ = 1.1, 1.2, 1.3) are skipped, not read as "not
    # detected": the crossings at 1.1 and 1.4 are bracketed by the cell 1.0..1.4, whose width
    # is reported, and the estimate stays within that (effective) grid step
    holes = synthetic_cube({"spike": SPIKES, "width_ratio": [1.0]}, replicates=16, smear=STEP,
                           seed=5, not_run=[{"spike": i} for i in (6, 7, 8)])
    th_h = empirical_threshold(holes).squeeze("width_ratio")
    truth = _theta_c(th_h["layer"], 1.0)
    np.testing.assert_allclose(th_h["threshold_step"].sel(layer=[1, 2]), 0.4, atol=1e-9)
    assert (abs(th_h["threshold"] - truth) <= th_h["threshold_step"]).all()
    assert float(abs(th_h["threshold"] - truth).sel(layer=0)) <= STEP


def test_threshold_off_the_grid_is_flagged_not_invented() -> None:
    cube = synthetic_cube({"spike": SPIKES[:8]}, smear=0.0,  # spike grid 0.5..1.2
                          threshold=lambda p: 0.3 + 0.6 * p["layer"] + 0 * p["spike"])
    th = empirical_threshold(cube)  # truths 0.3 (below grid), 0.9 (inside), 1.5 (above)
    assert th["threshold_status"].values.tolist() == [-1, 0, 1]
    assert np.isnan(th["threshold"].values[[0, 2]]).all()
    assert abs(float(th["threshold"][1]) - 0.9) <= STEP


def test_threshold_along_a_geometric_axis() -> None:
    # At θ = 1.4 an outlier appears at layer 1 once w > (0.3/0.6)² = 0.25, at layer 2 once
    # w > 1; detection rises with width: the direction is found from the data.
    widths = [0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
    cube = synthetic_cube({"width_ratio": widths, "spike": [1.4]}, replicates=16,
                          smear=0.02, seed=2)
    th = empirical_threshold(cube, along="width_ratio").squeeze("spike")
    for layer, w_star in ((1, 0.25), (2, 1.0)):
        t = float(th["threshold"].sel(layer=layer))
        assert w_star / 2 <= t <= w_star * 2, (layer, t)  # within one (factor-2) grid step


def _bracket_ok(value: float, truth: float, grid: list[float]) -> bool:
    """Value within one grid step of the truth: inside the grid cells next to the truth's."""
    g = np.asarray(grid, float)
    j = int(np.searchsorted(g, truth))  # g[j-1] < truth <= g[j]
    lo, hi = g[max(j - 2, 0)], g[min(j + 1, g.size - 1)]
    return lo <= value <= hi


def test_validity_boundary_along_n_recovers_known_boundary() -> None:
    # relative spike error c (layer+1)/sqrt(n): the theory holds (5 %) for n >= (20 c (l+1))².
    ns = [250, 500, 1000, 2000, 4000, 8000]
    c = 1.0
    cube = synthetic_cube({"n": ns, "spike": [2.5]}, layers=(0, 1, 2, 3, 4),
                          spike_bias=lambda p: c * (p["layer"] + 1) / np.sqrt(p["n"]))
    err = breakdown_error(cube, "spike")["err"]
    b = validity_boundary(err, 0.05, "n")
    assert b.dims == ("spike", "layer")
    b = b.squeeze("spike")
    for layer in range(5):
        n_star = (c * (layer + 1) / 0.05) ** 2  # 400, 1600, 3600, 6400, 10000
        st = int(b["boundary_status"].sel(layer=layer))
        if n_star > ns[-1]:
            assert st == 2  # nowhere valid on this grid
            continue
        assert st == 0 and int(b["valid_side"].sel(layer=layer)) == 1
        val = float(b.sel(layer=layer))
        assert _bracket_ok(val, n_star, ns), (layer, val, n_star)
        assert abs(np.log(val / n_star)) < np.log(2) / 2  # log interpolation: much closer


def test_validity_boundary_along_lr_in_one_step_cube() -> None:
    # absolute alignment error kappa lr² (large steps break the Gaussian-equivalent picture)
    lrs = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0]
    kappas = [0.005, 0.02]
    cube = synthetic_cube({"lr": lrs, "n": [500, 1000]}, layers=(1,), strength="lr",
                          experiment="one-step", threshold=lambda p: 0.2 + 0 * p["n"],
                          align_bias=lambda p: xr.where(p["n"] > 700, kappas[1], kappas[0])
                          * p["lr"] ** 2, replicates=4)
    out = breakdown_error(cube, "align")
    b = validity_boundary(out["err"], 0.05, "lr").squeeze("layer")
    for n, kappa in zip((500, 1000), kappas, strict=True):
        lr_star = np.sqrt(0.05 / kappa)  # 3.16, 1.58
        assert int(b["valid_side"].sel(n=n)) == -1
        assert _bracket_ok(float(b.sel(n=n)), lr_star, lrs)
        assert abs(float(b.sel(n=n)) - lr_star) < 0.1  # err is smooth: interpolation is close


def test_validity_boundary_with_noise_and_empty_slices() -> None:
    rng = np.random.default_rng(0)
    n = np.array([125, 250, 500, 1000, 2000, 4000, 8000], float)
    amp = np.array([1.0, 2.0, np.nan])
    # n^-1/2 fluctuations of 10 % of the error itself
    e = amp[:, None] / np.sqrt(n) * (1 + 0.1 * rng.standard_normal((3, n.size)))
    err = xr.DataArray(e, dims=("case", "n"), coords={"case": [0, 1, 2], "n": n})
    b = validity_boundary(err, 0.05, "n")
    for case in (0, 1):
        assert _bracket_ok(float(b[case]), (amp[case] / 0.05) ** 2, list(n))
    assert int(b["boundary_status"][2]) == 3 and np.isnan(float(b[2]))


def test_breakdown_categories_are_not_errors() -> None:
    cube = synthetic_cube({"spike": [0.6, 1.5, 2.5], "activation": ["tanh", "relu"]},
                          not_run=[{"spike": 2}])
    out = breakdown_error(cube, "spike")
    cat, err = out["category"], out["err"]
    assert (cat.sel(activation="relu") == 1).all()  # theory not valid
    tanh = cat.sel(activation="tanh")
    # θ = 0.6 is below every θ_c (0.8, 1.1, 1.4): absorbed; 1.5 survives all; 2.5 not run
    assert (tanh.sel(spike=0.6) == 2).all()
    assert (tanh.sel(spike=1.5) == 0).all()
    assert (tanh.sel(spike=2.5) == 3).all()
    assert np.isfinite(err.where(cat == 0)).sum() == int((cat == 0).sum())
    assert err.where(cat != 0).isnull().all()
    # the synthetic measurement is the theory ± antithetic noise: replicate mean exact
    np.testing.assert_allclose(err.sel(activation="tanh", spike=1.5), 0.0, atol=1e-12)


def test_window_and_lag_come_from_each_points_parameters() -> None:
    """w_n is the theory's window at the point's own (activation, ratios, n, depth, layer)."""
    cube = synthetic_cube({"spike": SPIKES, "n": [250, 2000], "activation": ["tanh", "relu"]},
                          fixed={"input_ratio": 2.0, "width_ratio": 2.0, "depth": 2},
                          replicates=8, smear=STEP, seed=4)
    th = empirical_threshold(cube)
    for n in (250, 2000):
        np.testing.assert_allclose(th["theory_window"].sel(activation="tanh", n=n),
                                   critical_window("tanh", 2.0, [2.0, 2.0], n), rtol=1e-12)
    assert th["theory_window"].sel(activation="relu").isnull().all()  # theory not valid there
    np.testing.assert_allclose(th["lag"], (th["threshold"] - th["theory_threshold"])
                               / th["theory_window"])
    w = transition_window(cube, th["theory_threshold"])
    assert w.dims == th["theory_threshold"].dims


def test_extra_outliers_counts_only_outliers_no_signal_claims() -> None:
    cube = synthetic_cube({"spike": [0.6, 1.5, 2.5], "activation": ["tanh", "relu"]},
                          replicates=4, not_run=[{"replicate": 3}])
    assert float(extra_outliers(cube).max()) == 0.0  # every synthetic outlier is the signal's
    relu = cube["activation"] == "relu"
    # an uninformative outlier for relu in replicates 0-1, two of them in replicate 2
    bump = xr.where(relu, xr.DataArray([1, 1, 2, 0], dims="replicate"), 0)
    cube["n_outliers"] = (cube["n_outliers"] + bump).where(cube["n_outliers"] >= 0, -1)
    extra = extra_outliers(cube)
    np.testing.assert_allclose(extra.sel(activation="relu"), 4 / 3)  # replicate 3 did not run
    np.testing.assert_allclose(extra.sel(activation="tanh"), 0.0)
    one_step = synthetic_cube({"lr": [0.5, 1.0]}, layers=(1,), strength="lr",
                              experiment="one-step", threshold=lambda p: 0.7 + 0 * p["lr"],
                              fixed={"n": 200})
    with pytest.raises(ValueError, match="deep-ck"):
        extra_outliers(one_step)  # one-step 'detected' is n_outliers >= 1, nothing is matched


def test_a_run_at_exactly_one_half_crosses_at_its_middle() -> None:
    # Two replicates: P = 1/2 on a run of grid points is the crossing itself, not its right end.
    from sweep.boundaries import _crossing

    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert _crossing(x, np.array([0, 0, 0.5, 0.5, 0.5, 1]), 0.5, False) == (4.0, 0, 2.0)
    assert _crossing(x, np.array([0, 0, 0, 0.5, 1, 1]), 0.5, False) == (4.0, 0, 1.0)
    # P reaches 1/2 at the last point: found there, not "beyond the grid"
    assert _crossing(x, np.array([0, 0, 0, 0, 0, 0.5]), 0.5, False)[:2] == (6.0, 0)
    value, status, _ = _crossing(np.array([1.0, 2.0, 4.0]), np.array([0, 0.5, 0.5]), 0.5, True)
    assert status == 0 and value == pytest.approx(np.sqrt(8.0))  # geometric middle of 2 and 4
    assert _crossing(x, np.array([0, 0, 0.2, 0.4, 0.8, 1]), 0.5, False)[:2] == (
        pytest.approx(4.25), 0)  # between 0.4 and 0.8, as before
    # through empirical_threshold: replicates split 1/1 at θ = 1.0, 1.1, 1.2, none below, all above
    cube = synthetic_cube({"spike": SPIKES[:12]}, replicates=2, smear=0.0, layers=(0,))
    det = cube["detected"].values  # (spike, replicate, layer, signal)
    det[:] = 0
    det[5:8, 0] = 1
    det[8:] = 1
    th = empirical_threshold(cube.assign(detected=(cube["detected"].dims, det)))
    assert float(th["threshold"].squeeze()) == pytest.approx(1.1)
    assert int(th["threshold_status"].squeeze()) == 0
