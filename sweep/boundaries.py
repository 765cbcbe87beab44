"""The numbers behind the maps: detection probability, thresholds, the window, breakdown errors.

- :func:`detection_probability`: replicate mean of ``detected == 1`` (``-1`` = not run is ignored);
  the detector is empirical (an outlier separated from the measured bulk), it never uses theory.
- :func:`empirical_threshold`: along one axis (default the spike strength θ), where the detection
  probability crosses 1/2. Replicate means are noisy and not always monotone: the curve is first
  made monotone by weighted isotonic regression (pool-adjacent-violators, weights = replicates
  run), then the crossing is interpolated linearly between the two bracketing grid points (in log
  space on a geometric grid). Uncertainty: bootstrap over replicates, floored at half the
  bracketing grid step (the grid cannot place a crossing inside one cell better than that).
  Beside it: the theory's θ* and the finite-n window w_n (:func:`transition_window`), with the
  lag (θ_emp − θ*)/w_n.
- :func:`extra_outliers`: outliers no planted signal claims (uninformative ones), replicate mean.
- :func:`breakdown_error`: relative error of the replicate-mean spike location against theory
  (absolute error for squared alignments), only where ``theory_valid == 1`` and
  ``theory_survives == 1``; elsewhere a category says why there is no comparison.
- :func:`validity_boundary`: along one axis, where the (isotonic-fitted) error crosses ``tol``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from scipy.optimize import isotonic_regression

from sweep import figures
from sweep.cubeview import (
    fixed_params,
    is_numeric,
    require_vars,
    resolve_axis,
    select_signal,
    study_axes,
)

__all__ = [
    "METRICS",
    "METRIC_VARS",
    "available_metrics",
    "breakdown_error",
    "detection_probability",
    "empirical_threshold",
    "extra_outliers",
    "transition_window",
    "validity_boundary",
]

# metric -> (measured variable, theory variable, relative?, description)
METRIC_VARS: dict[str, tuple[str, str, bool, str]] = {
    "spike": ("spike_emp", "theory_spike", True,
              "relative error of spike location |mean spike_emp - theory_spike| / theory_spike"),
    "align": ("align", "theory_align", False,
              "absolute error of squared alignment |mean align - theory_align|"),
    "edge": ("edge_emp", "theory_edge", True,
             "relative error of bulk edge |mean edge_emp - theory_edge| / theory_edge"),
    "spike_realised": ("spike_emp", "theory_spike_realised", True,
                       "relative error of spike vs prediction at the realised rank-one size"),
    "align_realised": ("align", "theory_align_realised", False,
                       "absolute error of alignment vs prediction at the realised rank-one size"),
}
METRICS: dict[str, str] = {k: v[3] for k, v in METRIC_VARS.items()}


# ------------------------------------------------------------------- monotone fit, crossing


def _monotone(y: np.ndarray, w: np.ndarray, increasing: bool | None) -> tuple[np.ndarray, bool]:
    """Fit a weighted least-squares monotone curve (pool adjacent violators).

    In the given direction, or in the better-fitting one when ``increasing`` is None.
    """
    up = isotonic_regression(y, weights=w).x
    if increasing is True:
        return up, True
    down = isotonic_regression(y, weights=w, increasing=False).x
    if increasing is False:
        return down, False
    return (up, True) if np.sum(w * (y - up) ** 2) <= np.sum(w * (y - down) ** 2) else (down, False)


def _crossing(x: np.ndarray, g: np.ndarray, level: float, log: bool) -> tuple[float, int, float]:
    """First crossing of ``level`` by the non-decreasing ``g`` over ``x`` (any order).

    Returns (value, status, bracket width): status 0 crossing, -1 g > level everywhere,
    +1 g < level everywhere. Linear interpolation (in log x when ``log``). A run of points at
    exactly ``level`` (e.g. P = 1/2 with an even replicate count) crosses at the run's middle,
    with the bracket from the point before the run to the point after it, halved.
    """
    below, upto = int(np.sum(g < level)), int(np.sum(g <= level))  # prefixes: g is monotone
    t = (lambda v: np.log(v)) if log else (lambda v: v)
    back = (lambda v: float(np.exp(v))) if log else float
    if upto > below:
        mid = back((t(x[below]) + t(x[upto - 1])) / 2)
        lo, hi = x[max(below - 1, 0)], x[min(upto, g.size - 1)]
        return mid, 0, abs(hi - lo) / 2
    if below == 0:
        return np.nan, -1, np.nan
    if below == g.size:
        return np.nan, 1, np.nan
    x0, x1, g0, g1 = x[below - 1], x[below], g[below - 1], g[below]
    frac = (level - g0) / (g1 - g0)
    return back(t(x0) + frac * (t(x1) - t(x0))), 0, abs(x1 - x0)


def _threshold_1d(x: np.ndarray, hits: np.ndarray, count: np.ndarray, level: float,
                  increasing: bool | None, log: bool) -> tuple[float, int, float]:
    """Crossing of the detection rate ``hits / count`` (per grid point) at ``level``."""
    keep = count > 0
    if keep.sum() < 2:
        return np.nan, 2, np.nan
    g, up = _monotone(hits[keep] / count[keep], count[keep].astype(float), increasing)
    xs = x[keep] if up else x[keep][::-1]
    return _crossing(xs, g if up else g[::-1], level, log)


# ------------------------------------------------------------------------- computations


def detection_probability(cube: xr.Dataset, signal: Any = 0) -> xr.Dataset:
    """P(separated outlier) = mean over replicates of ``detected == 1``, ignoring ``-1``.

    Returns ``detect_prob`` and ``n_replicates`` (replicates that ran) over (axes..., layer).
    """
    require_vars(cube, ["detected"], "detection probability")
    det = select_signal(cube["detected"], signal)
    ran = det >= 0
    count = ran.sum("replicate")
    prob = (det == 1).where(ran).sum("replicate") / count.where(count > 0)
    prob.attrs = {"long_name": "detection probability of a separated outlier", "units": "1"}
    count.attrs = {"long_name": "replicates run", "units": "1"}
    return xr.Dataset({"detect_prob": prob, "n_replicates": count.astype("int16")})


def extra_outliers(cube: xr.Dataset) -> xr.DataArray:
    """Replicate mean of the outliers matched to no planted signal: n_outliers − Σ_i detected_i.

    Theory-free: an outlier whose eigenvector was not taken by any signal (greedy matching,
    :func:`kernels.observables.match_signals`) is uninformative, e.g. the all-ones direction a
    non-odd σ creates when inputs are off the unit sphere (THEORY §2). Replicates not run
    (``detected == -1``) are ignored.
    """
    require_vars(cube, ["n_outliers", "detected"], "extra outliers")
    if cube.attrs.get("experiment", "deep-ck") != "deep-ck":
        raise ValueError("extra outliers need signal matching, which only deep-ck cubes have "
                         f"(this cube: {cube.attrs.get('experiment')!r})")
    det, count = cube["detected"], cube["n_outliers"]
    ran = count >= 0
    if "signal" in det.dims:
        ran = ran & (det >= 0).all("signal")
    matched = (det == 1).sum("signal") if "signal" in det.dims else (det == 1)
    extra = (count - matched).where(ran).mean("replicate")
    extra.attrs = {"long_name": "outliers matched to no signal (replicate mean)", "units": "1"}
    return extra.rename("extra_outliers")


def _other_coords(da: xr.DataArray, others: list[str]) -> dict[str, Any]:
    coords: dict[str, Any] = {d: da[d] for d in others}
    coords.update({k: v for k, v in da.coords.items() if v.ndim == 0})
    return coords


def empirical_threshold(cube: xr.Dataset, along: str = "spike", signal: int = 0, *,
                        level: float = 0.5, n_boot: int = 200, seed: int = 0) -> xr.Dataset:
    """Where the detection probability crosses ``level`` along ``along``, per other setting.

    Estimate: isotonic fit of the replicate-mean detection (increasing in θ for ``spike``, the
    better-fitting direction otherwise), linear interpolation at ``level``. ``threshold_se`` is
    the bootstrap SE over replicates (``n_boot`` resamples, fixed ``seed``); ``threshold_err``
    = max(SE, bracketing step / 2). ``threshold_status``: 0 found, -1 detected everywhere on
    the grid (threshold below it), +1 nowhere (above it), 2 no data. ``theory_threshold`` is
    the cube's critical θ for ``spike``, else the crossing of ``theory_survives``.
    """
    along = resolve_axis(cube, along, "along")
    if along == "layer" or not is_numeric(cube, along):
        raise ValueError(f"along={along!r} must be a numeric study axis; valid: "
                         f"{', '.join(a for a in study_axes(cube) if is_numeric(cube, a))}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    require_vars(cube, ["detected"], "empirical threshold")
    det = select_signal(cube["detected"], signal)
    hits = (det == 1).astype(float).where(det >= 0)
    others = [str(d) for d in hits.dims if d not in (along, "replicate")]
    shape = tuple(hits.sizes[d] for d in others)
    arr = hits.transpose(*others, along, "replicate").values
    arr = arr.reshape(-1, *arr.shape[-2:])
    x = cube[along].values.astype(float)
    log = figures.is_geometric(x)
    increasing = True if along == "spike" else None
    boot = np.random.default_rng(seed).integers(0, arr.shape[-1], size=(n_boot, arr.shape[-1]))
    out = np.full((arr.shape[0], 4), np.nan)
    status = np.zeros(arr.shape[0], dtype=np.int8)
    count = np.zeros(arr.shape[0], dtype=np.int16)
    for s in range(arr.shape[0]):
        ran = np.isfinite(arr[s])
        n_ran = ran.sum(axis=1)
        value, st, step = _threshold_1d(x, np.nansum(arr[s], axis=1), n_ran, level,
                                        increasing, log)
        status[s], count[s] = st, n_ran[n_ran > 0].min() if n_ran.any() else 0
        if st != 0:
            continue
        hb = np.nansum(arr[s][:, boot], axis=2)  # (X, n_boot): detections per resample
        nb = ran[:, boot].sum(axis=2)
        b = np.array([_threshold_1d(x, hb[:, i], nb[:, i], level, increasing, log)[0]
                      for i in range(n_boot)])
        se = float(np.nanstd(b, ddof=1)) if np.isfinite(b).sum() > 1 else np.nan
        out[s] = value, se, step, np.nanmax([se, step / 2])
    coords = _other_coords(hits, others)
    units = str(cube[along].attrs.get("units", ""))

    def mk(v: np.ndarray, name: str, **attrs: Any) -> xr.DataArray:
        return xr.DataArray(v.reshape(shape), coords=coords, dims=others, name=name, attrs=attrs)

    ds = xr.Dataset({
        "threshold": mk(out[:, 0], "threshold", units=units,
                        long_name=f"empirical threshold in {along} (P(detect) = {level})"),
        "threshold_se": mk(out[:, 1], "threshold_se", units=units,
                           long_name="bootstrap standard error over replicates"),
        "threshold_step": mk(out[:, 2], "threshold_step", units=units,
                             long_name="width of the bracketing grid cell"),
        "threshold_err": mk(out[:, 3], "threshold_err", units=units,
                            long_name="uncertainty max(bootstrap SE, step/2)"),
        "threshold_status": mk(status, "threshold_status", long_name="threshold status",
                               flag_values=[-1, 0, 1, 2],
                               flag_meanings="below_grid found above_grid no_data"),
        "n_replicates": mk(count, "n_replicates", long_name="fewest replicates run at a point"),
    })
    ds["theory_threshold"] = _theory_crossing(cube, along, signal, ds["threshold"])
    if along == "spike" and cube.attrs.get("experiment", "deep-ck") == "deep-ck":
        ds["theory_window"] = transition_window(cube, ds["theory_threshold"])
        ds["lag"] = (ds["threshold"] - ds["theory_threshold"]) / ds["theory_window"]
        ds["lag"].attrs = {"long_name": "(empirical - theory threshold) / window w_n", "units": "1"}
    ds.attrs.update(along=along, level=level, n_boot=n_boot)
    return ds


def _scalar(v: Any) -> Any:
    """A plain Python value from a numpy scalar or 0-d array (object arrays hold str already)."""
    return v.item() if isinstance(v, np.ndarray | np.generic) else v


def transition_window(cube: xr.Dataset, template: xr.DataArray) -> xr.DataArray:
    """Finite-n window w_n of the transition in θ at each of ``template``'s cells (deep-ck).

    w_n = θ⁺ − θ*, where the predicted outlier at θ⁺ clears the edge by one Tracy–Widom scale
    (π C n)^{-2/3} (:func:`kernels.theory.critical_window`; ∝ n^{-1/3}, THEORY §6). Hidden
    widths all equal ``width_ratio``. NaN where ``template`` (the theory's θ*) is NaN.
    """
    from kernels.theory import critical_window
    from sweep.params import DEEP_CK

    fixed = fixed_params(cube)
    dims = [str(d) for d in template.dims]
    out = np.full(template.shape, np.nan)
    cache: dict[tuple[Any, ...], np.ndarray] = {}
    for idx in np.ndindex(*template.shape):
        if not np.isfinite(template.values[idx]):
            continue
        point = {**fixed, **{k: _scalar(v.values) for k, v in template.coords.items()
                              if v.ndim == 0},
                 **{d: _scalar(template[d].values[i]) for d, i in zip(dims, idx, strict=True)}}
        get = {k: point.get(k, DEEP_CK[k].default) for k in
               ("activation", "input_ratio", "width_ratio", "n", "input", "depth")}
        layer = int(point.get("layer", 0))
        depth = int(cube["layer"].max()) if get["depth"] is None else int(get["depth"])
        if get["n"] is None:
            continue
        key = (*get.values(), depth)
        if key not in cache:
            cache[key] = critical_window(str(get["activation"]), float(get["input_ratio"]),
                                         [float(get["width_ratio"])] * depth, int(get["n"]),
                                         str(get["input"]))
        out[idx] = cache[key][layer]
    return xr.DataArray(out, coords=template.coords, dims=template.dims, name="theory_window",
                        attrs={"long_name": "finite-n transition window w_n (one edge "
                                            "Tracy-Widom scale above the edge)",
                               "units": str(template.attrs.get("units", ""))})


def _theory_crossing(cube: xr.Dataset, along: str, signal: Any,
                     template: xr.DataArray) -> xr.DataArray:
    """Theory's critical value along ``along`` (NaN where the theory is not valid)."""
    if along == "spike" and "theory_threshold" in cube:
        th = cube["theory_threshold"]
        th = th.max(along, skipna=True) if along in th.dims else th  # constant along θ
    elif "theory_survives" in cube:
        surv = select_signal(cube["theory_survives"], signal).astype(float)
        others = [str(d) for d in surv.dims if d != along]
        arr = surv.transpose(*others, along).values.reshape(-1, surv.sizes[along])
        x = cube[along].values.astype(float)
        inc = True if along == "spike" else None
        vals = [_crossing(*_dir(x, arr[s], inc), 0.5, False)[0] for s in range(arr.shape[0])]
        th = xr.DataArray(np.reshape(vals, [surv.sizes[d] for d in others]),
                          coords={d: surv[d] for d in others}, dims=others)
    else:
        th = xr.DataArray(np.nan)
    if "theory_valid" in cube:
        valid = cube["theory_valid"]
        th = th.where(valid.max(along) == 1 if along in valid.dims else valid == 1)
    th = th.broadcast_like(template).transpose(*template.dims)
    th.attrs = {"long_name": f"theory critical {along} for an outlier at this layer",
                "units": str(cube[along].attrs.get("units", ""))}
    return th


def _dir(x: np.ndarray, y: np.ndarray, inc: bool | None) -> tuple[np.ndarray, np.ndarray]:
    g, up = _monotone(y, np.ones_like(y), inc)
    return (x, g) if up else (x[::-1], g[::-1])


def validity_boundary(err: xr.DataArray, tol: float, along: str) -> xr.DataArray:
    """Where ``err`` crosses ``tol`` along ``along``, per setting of the other dims.

    The error is fitted by an isotonic (monotone) curve in its better-fitting direction over the
    finite points (noise at the n^-1/2 scale would otherwise give spurious crossings), and the
    crossing is interpolated linearly (log x on a geometric grid). Coordinates: ``valid_side``
    +1 = theory holds at larger ``along`` (error falls), -1 = at smaller; ``boundary_status``
    0 crossing, 1 within tol everywhere, 2 nowhere, 3 fewer than two finite points.
    """
    if along not in err.dims:
        raise ValueError(f"along={along!r} is not a dimension of err; valid: "
                         f"{', '.join(str(d) for d in err.dims)}")
    if err[along].dtype.kind not in "iuf":
        raise ValueError(f"along={along!r} must be numeric to place a boundary on it")
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol}")
    others = [str(d) for d in err.dims if d != along]
    arr = err.transpose(*others, along).values.astype(float).reshape(-1, err.sizes[along])
    x = err[along].values.astype(float)
    log = figures.is_geometric(x)
    value = np.full(arr.shape[0], np.nan)
    status = np.full(arr.shape[0], 3, dtype=np.int8)
    side = np.zeros(arr.shape[0], dtype=np.int8)
    for s, e in enumerate(arr):
        ok = np.isfinite(e)
        if ok.sum() < 2:
            continue
        g, up = _monotone(e[ok], np.ones(ok.sum()), None)
        xs, gs = (x[ok], g) if up else (x[ok][::-1], g[::-1])
        value[s], st, _ = _crossing(xs, gs, tol, log)
        status[s] = {0: 0, 1: 1, -1: 2}[st]
        side[s] = -1 if up else 1
    shape = [err.sizes[d] for d in others]
    coords = _other_coords(err, others)
    coords["valid_side"] = (others, side.reshape(shape))
    coords["boundary_status"] = (others, status.reshape(shape))
    return xr.DataArray(value.reshape(shape), coords=coords, dims=others, name="boundary",
                        attrs={"long_name": f"validity boundary in {along} (error = tol)",
                               "units": str(err[along].attrs.get("units", "")),
                               "tol": tol, "along": along})


