"""Maps of a result cube: where the BBP-type transition sits and where the theory holds.

Four computations, each on the cube contract (notes: cube_schema) and each returned as xarray:

- :func:`detection_probability`: replicate mean of ``detected == 1`` (``-1`` = not run is ignored);
  the detector is empirical (an outlier separated from the measured bulk), it never uses theory.
- :func:`empirical_threshold`: along one axis (default the spike strength θ), where the detection
  probability crosses 1/2. Finite-n transitions are smeared over O(n^-1/3) (THEORY §6), so
  replicate means are noisy and not always monotone: the curve is first made monotone by
  weighted isotonic regression (pool-adjacent-violators, weights = replicates run), then the
  crossing is interpolated linearly between the two bracketing grid points (in log space on a
  geometric grid). Uncertainty: bootstrap over replicates, floored at half the bracketing grid
  step (the grid cannot place a crossing inside one cell better than that).
- :func:`breakdown_error`: relative error of the replicate-mean spike location against theory
  (absolute error for squared alignments), only where ``theory_valid == 1`` and
  ``theory_survives == 1``; elsewhere a category says why there is no comparison.
- :func:`validity_boundary`: along one axis, where the (isotonic-fitted) error crosses ``tol``.

:func:`make_map` draws one of :data:`MAP_KINDS` into PNG files (via :mod:`sweep.figures`), writes
its data as netCDF and returns a short text table. Facets: rows = ``layer``, columns =
``activation`` (when they vary and are not plot axes); any further varying axis gives one PNG per
value for the phase and breakdown maps, and is pinned (unless ``select`` pins it) for the
spectrum and curve figures: at its middle grid value, except the spike strength of the
alignment-vs-depth figure (its largest value, the signal that survives deepest). Nothing is
averaged over an axis.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from scipy.optimize import isotonic_regression

from sweep import figures

__all__ = [
    "MAP_KINDS",
    "METRICS",
    "DensityFn",
    "MapOutput",
    "breakdown_error",
    "detection_probability",
    "empirical_threshold",
    "make_map",
    "map_axes",
    "theory_density",
    "validity_boundary",
]

MAP_KINDS: dict[str, str] = {
    "phase": "detection probability of a separated outlier over two axes (default spike x "
             "width_ratio), theory threshold curve and empirical P=1/2 thresholds",
    "breakdown": "error of measured vs predicted spike location or alignment over two axes, "
                 "validity boundary at --tol; invalid-theory and absorbed cells hatched",
    "spectrum": "spectrum histogram per layer with theory bulk edge (and density) and spike "
                "locations (needs histograms in the cube)",
    "alignment-depth": "squared alignment vs layer for several widths: replicate mean +- sd "
                       "and theory curves",
    "one-step-alignment": "one-step squared label alignment vs learning rate eta for several n: "
                          "replicate mean +- sd and theory curves",
}

# metric -> (measured variable, theory variable, relative?, description)
_METRIC_VARS: dict[str, tuple[str, str, bool, str]] = {
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
METRICS: dict[str, str] = {k: v[3] for k, v in _METRIC_VARS.items()}
_METRIC_TITLES = {"spike": "spike location (relative error)",
                  "align": "squared alignment (absolute error)",
                  "edge": "bulk edge (relative error)",
                  "spike_realised": "spike at realised rank-one size (relative error)",
                  "align_realised": "alignment at realised rank-one size (absolute error)"}

_NON_AXIS_DIMS = ("replicate", "layer", "k", "signal", "bin")
_ALIASES = {"depth": "layer", "theta": "spike", "width": "width_ratio", "eta": "lr"}
_BREAKDOWN_X = ("n", "lr", "spike", "N", "width_ratio", "input_ratio", "steps", "noise")
_MAX_PAGES, _MAX_PANELS = 24, 64

# (point parameters, layer, eigenvalue grid) -> theory bulk density on that grid (None: no theory)
DensityFn = Callable[[Mapping[str, Any], int, np.ndarray], np.ndarray | None]


@dataclass
class MapOutput:
    """What one map produced: figure files, its data (also written to ``data_path``), a table."""

    pngs: list[Path]
    data: xr.Dataset
    data_path: Path
    table: str


# ----------------------------------------------------------------------------- cube helpers


def study_axes(cube: xr.Dataset) -> list[str]:
    """Return the study's grid axes in study order (dims of ``status`` minus ``replicate``)."""
    ref = cube["status"].dims if "status" in cube else tuple(cube.dims)
    return [str(d) for d in ref if d not in _NON_AXIS_DIMS]


