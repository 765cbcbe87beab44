"""Maps: thresholds and validity boundaries recovered from cubes with a known truth; every kind
writes its PNG and data with the expected dims; bad names are answered with the valid ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from sweep.maps import (
    MAP_KINDS,
    breakdown_error,
    empirical_threshold,
    make_map,
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


@pytest.fixture(scope="module")
def small_deep() -> xr.Dataset:
    return synthetic_cube({"spike": SPIKES[::3], "width_ratio": [1.0, 2.0],
                           "activation": ["tanh", "relu"]}, layers=(0, 1), replicates=4,
                          hist_bins=24, fixed={"input_ratio": 2.0}, top_k=2,
                          spike_bias=lambda p: 0.03 * (p["layer"] + 1) / p["spike"])


@pytest.fixture(scope="module")
def small_one_step() -> xr.Dataset:
    return synthetic_cube({"lr": [0.5, 1.0, 2.0, 4.0], "n": [250, 1000],
                           "lr_scaling": [0.0, 0.5]}, layers=(1,), strength="lr",
                          experiment="one-step", threshold=lambda p: 0.7 + 0 * p["n"],
                          fixed={"width_ratio": 1.2, "activation": "erf"}, replicates=3,
                          align_bias=lambda p: 0.01 * p["lr"] ** 2)


EXPECTED = {  # kind -> (cube, main variable, its dims)
    "phase": ("deep", "detect_prob", {"spike", "width_ratio", "activation", "layer"}),
    "breakdown": ("deep", "err", {"spike", "width_ratio", "activation", "layer"}),
    "spectrum": ("deep", "hist", {"activation", "layer", "bin"}),
    "alignment-depth": ("deep", "align_mean", {"width_ratio", "activation", "layer"}),
    "one-step-alignment": ("one", "align_mean", {"lr", "n", "lr_scaling"}),
}


@pytest.mark.parametrize("kind", list(MAP_KINDS))
def test_each_kind_writes_png_and_data(kind: str, small_deep: xr.Dataset,
                                       small_one_step: xr.Dataset, tmp_path: Path) -> None:
    which, var, dims = EXPECTED[kind]
    cube = small_deep if which == "deep" else small_one_step
    out = make_map(cube, kind, tmp_path, density=None)
    assert out.pngs and all(p.exists() and p.stat().st_size > 10_000 for p in out.pngs)
    assert out.data_path.exists() and out.table.strip()
    with xr.open_dataset(out.data_path) as back:
        assert set(back[var].dims) == dims
        assert back.attrs["kind"] == kind
        if kind == "phase":
            assert set(back["threshold"].dims) == dims - {"spike"}
            assert "theory_threshold" in back
        if kind == "breakdown":
            assert set(back["boundary"].dims) == dims - {"spike"}
            assert set(np.unique(back["category"])) <= {0, 1, 2, 3}


def test_one_step_breakdown_and_phase_defaults(small_one_step: xr.Dataset,
                                               tmp_path: Path) -> None:
    out = make_map(small_one_step, "breakdown", tmp_path, metric="align_realised")
    assert out.data.attrs["x"] == "n" and out.data.attrs["y"] == "lr"
    ph = make_map(small_one_step, "phase", tmp_path)
    assert "lr" not in ph.data["threshold"].dims  # threshold placed along the lr axis
    assert np.allclose(ph.data["threshold"], 0.75, atol=0.5 * 0.5 + 1e-9)  # θ_c 0.7, cell 0.5..1


def test_extra_axes_give_one_png_each(tmp_path: Path) -> None:
    # y = layer, so rows = n and columns = input_ratio; width_ratio is left: one PNG per value
    cube = synthetic_cube({"spike": SPIKES[::5], "n": [500, 1000], "input_ratio": [1.0, 2.0],
                           "width_ratio": [1.0, 2.0]}, layers=(0, 1), replicates=2)
    out = make_map(cube, "phase", tmp_path, y="depth")
    assert {p.name for p in out.pngs} == {"phase_width_ratio=1.0.png",
                                          "phase_width_ratio=2.0.png"}
    assert set(out.data["detect_prob"].dims) == {"spike", "n", "input_ratio", "width_ratio",
                                                 "layer"}
    pinned = make_map(cube, "phase", tmp_path, y="layer", select={"width_ratio": 2.0})
    assert len(pinned.pngs) == 1 and float(pinned.data["width_ratio"]) == 2.0


def test_spectrum_draws_the_theory_bulk_density(tmp_path: Path) -> None:
    cube = synthetic_cube({"spike": [2.0]}, layers=(0, 1), replicates=2, hist_bins=30,
                          fixed={"input_ratio": 2.0, "width_ratio": 2.0, "activation": "tanh"})
    out = make_map(cube, "spectrum", tmp_path)
    rho = out.data["theory_density"]
    assert set(rho.dims) == {"layer", "x_density"}
    # a probability density (no atom at 0 when gamma = 0.5): mass 1 up to trapezoid error at
    # the square-root edges on the ~400-point plotting grid
    mass = rho.integrate("x_density")
    np.testing.assert_allclose(mass, 1.0, atol=0.01)
    assert "no theory density" not in out.table


def test_bad_names_list_the_valid_ones(small_deep: xr.Dataset, tmp_path: Path) -> None:
    cases = [
        (dict(kind="phse"), "valid kinds: phase, breakdown, spectrum"),
        (dict(kind="phase", x="widht"), "valid axes: spike, width_ratio, activation, layer"),
        (dict(kind="breakdown", y="n"), "valid axes: spike, width_ratio"),
        (dict(kind="breakdown", metric="loss"), "valid metrics: spike, align, edge"),
        (dict(kind="phase", select={"lr": 1.0}), "valid names: spike, width_ratio"),
        (dict(kind="phase", select={"activation": "gelu"}), "valid values: tanh, relu"),
        (dict(kind="phase", x="spike", y="spike"), "x and y must differ"),
        (dict(kind="breakdown", tol=-1.0), "tol must be a positive number"),
    ]
    for kwargs, needle in cases:
        kind = kwargs.pop("kind")
        with pytest.raises(ValueError, match=None) as exc:
            make_map(small_deep, kind, tmp_path, **kwargs)
        assert needle in str(exc.value), str(exc.value)
    fixed = synthetic_cube({"spike": SPIKES[::5]}, fixed={"n": 500}, layers=(0, 1))
    with pytest.raises(ValueError, match="n is fixed at 500"):
        make_map(fixed, "breakdown", tmp_path, x="n")
    no_hist = small_deep.drop_vars(["hist", "bin_lo", "bin_hi"])
    with pytest.raises(ValueError, match="histogram_bins > 0"):
        make_map(no_hist, "spectrum", tmp_path)
    with pytest.raises(ValueError, match="must be a numeric study axis"):
        empirical_threshold(small_deep, along="activation")
    with pytest.raises(ValueError, match="valid: spike, width_ratio"):
        validity_boundary(breakdown_error(small_deep)["err"], 0.05, "n")


def test_breakdown_defaults_and_pinned_layer(small_deep: xr.Dataset, tmp_path: Path) -> None:
    cube = synthetic_cube({"lr": [0.0, 0.5, 1.0], "width_ratio": [1.0, 2.0, 4.0]},
                          fixed={"spike": 2.0}, layers=(0, 1, 2), replicates=2, hist_bins=12)
    out = make_map(cube, "breakdown", tmp_path, select={"depth": 2})  # lr x width at layer 2
    assert (out.data.attrs["x"], out.data.attrs["y"]) == ("lr", "width_ratio")
    assert out.data["err"].sizes["layer"] == 1
    spec = make_map(cube, "spectrum", tmp_path, select={"layer": 1, "lr": 0.5}, density=None)
    assert spec.data["hist"].dims == ("layer", "bin") and int(spec.data["layer"][0]) == 1
