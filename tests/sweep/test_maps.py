"""Maps: every kind writes its PNG and data with the expected dims; bad names are answered with
the valid ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from sweep.boundaries import breakdown_error, empirical_threshold, validity_boundary
from sweep.maps import MAP_KINDS, make_map
from tests.sweep.synthetic_cube import synthetic_cube

SPIKES = np.round(np.linspace(0.5, 3.0, 26), 10)  # grid step 0.1


@pytest.fixture(scope="module")
def small_deep() -> xr.Dataset:
    return synthetic_cube({"spike": SPIKES[::3], "width_ratio": [1.0, 2.0],
                           "activation": ["tanh", "relu"]}, layers=(0, 1), replicates=4,
                          hist_bins=24, fixed={"input_ratio": 2.0, "n": 400, "depth": 1}, top_k=2,
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
            assert set(back["extra_outliers"].dims) == dims
            window = back["theory_window"]  # the theory's, at n = 400: finite where valid
            assert bool(np.isfinite(window.sel(activation="tanh")).all())
            assert bool(window.sel(activation="relu").isnull().all())
            assert "lag" in back
        if kind == "spectrum":  # detected counts per replicate beside the theory's count
            assert set(back["n_outliers"].dims) == {"activation", "replicate", "layer"}
            assert set(back["theory_outliers"].dims) == {"activation", "layer"}
            assert "outliers_min" in out.table and "theory_outliers" in out.table
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
    with pytest.raises(ValueError, match="one-step-alignment needs a one-step cube; this one is "
                                         "'deep-ck'"):
        make_map(small_deep, "one-step-alignment", tmp_path)
    # bad input leaves no output folder behind (an existing one is kept)
    with pytest.raises(ValueError, match="valid axes"):
        make_map(small_deep, "phase", tmp_path / "new", x="widht")
    assert not (tmp_path / "new").exists() and tmp_path.exists()
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


def test_map_help_lists_every_kind() -> None:
    from typer.testing import CliRunner

    from sweep.cli import app

    out = CliRunner().invoke(app, ["map", "--help"], env={"COLUMNS": "100"})
    assert out.exit_code == 0
    assert all(kind in out.output for kind in MAP_KINDS), out.output