def map_axes(cube: xr.Dataset) -> list[str]:
    """Names usable as map axes: the study axes plus ``layer`` (alias ``depth``)."""
    return study_axes(cube) + (["layer"] if "layer" in cube.dims else [])


def _fixed(cube: xr.Dataset) -> dict[str, Any]:
    raw = cube.attrs.get("fixed", "{}")
    return json.loads(raw) if isinstance(raw, str) and raw else dict(raw or {})


def param(cube: xr.Dataset, name: str) -> Any:
    """Return a parameter: its coordinate when it is an axis, else the fixed scalar."""
    if name in cube.coords:
        return cube[name]
    fixed = _fixed(cube)
    if name in fixed:
        return fixed[name]
    raise KeyError(name)


def _resolve_axis(cube: xr.Dataset, name: str, role: str) -> str:
    dim = _ALIASES.get(name, name)
    valid = map_axes(cube)
    if dim in valid:
        return dim
    fixed = _fixed(cube)
    hint = f" ({name} is fixed at {fixed[dim]!r} in this study)" if dim in fixed else ""
    raise ValueError(f"{role}={name!r} is not an axis of this cube{hint}; "
                     f"valid axes: {', '.join(valid)}")


def _varying(cube: xr.Dataset) -> list[str]:
    return [a for a in map_axes(cube) if cube.sizes[a] > 1]


def _numeric(cube: xr.Dataset, dim: str) -> bool:
    return cube[dim].dtype.kind in "iuf"


def _match_index(coord: xr.DataArray, value: Any, key: str) -> int:
    vals = coord.values
    if vals.dtype.kind in "iuf":
        try:
            v = float(value)
        except (TypeError, ValueError):
            v = np.nan
        idx = int(np.nanargmin(np.abs(vals - v))) if np.isfinite(v) else -1
        if idx >= 0 and np.isclose(vals[idx], v, rtol=1e-9, atol=1e-12):
            return idx
    else:
        hits = [i for i, c in enumerate(vals) if str(c) == str(value)]
        if hits:
            return hits[0]
    raise ValueError(f"select: {key}={value!r} is not on the grid; "
                     f"valid values: {', '.join(str(v) for v in vals)}")


def _apply_select(cube: xr.Dataset, select: Mapping[str, Any]) -> tuple[xr.Dataset, Any]:
    """Apply ``select`` (axis -> value or list of values); return the cube and the signal."""
    signal = cube["signal"].values[0] if "signal" in cube.dims else 0
    valid = map_axes(cube) + (["signal"] if "signal" in cube.dims else [])
    for key, value in select.items():
        dim = _ALIASES.get(key, key)
        if dim not in valid:
            raise ValueError(f"select: {key!r} is not an axis of this cube; "
                             f"valid names: {', '.join(valid)}")
        # a pinned layer stays a (length-1) dimension: every kind indexes layers by coordinate
        many = isinstance(value, (list, tuple)) or dim == "layer"
        values = value if isinstance(value, (list, tuple)) else [value]
        idx = [_match_index(cube[dim], v, dim) for v in values]
        if dim == "signal":
            signal = cube["signal"].values[idx[0]]
        else:
            cube = cube.isel({dim: idx if many else idx[0]})
    return cube, signal


def _signal(da: xr.DataArray, signal: Any) -> xr.DataArray:
    if "signal" not in da.dims:
        return da
    if signal not in list(da["signal"].values):
        raise ValueError(f"signal={signal!r} is not in the cube; valid signals: "
                         f"{', '.join(str(s) for s in da['signal'].values)}")
    return da.sel(signal=signal)


