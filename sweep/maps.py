"""Draw a result cube: where the BBP-type transition sits and where the theory holds.

:func:`make_map` draws one of :data:`MAP_KINDS` into PNG files (via :mod:`sweep.figures`) from the
numbers :mod:`sweep.boundaries` computes, writes those numbers as netCDF and returns a short text
table. Facets: rows = ``layer``, columns = ``activation`` (when they vary and are not plot axes);
any further varying axis gives one PNG per value for the phase and breakdown maps, and is pinned
(unless ``select`` pins it) for the spectrum and curve figures: at its middle grid value, except
the spike strength of the alignment-vs-depth figure (its largest value, the signal that survives
deepest). Nothing is averaged over an axis.
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

from sweep import figures
from sweep.boundaries import (
    METRIC_VARS,
    METRICS,
    available_metrics,
    breakdown_error,
    detection_probability,
    empirical_threshold,
    extra_outliers,
    validity_boundary,
)
from sweep.cubeview import (
    apply_select,
    fixed_params,
    is_numeric,
    map_axes,
    param,
    require_vars,
    resolve_axis,
    select_signal,
    study_axes,
    varying_axes,
)
from sweep.scaling import MIN_POINTS, extrapolate_threshold

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

_METRIC_TITLES = {"spike": "spike location (relative error)",
                  "align": "squared alignment (absolute error)",
                  "edge": "bulk edge (relative error)",
                  "spike_realised": "spike at realised rank-one size (relative error)",
                  "align_realised": "alignment at realised rank-one size (absolute error)"}

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
    varying = varying_axes(cube)
    if x is None:
        order = ("spike", "lr", *_BREAKDOWN_X) if kind == "phase" else _BREAKDOWN_X
        pref = [a for a in order if a in varying]
        rest = [a for a in varying if a != "layer" and is_numeric(cube, a)]
        if not (pref or rest):
            raise ValueError(f"{kind} map: no numeric axis with more than one value; "
                             f"axes: {', '.join(map_axes(cube))}")
        x = (pref or rest)[0]
    x = resolve_axis(cube, x, "x")
    if y is None:
        order = ["width_ratio" if kind == "phase" else "layer", *_BREAKDOWN_X, *varying]
        cands = [a for a in dict.fromkeys(order) if a in varying and a != x]
        if not cands:
            raise ValueError(f"{kind} map needs a second axis with more than one value; "
                             f"this cube varies only {', '.join(varying) or 'nothing'}")
        y = cands[0]
    y = resolve_axis(cube, y, "y")
    if x == y:
        raise ValueError(f"x and y must differ (both {x!r}); "
                         f"valid axes: {', '.join(map_axes(cube))}")
    return x, y


def _phase(cube: xr.Dataset, out_dir: Path, x: str, y: str, signal: Any) -> tuple[
        list[Path], xr.Dataset, str]:
    prob = detection_probability(cube, signal)
    along = "spike" if "spike" in (x, y) else next(
        (a for a in (x, y) if a != "layer" and is_numeric(cube, a)), None)
    data = prob
    if along is not None:
        data = xr.merge([prob, empirical_threshold(cube, along, signal).drop_vars(
            "n_replicates")], compat="override", combine_attrs="drop_conflicts")
    scaling = None
    if along == "spike" and "n" in data.dims and data.sizes["n"] >= MIN_POINTS:
        scaling = extrapolate_threshold(data, "n")
        data = xr.merge([data, scaling], compat="override", combine_attrs="drop_conflicts")
    valid = cube["theory_valid"] if "theory_valid" in cube else xr.ones_like(prob["detect_prob"])
    data["theory_valid"] = valid.broadcast_like(prob["detect_prob"]).astype(np.int8)
    if "n_outliers" in cube and cube.attrs.get("experiment", "deep-ck") == "deep-ck":
        data["extra_outliers"] = extra_outliers(cube).broadcast_like(prob["detect_prob"])
    row, col, rest = _facets(data["detect_prob"], x, y)
    pngs = []
    for page in _pages(data["detect_prob"], rest):
        d = _squeeze(data.sel(page), (x, y, row, col))
        pngs.append(figures.phase_figure(
            d["detect_prob"], x, y, row, col, invalid=d["theory_valid"] == 0,
            theory=d.get("theory_threshold"), empirical=d if along else None, along=along,
            window=d.get("theory_window"), extra=d.get("extra_outliers"),
            scaling=d[list(scaling.data_vars)] if scaling is not None and "n" in (x, y) else None,
            attrs=cube.attrs, path=out_dir / _page_name("phase", page),
            title=_title(cube, f"P(separated outlier), signal {signal}",
                         {**_scalars(d), **page})))
    table = "no numeric axis to place a threshold on" if along is None else _table(
        data[[v for v in ("threshold", "threshold_err", "theory_threshold", "theory_window",
                          "lag", "threshold_status") if v in data]],
        f"empirical threshold in {along} (P=1/2) vs theory; lag in windows w_n")
    if scaling is not None:
        limit = scaling.copy()
        if "theory_threshold" in data:
            theory = data["theory_threshold"]
            limit["theory_threshold"] = theory.max("n", skipna=True) if "n" in theory.dims else theory
        table += "\n" + _table(
            limit[[v for v in ("threshold_inf", "threshold_inf_se", "theory_threshold", "theory_z",
                               "scaling_amplitude", "fit_chi2_dof", "fit_points") if v in limit]],
            "finite-size scaling: threshold(n) = threshold_inf + A n^(-1/3) "
            "(weighted fit over n), against theory")
    if "extra_outliers" in data and float(data["extra_outliers"].max(skipna=True).fillna(0)) > 0:
        keep = [d for d in ("activation", "layer") if d in data["extra_outliers"].dims]
        worst = data["extra_outliers"].max([d for d in data["extra_outliers"].dims if d not in keep])
        table += "\n" + _table(worst.to_dataset(name="max_extra_outliers"),
                                "outliers matched to no signal: largest replicate mean")
    return pngs, data, table


def _breakdown(cube: xr.Dataset, out_dir: Path, x: str, y: str, tol: float, metric: str,
               signal: Any) -> tuple[list[Path], xr.Dataset, str]:
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol}")
    data = breakdown_error(cube, metric, signal)
    boundary = None
    if is_numeric(cube, x):
        boundary = validity_boundary(data["err"], tol, x)
        data["boundary"] = boundary
    data.attrs.update(tol=tol, x=x, y=y)
    row, col, rest = _facets(data["err"], x, y)
    pngs = []
    for page in _pages(data["err"], rest):
        d = _squeeze(data.sel(page), (x, y, row, col))
        pngs.append(figures.breakdown_figure(
            d["err"], d["category"], x, y, row, col, tol=tol, boundary=d.get("boundary"),
            metric_label=("relative" if METRIC_VARS[metric][2] else "absolute")
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
    require_vars(cube, ["hist", "bin_lo", "bin_hi", "theory_edge", "theory_spike", "edge_emp",
                    "spike_emp"], "the spectrum figure",
             " (run the study with [measure] histogram_bins > 0)")
    row = "activation" if "activation" in varying_axes(cube) else None
    cube, pinned = _pin(cube, {row} if row else set())
    data = xr.Dataset({
        "hist": cube["hist"].mean("replicate", skipna=True),
        "theory_edge": cube["theory_edge"], "theory_spike": cube["theory_spike"],
        "edge_emp": cube["edge_emp"].mean("replicate", skipna=True),
        "spike_emp": cube["spike_emp"].mean("replicate", skipna=True),
    })
    if "theory_valid" in cube:
        data["theory_valid"] = cube["theory_valid"]
    if "n_outliers" in cube:  # per replicate: the count is the figure's claim, not its mean
        data["n_outliers"] = cube["n_outliers"].where(cube["n_outliers"] >= 0)
    if "theory_survives" in cube:
        surv = cube["theory_survives"]
        known = (surv >= 0).all("signal") if "signal" in surv.dims else surv >= 0
        count = (surv == 1).sum("signal") if "signal" in surv.dims else (surv == 1)
        if "theory_valid" in cube:
            known = known & (cube["theory_valid"] == 1)
        data["theory_outliers"] = count.where(known)
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
        theory_spike=select_signal(data["theory_spike"], signal),
        spike_emp=select_signal(data["spike_emp"], signal))
    if "n_outliers" in data and "theory_outliers" in data:
        counts = data["n_outliers"]
        if "replicate" in counts.dims:
            counts = counts.min("replicate").rename("outliers_min").to_dataset().assign(
                outliers_max=data["n_outliers"].max("replicate"))
        else:
            counts = counts.rename("outliers_min").to_dataset()
        tab = tab.assign(**counts.data_vars, theory_outliers=data["theory_outliers"])
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
    fixed = {**fixed_params(cube), "experiment": cube.attrs.get("experiment", "deep-ck")}
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
    require_vars(cube, ["align", "theory_align"], f"the {kind} figure")
    varying = varying_axes(cube)
    if kind == "alignment-depth":
        xdim, hue_pref, col_pref = "layer", ("width_ratio", "n", "spike"), ("activation",)
    else:
        xdim, hue_pref, col_pref = "lr", ("n", "N", "width_ratio"), (
            "activation", "lr_scaling", "teacher", "noise")
    xdim = resolve_axis(cube, x, "x") if x else resolve_axis(cube, xdim, "x")
    hue = resolve_axis(cube, y, "y") if y else next(
        (a for a in (*hue_pref, *varying) if a in varying and a not in (xdim, "layer")), None)
    col = next((a for a in col_pref if a in varying and a not in (xdim, hue)), None)
    keep = {d for d in (xdim, hue, col) if d}
    # depth decay is shown for the strongest spike on the grid: the one that survives deepest
    cube, pinned = _pin(cube, keep, ("spike",) if kind == "alignment-depth" else ())
    if "layer" not in keep:
        if cube.sizes.get("layer", 1) > 1:
            pinned["layer"] = int(cube["layer"].values[-1])
        cube = cube.isel(layer=-1, drop=True)
    align = select_signal(cube["align"], signal)
    theories = [select_signal(cube[v], signal) for v in ("theory_align", "theory_align_realised")
                if v in cube]
    theories = [t.mean("replicate", skipna=True) if "replicate" in t.dims else t
                for t in theories]
    labels = ["theory", "theory at realised rank-one size"][: len(theories)]
    data = xr.Dataset({"align_mean": align.mean("replicate", skipna=True),
                       "align_sd": align.std("replicate", skipna=True, ddof=1 if cube.sizes[
                           "replicate"] > 1 else 0)})
    what = str(align.attrs.get("long_name", "squared alignment"))
    data["align_mean"].attrs = {"long_name": f"replicate mean of {what}", "units": "1"}
    data["align_sd"].attrs = {"long_name": f"replicate standard deviation of {what}", "units": "1"}
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
    fresh = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _make_map(cube, kind, out_dir, x, y, tol, metric, select, density)
    except Exception:
        if fresh and not any(out_dir.iterdir()):
            out_dir.rmdir()  # bad input leaves nothing behind
        raise


def _make_map(cube: xr.Dataset, kind: str, out_dir: Path, x: str | None, y: str | None, tol: float,
              metric: str, select: dict[str, object] | None, density: DensityFn | None
              ) -> MapOutput:
    needs = {"one-step-alignment": "one-step"}  # the others say which variables they miss
    experiment = cube.attrs.get("experiment", "deep-ck")
    if kind in needs and experiment != needs[kind]:
        raise ValueError(f"--kind {kind} needs a {needs[kind]} cube; this one is {experiment!r} "
                         f"(study {cube.attrs.get('study', '?')!r})")
    cube, signal = apply_select(cube, dict(select or {}))
    if kind == "breakdown" and metric not in available_metrics(cube):
        raise ValueError(f"metric={metric!r} is not available; valid metrics: "
                         f"{', '.join(available_metrics(cube)) or 'none in this cube'}")
    if kind in ("phase", "breakdown"):
        if kind == "phase":
            require_vars(cube, ["detected"], "the phase map")
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
                      **{k: cube.attrs[k] for k in ("study", "experiment", "spec_hash",
                                                    "spikesweep_version", "git_commit")
                         if k in cube.attrs})
    path = out_dir / f"{kind}.nc"
    _nc_safe(data).to_netcdf(path)
    return MapOutput(pngs=pngs, data=data, data_path=path, table=table)