def breakdown_error(cube: xr.Dataset, metric: str = "spike", signal: Any = 0) -> xr.Dataset:
    """Error of the replicate-mean measurement against theory, with a category per cell.

    ``err`` = |mean measured − theory| / theory for locations, |mean − theory| for squared
    alignments (cube contract), only where ``theory_valid == 1`` and (spike, align metrics)
    ``theory_survives == 1``. ``category``: 0 compared, 1 theory not valid, 2 spike absorbed,
    3 not run / no value; ``err`` is NaN unless the category is 0.
    """
    if metric not in METRIC_VARS:
        raise ValueError(f"metric={metric!r} is unknown; valid metrics: "
                         f"{', '.join(available_metrics(cube)) or 'none in this cube'}")
    mvar, tvar, relative, desc = METRIC_VARS[metric]
    require_vars(cube, [mvar, tvar], f"metric {metric!r}",
             f" (metrics available here: {', '.join(available_metrics(cube))})")
    measured = select_signal(cube[mvar], signal).mean("replicate", skipna=True)
    predicted = select_signal(cube[tvar], signal)
    if "replicate" in predicted.dims:  # predictions at each replicate's realised rank-one size
        predicted = predicted.mean("replicate", skipna=True)
    diff = abs(measured - predicted)
    err = diff / abs(predicted) if relative else diff
    cat = xr.zeros_like(err, dtype=np.int8)
    cat = cat.where(np.isfinite(err), 3)
    if "theory_survives" in cube and metric != "edge":
        surv = select_signal(cube["theory_survives"], signal)
        cat = cat.where(surv != 0, 2).where(surv >= 0, 3)  # -1: theory not computed yet
    if "theory_valid" in cube:
        cat = cat.where(cube["theory_valid"] != 0, 1).where(cube["theory_valid"] >= 0, 3)
    cat = cat.astype(np.int8)
    cat.attrs = {"long_name": "comparison category", "flag_values": [0, 1, 2, 3],
                 "flag_meanings": "compared theory_not_valid spike_absorbed not_run"}
    err = err.where(cat == 0)
    err.attrs = {"long_name": desc, "units": "1"}
    measured.attrs = {**cube[mvar].attrs, "long_name": f"replicate mean of {mvar}"}
    return xr.Dataset({"err": err, "category": cat, "measured": measured,
                       "predicted": predicted}, attrs={"metric": metric})


def available_metrics(cube: xr.Dataset) -> list[str]:
    """Breakdown metrics whose measured and theory variables are both in ``cube``."""
    return [k for k, (m, t, *_) in METRIC_VARS.items() if m in cube and t in cube]