def _require(cube: xr.Dataset, names: list[str], what: str, hint: str = "") -> None:
    missing = [n for n in names if n not in cube]
    if missing:
        raise ValueError(f"{what} needs variable(s) {', '.join(missing)}{hint}; this cube has: "
                         f"{', '.join(sorted(str(v) for v in cube.data_vars))}")


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
    +1 g <= level everywhere. Linear interpolation (in log x when ``log``).
    """
    k = int(np.sum(g <= level))  # g is monotone: the points <= level form a prefix
    if k == 0:
        return np.nan, -1, np.nan
    if k == g.size:
        return np.nan, 1, np.nan
    x0, x1, g0, g1 = x[k - 1], x[k], g[k - 1], g[k]
    t = (level - g0) / (g1 - g0)
    if log:
        return float(np.exp(np.log(x0) + t * (np.log(x1) - np.log(x0)))), 0, abs(x1 - x0)
    return float(x0 + t * (x1 - x0)), 0, abs(x1 - x0)


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
    _require(cube, ["detected"], "detection probability")
    det = _signal(cube["detected"], signal)
    ran = det >= 0
    count = ran.sum("replicate")
    prob = (det == 1).where(ran).sum("replicate") / count.where(count > 0)
    prob.attrs = {"long_name": "detection probability of a separated outlier", "units": "1"}
    count.attrs = {"long_name": "replicates run", "units": "1"}
    return xr.Dataset({"detect_prob": prob, "n_replicates": count.astype("int16")})


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
    along = _resolve_axis(cube, along, "along")
    if along == "layer" or not _numeric(cube, along):
        raise ValueError(f"along={along!r} must be a numeric study axis; valid: "
                         f"{', '.join(a for a in study_axes(cube) if _numeric(cube, a))}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    _require(cube, ["detected"], "empirical threshold")
    det = _signal(cube["detected"], signal)
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
    ds.attrs.update(along=along, level=level, n_boot=n_boot)
    return ds


def _theory_crossing(cube: xr.Dataset, along: str, signal: Any,
                     template: xr.DataArray) -> xr.DataArray:
    """Theory's critical value along ``along`` (NaN where the theory is not valid)."""
    if along == "spike" and "theory_threshold" in cube:
        th = cube["theory_threshold"]
        th = th.max(along, skipna=True) if along in th.dims else th  # constant along θ
    elif "theory_survives" in cube:
        surv = _signal(cube["theory_survives"], signal).astype(float)
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
    if metric not in _METRIC_VARS:
        raise ValueError(f"metric={metric!r} is unknown; valid metrics: "
                         f"{', '.join(available_metrics(cube)) or 'none in this cube'}")
    mvar, tvar, relative, desc = _METRIC_VARS[metric]
    _require(cube, [mvar, tvar], f"metric {metric!r}",
             f" (metrics available here: {', '.join(available_metrics(cube))})")
    measured = _signal(cube[mvar], signal).mean("replicate", skipna=True)
    predicted = _signal(cube[tvar], signal)
    if "replicate" in predicted.dims:  # predictions at each replicate's realised rank-one size
        predicted = predicted.mean("replicate", skipna=True)
    diff = abs(measured - predicted)
    err = diff / abs(predicted) if relative else diff
    cat = xr.zeros_like(err, dtype=np.int8)
    cat = cat.where(np.isfinite(err), 3)
    if "theory_survives" in cube and metric != "edge":
        surv = _signal(cube["theory_survives"], signal)
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
    return [k for k, (m, t, *_) in _METRIC_VARS.items() if m in cube and t in cube]


# ------------------------------------------------------------------------------ map kinds


def _facets(da: xr.DataArray, x: str, y: str | None) -> tuple[str | None, str | None, list[str]]:
    """Rows = layer, columns = activation when they vary; other varying dims become pages."""
    cands = [str(d) for d in da.dims if d not in (x, y) and da.sizes[d] > 1]
    row = "layer" if "layer" in cands else None
    col = "activation" if "activation" in cands else None
    rest = [d for d in cands if d not in (row, col)]
    if row is None and rest:
        row = rest.pop(0)
    if col is None and rest:
        col = rest.pop(0)
    n_pages = int(np.prod([da.sizes[d] for d in rest])) if rest else 1
    panels = (da.sizes[row] if row else 1) * (da.sizes[col] if col else 1)
    if n_pages > _MAX_PAGES or panels > _MAX_PANELS:
        raise ValueError(f"too many panels ({panels} per figure, {n_pages} figures) for facets "
                         f"{[d for d in (row, col, *rest) if d]}; pin some with select")
    return row, col, rest


def _pages(da: xr.DataArray, rest: list[str]) -> list[dict[str, Any]]:
    return [dict(zip(rest, combo, strict=True))
            for combo in itertools.product(*(list(da[d].values) for d in rest))]


def _page_name(kind: str, page: Mapping[str, Any]) -> str:
    tag = "_".join(f"{k}={v}" for k, v in page.items())
    return re.sub(r"[^A-Za-z0-9_.=+-]", "-", f"{kind}_{tag}" if tag else kind) + ".png"


def _squeeze(da: xr.DataArray | xr.Dataset, keep: tuple[str | None, ...]) -> Any:
    return da.squeeze([d for d in da.dims if da.sizes[d] == 1 and d not in keep])


def _title(cube: xr.Dataset, what: str, pinned: Mapping[str, Any]) -> str:
    name = cube.attrs.get("study", cube.attrs.get("name", ""))
    pins = ", ".join(f"{k}={v}" for k, v in pinned.items())
    return f"{name}: {what}" + (f"  [{pins}]" if pins else "")


def _scalars(ds: xr.Dataset | xr.DataArray) -> dict[str, Any]:
    return {str(k): v.item() for k, v in ds.coords.items() if v.ndim == 0 and k != "signal"}


def _default_xy(cube: xr.Dataset, kind: str, x: str | None, y: str | None) -> tuple[str, str]:
    varying = _varying(cube)
    if x is None:
        order = ("spike", "lr", *_BREAKDOWN_X) if kind == "phase" else _BREAKDOWN_X
        pref = [a for a in order if a in varying]
        rest = [a for a in varying if a != "layer" and _numeric(cube, a)]
        if not (pref or rest):
            raise ValueError(f"{kind} map: no numeric axis with more than one value; "
                             f"axes: {', '.join(map_axes(cube))}")
        x = (pref or rest)[0]
    x = _resolve_axis(cube, x, "x")
    if y is None:
        order = ["width_ratio" if kind == "phase" else "layer", *_BREAKDOWN_X, *varying]
        cands = [a for a in dict.fromkeys(order) if a in varying and a != x]
        if not cands:
            raise ValueError(f"{kind} map needs a second axis with more than one value; "
                             f"this cube varies only {', '.join(varying) or 'nothing'}")
        y = cands[0]
    y = _resolve_axis(cube, y, "y")
    if x == y:
        raise ValueError(f"x and y must differ (both {x!r}); "
                         f"valid axes: {', '.join(map_axes(cube))}")
    return x, y


def _phase(cube: xr.Dataset, out_dir: Path, x: str, y: str, signal: Any) -> tuple[
        list[Path], xr.Dataset, str]:
    prob = detection_probability(cube, signal)
    along = "spike" if "spike" in (x, y) else next(
        (a for a in (x, y) if a != "layer" and _numeric(cube, a)), None)
    data = prob
    if along is not None:
        data = xr.merge([prob, empirical_threshold(cube, along, signal).drop_vars(
            "n_replicates")], compat="override", combine_attrs="drop")
    valid = cube["theory_valid"] if "theory_valid" in cube else xr.ones_like(prob["detect_prob"])
    data["theory_valid"] = valid.broadcast_like(prob["detect_prob"]).astype(np.int8)
    row, col, rest = _facets(data["detect_prob"], x, y)
    pngs = []
    for page in _pages(data["detect_prob"], rest):
        d = _squeeze(data.sel(page), (x, y, row, col))
        pngs.append(figures.phase_figure(
            d["detect_prob"], x, y, row, col, invalid=d["theory_valid"] == 0,
            theory=d.get("theory_threshold"), empirical=d if along else None, along=along,
            attrs=cube.attrs, path=out_dir / _page_name("phase", page),
            title=_title(cube, f"P(separated outlier), signal {signal}",
                         {**_scalars(d), **page})))
    table = "no numeric axis to place a threshold on" if along is None else _table(
        data[["threshold", "threshold_err", "theory_threshold", "threshold_status"]],
        f"empirical threshold in {along} (P=1/2) vs theory")
    return pngs, data, table


def _breakdown(cube: xr.Dataset, out_dir: Path, x: str, y: str, tol: float, metric: str,
               signal: Any) -> tuple[list[Path], xr.Dataset, str]:
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol}")
    data = breakdown_error(cube, metric, signal)
    boundary = None
    if _numeric(cube, x):
        boundary = validity_boundary(data["err"], tol, x)
        data["boundary"] = boundary
    data.attrs.update(tol=tol, x=x, y=y)
    row, col, rest = _facets(data["err"], x, y)
    pngs = []
    for page in _pages(data["err"], rest):
        d = _squeeze(data.sel(page), (x, y, row, col))
        pngs.append(figures.breakdown_figure(
            d["err"], d["category"], x, y, row, col, tol=tol, boundary=d.get("boundary"),
            metric_label=("relative" if _METRIC_VARS[metric][2] else "absolute")
            + f" error ({metric})", attrs=cube.attrs, path=out_dir / _page_name("breakdown", page),
            title=_title(cube, f"theory vs simulation, {_METRIC_TITLES[metric]}",
                         {**_scalars(d), **page})))
    table = _boundary_table(data, x, tol)
    return pngs, data, table


def _pin(cube: xr.Dataset, keep: set[str],
         largest: tuple[str, ...] = ()) -> tuple[xr.Dataset, dict[str, Any]]:
    """Fix every varying study axis not in ``keep`` at its middle (``largest``: last) value."""
    pinned = {}
    for a in study_axes(cube):
        if a not in keep and cube.sizes[a] > 1:
            i = cube.sizes[a] - 1 if a in largest else cube.sizes[a] // 2
            pinned[a] = cube[a].values[i].item()
            cube = cube.isel({a: i})
    return cube, pinned


def _spectrum(cube: xr.Dataset, out_dir: Path, signal: Any, density: DensityFn | None) -> tuple[
        list[Path], xr.Dataset, str]:
    _require(cube, ["hist", "bin_lo", "bin_hi", "theory_edge", "theory_spike", "edge_emp",
                    "spike_emp"], "the spectrum figure",
             " (run the study with [measure] histogram_bins > 0)")
    row = "activation" if "activation" in _varying(cube) else None
    cube, pinned = _pin(cube, {row} if row else set())
    data = xr.Dataset({
        "hist": cube["hist"].mean("replicate", skipna=True),
        "theory_edge": cube["theory_edge"], "theory_spike": cube["theory_spike"],
        "edge_emp": cube["edge_emp"].mean("replicate", skipna=True),
        "spike_emp": cube["spike_emp"].mean("replicate", skipna=True),
    })
    if "theory_valid" in cube:
        data["theory_valid"] = cube["theory_valid"]
    data = data.assign_coords(bin_lo=cube["bin_lo"], bin_hi=cube["bin_hi"])
    dens = None
    if density is not None:
        dens = _density(cube, data, row, density)
        data["theory_density"] = dens
    data = _squeeze(data, ("layer", "bin", row, "signal"))
    path = out_dir / "spectrum.png"
    pngs = [figures.spectrum_figure(data, row, density=data.get("theory_density"), path=path,
                                    title=_title(cube, "CK spectrum per layer", pinned))]
    tab = data[["theory_edge", "edge_emp"]].assign(
        theory_spike=_signal(data["theory_spike"], signal),
        spike_emp=_signal(data["spike_emp"], signal))
    drawn = dens is not None and bool(np.isfinite(dens).any())
    note = "" if drawn else " (no theory density drawn: edge and spikes only)"
    return pngs, data, _table(tab, "bulk edge and spike: theory vs replicate mean" + note)


def theory_density(point: Mapping[str, Any], layer: int, x: np.ndarray) -> np.ndarray | None:
    """Limiting bulk density of K_layer at ``x`` for a deep-ck point (THEORY §3), else None.

    Level 0 is MP(γ0 = n/d0 = 1/input_ratio), the noise bulk of both input models; level ℓ ≥ 1
    the deformed MP law with ratio γ = 1/width_ratio and population law of b² x + 1 − b²
    (Fan & Wang 2020), from :func:`kernels.theory.bulk_density` (cached chains). Only the
    continuous part (the atom at 0 when γ > 1 is left out). None for one-step cubes and
    activations outside the theory (never drawn as if it applied).
    """
    from kernels.activations import get_activation
    from kernels.theory import bulk_density
    from sweep.params import DEEP_CK

    if point.get("experiment", "deep-ck") != "deep-ck":
        return None
    get = {k: point.get(k, DEEP_CK[k].default) for k in ("activation", "input_ratio",
                                                          "width_ratio")}
    if not get_activation(str(get["activation"])).theory_valid:
        return None
    out = np.zeros_like(x, dtype=float)
    inside = x > 0  # the solver needs no points right of the edge, but cannot know it here
    out[inside] = bulk_density(str(get["activation"]), float(get["input_ratio"]),
                               [float(get["width_ratio"])] * layer, layer, x[inside])
    return out


def _density(cube: xr.Dataset, data: xr.Dataset, row: str | None,
             density: DensityFn) -> xr.DataArray:
    lo, hi = float(data["bin_lo"].min()), float(data["bin_hi"].max())
    # deep layers pile mass near 0 in a sharp peak: add geometric points there
    grid = np.unique(np.concatenate([np.linspace(lo, hi, 300),
                                     np.geomspace(hi * 1e-4, hi * 0.1, 100)]))
    fixed = {**_fixed(cube), "experiment": cube.attrs.get("experiment", "deep-ck")}
    rows = list(cube[row].values) if row else [None]
    out = np.full((len(rows), data.sizes["layer"], grid.size), np.nan)
    for i, rv in enumerate(rows):
        c = cube.sel({row: rv}) if row else cube
        point = {**fixed, **{k: v.item() for k, v in c.coords.items() if v.ndim == 0}}
        for j, layer in enumerate(data["layer"].values):
            rho = density(point, int(layer), grid)
            if rho is not None:
                out[i, j] = rho
    da = xr.DataArray(out, dims=("row", "layer", "x_density"),
                      coords={"layer": data["layer"], "x_density": grid},
                      attrs={"long_name": "theory bulk density"})
    return da.isel(row=0, drop=True) if row is None else da.rename(row=row).assign_coords(
        {row: cube[row]})


def _curves(cube: xr.Dataset, out_dir: Path, kind: str, x: str | None, y: str | None,
            signal: Any) -> tuple[list[Path], xr.Dataset, str]:
    _require(cube, ["align", "theory_align"], f"the {kind} figure")
    varying = _varying(cube)
    if kind == "alignment-depth":
        xdim, hue_pref, col_pref = "layer", ("width_ratio", "n", "spike"), ("activation",)
    else:
        xdim, hue_pref, col_pref = "lr", ("n", "N", "width_ratio"), (
            "activation", "lr_scaling", "teacher", "noise")
    xdim = _resolve_axis(cube, x, "x") if x else _resolve_axis(cube, xdim, "x")
    hue = _resolve_axis(cube, y, "y") if y else next(
        (a for a in (*hue_pref, *varying) if a in varying and a not in (xdim, "layer")), None)
    col = next((a for a in col_pref if a in varying and a not in (xdim, hue)), None)
    keep = {d for d in (xdim, hue, col) if d}
    # depth decay is shown for the strongest spike on the grid: the one that survives deepest
    cube, pinned = _pin(cube, keep, ("spike",) if kind == "alignment-depth" else ())
    if "layer" not in keep:
        if cube.sizes.get("layer", 1) > 1:
            pinned["layer"] = int(cube["layer"].values[-1])
        cube = cube.isel(layer=-1, drop=True)
    align = _signal(cube["align"], signal)
    theories = [_signal(cube[v], signal) for v in ("theory_align", "theory_align_realised")
                if v in cube]
    theories = [t.mean("replicate", skipna=True) if "replicate" in t.dims else t
                for t in theories]
    labels = ["theory", "theory at realised rank-one size"][: len(theories)]
    data = xr.Dataset({"align_mean": align.mean("replicate", skipna=True),
                       "align_sd": align.std("replicate", skipna=True, ddof=1 if cube.sizes[
                           "replicate"] > 1 else 0)})
    for v, th in zip(("theory_align", "theory_align_realised"), theories, strict=False):
        data[v] = th
    valid = cube["theory_valid"] if "theory_valid" in cube else xr.ones_like(data["align_mean"])
    data["theory_valid"] = valid.broadcast_like(data["align_mean"]).astype(np.int8)
    xname = xdim
    xval = cube[xdim]
    if kind == "one-step-alignment" and xdim == "lr":
        xval, xname = _eta(cube), "eta"
        data = data.assign_coords(eta=xval.broadcast_like(data["align_mean"]))
    hue_dim = hue or "_curve"
    if hue is None:
        data = data.expand_dims(_curve=[0])
    data = _squeeze(data, (xdim, hue_dim, col))
    dims = tuple(d for d in (hue_dim, col, xdim) if d)
    xval = data["eta"].transpose(*dims) if "eta" in data.coords else data[xdim]
    pngs = [figures.curves_figure(
        data["align_mean"].transpose(*dims), data["align_sd"].transpose(*dims),
        [data[v].transpose(*dims) for v in ("theory_align", "theory_align_realised")
         if v in data], xval, xname, hue_dim, col, ylabel="squared alignment",
        theory_labels=labels, invalid=data["theory_valid"] == 0, attrs=cube.attrs,
        path=out_dir / f"{kind}.png",
        title=_title(cube, _CURVE_TITLES[kind], {**_scalars(data), **pinned}))]
    if hue is None:
        data = data.isel(_curve=0, drop=True)
    cols = [v for v in ("align_mean", "align_sd", "theory_align", "theory_align_realised")
            if v in data]
    return pngs, data, _table(data[cols], "squared alignment: replicate mean, sd, theory")


_CURVE_TITLES = {"alignment-depth": "squared alignment vs depth",
                 "one-step-alignment": "one-step squared label alignment vs learning rate"}


def _eta(cube: xr.Dataset) -> xr.DataArray:
    """Total learning rate η = η₀ N^a.

    The cube's ``lr_effective`` when it has it, else from lr (η₀), lr_scaling (a) and
    N = width_ratio · n.
    """
    if "lr_effective" in cube:
        return cube["lr_effective"]
    lr = cube["lr"]
    try:
        a = param(cube, "lr_scaling")
    except KeyError:
        a = 0.0
    if np.all(np.asarray(a) == 0):
        return lr
    try:
        n_width = param(cube, "N")
    except KeyError:
        n_width = param(cube, "width_ratio") * param(cube, "n")
    return lr * n_width**a


# ---------------------------------------------------------------------------- output


def _table(ds: xr.Dataset, title: str, max_rows: int = 30) -> str:
    df = ds.reset_coords(drop=True).to_dataframe()
    extra = ""
    if len(df) > max_rows:
        extra = f"\n... {len(df) - max_rows} more rows in the data file"
        df = df.head(max_rows)
    with_fmt = df.to_string(float_format=lambda v: f"{v:.4g}")
    return f"{title}\n{with_fmt}{extra}"


def _boundary_table(data: xr.Dataset, x: str, tol: float) -> str:
    lines = [f"theory within tol = {tol:g} ({data.attrs['metric']}): "
             f"{int((data['err'] <= tol).sum())} of {int((data['category'] == 0).sum())} "
             "compared cells"]
    if "boundary" not in data:
        return lines[0]
    b = data["boundary"]
    df = b.reset_coords(["valid_side", "boundary_status"]).to_dataframe(dim_order=list(b.dims))
    # why a slice has no comparison: the categories present along x (1, 2, 3 as bits)
    cat = data["category"]
    why = sum(((cat == c).any(x) * (1 << (c - 1))) for c in (1, 2, 3)).broadcast_like(b)
    df["why"] = why.transpose(*b.dims).values.ravel()
    names = {1: "theory not valid", 2: "spike absorbed", 3: "not run"}
    rows = []
    for idx, r in df.iterrows():
        key = idx if isinstance(idx, tuple) else (idx,)
        st = int(r["boundary_status"])
        no_cmp = "no comparison (" + ", ".join(
            v for c, v in names.items() if int(r["why"]) & (1 << (c - 1))) + ")"
        where = {1: "everywhere", 2: "nowhere", 3: no_cmp}.get(st) or (
            f"{x} {'>=' if r['valid_side'] > 0 else '<='} {r['boundary']:.4g}")
        rows.append("  ".join(str(k) for k in key) + f"  valid: {where}")
    head = "  ".join(df.index.names) if df.index.names != [None] else ""
    lines += [head] + rows[:30] + ([f"... {len(rows) - 30} more"] if len(rows) > 30 else [])
    return "\n".join(lines)


def _nc_safe(ds: xr.Dataset) -> xr.Dataset:
    def clean(attrs: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for k, v in attrs.items():
            if isinstance(v, bool) or isinstance(v, np.bool_):
                out[k] = int(v)
            elif isinstance(v, (str, int, float, np.number)):
                out[k] = v
            elif isinstance(v, (list, tuple, np.ndarray)) and all(
                    isinstance(e, (int, float, np.number)) for e in v):
                out[k] = list(v)
            elif v is not None:
                out[k] = json.dumps(v, default=str) if isinstance(v, dict) else str(v)
        return out

    ds = ds.copy()
    ds.attrs = clean(ds.attrs)
    for name in list(ds.variables):
        ds[name].attrs = clean(ds[name].attrs)
        if ds[name].dtype == bool:
            ds[name] = ds[name].astype(np.int8)
    return ds


def make_map(cube: xr.Dataset, kind: str, out_dir: Path, *, x: str | None = None,
             y: str | None = None, tol: float = 0.05, metric: str = "spike",
             select: dict[str, object] | None = None,
             density: DensityFn | None = theory_density) -> MapOutput:
    """Draw map ``kind`` of ``cube`` into ``out_dir``: PNG(s), ``<kind>.nc`` and a text table.

    ``x``/``y``: plot axes (phase: x = spike, y = width_ratio if it varies; breakdown: x = the
    first varying of n, lr, spike, N, width_ratio, ..., y = layer; curve kinds: x = layer or lr,
    y = the axis drawn as several curves). ``select`` pins axes (``{"activation": "tanh"}``,
    ``{"signal": 1}``). ``tol`` and ``metric`` are for the breakdown map; ``density`` gives the
    theory bulk density for the spectrum figure (default :func:`theory_density`; None: none).
    Unknown names raise ValueError listing the valid ones.
    """
    if kind not in MAP_KINDS:
        raise ValueError(f"unknown map kind {kind!r}; valid kinds: {', '.join(MAP_KINDS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cube, signal = _apply_select(cube, dict(select or {}))
    if kind == "breakdown" and metric not in available_metrics(cube):
        raise ValueError(f"metric={metric!r} is not available; valid metrics: "
                         f"{', '.join(available_metrics(cube)) or 'none in this cube'}")
    if kind in ("phase", "breakdown"):
        if kind == "phase":
            _require(cube, ["detected"], "the phase map")
        px, py = _default_xy(cube, kind, x, y)
        if kind == "phase":
            pngs, data, table = _phase(cube, out_dir, px, py, signal)
        else:
            pngs, data, table = _breakdown(cube, out_dir, px, py, tol, metric, signal)
    elif kind == "spectrum":
        pngs, data, table = _spectrum(cube, out_dir, signal, density)
    else:
        pngs, data, table = _curves(cube, out_dir, kind, x, y, signal)
    data.attrs.update(kind=kind, signal=str(signal), select=json.dumps(select or {}, default=str),
                      **{k: cube.attrs[k] for k in ("study", "experiment", "spec_hash")
                         if k in cube.attrs})
    path = out_dir / f"{kind}.nc"
    _nc_safe(data).to_netcdf(path)
    return MapOutput(pngs=pngs, data=data, data_path=path, table=table)
