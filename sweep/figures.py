"""Drawing for ``sweep map``: panel grids, phase and breakdown panels, spectra and curves.

Pure drawing. Every number arrives as an xarray object prepared by :mod:`sweep.maps`; nothing here
computes a threshold or an error. Figures are built with :class:`matplotlib.figure.Figure` and
saved through the Agg canvas, so importing this module never switches a notebook's backend and
never needs a display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.collections import PatchCollection
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.patheffects import withStroke
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

__all__ = [
    "CATEGORY_STYLE",
    "AxisScale",
    "axis_label",
    "axis_scale",
    "breakdown_figure",
    "curves_figure",
    "phase_figure",
    "spectrum_figure",
]

_PANEL_W, _PANEL_H, _DPI = 3.1, 2.5, 110

_LABELS: dict[str, str] = {
    "spike": r"spike strength $\theta$",
    "width_ratio": r"width ratio $d_\ell/n$",
    "input_ratio": r"input ratio $d_0/n$",
    "n": r"sample size $n$",
    "layer": r"layer $\ell$",
    "lr": r"learning rate $\eta_0$",
    "eta": r"learning rate $\eta=\sum_t\eta_t$",
    "steps": r"gradient steps $T$",
    "lr_scaling": r"lr exponent $a$ ($\eta=\eta_0 N^a$)",
    "N": r"network width $N$",
    "noise": r"label noise $\sigma_\varepsilon$",
    "test_ratio": r"test ratio $\tilde n/n$",
    "activation": "activation",
    "teacher": r"teacher $\sigma_*$",
    "input": "input model",
    "input_scale": r"input column norm $s$",
}

# Categories of a breakdown cell (sweep.maps.breakdown_error): drawn as grey/hatched patches, never
# on the error colour scale, because "the theory says nothing here" is not "the theory is wrong".
CATEGORY_STYLE: dict[int, tuple[str, str, str]] = {
    1: ("theory not valid (activation, inputs or training)", "0.78", "//"),
    2: ("spike absorbed (no outlier predicted)", "0.92", ".."),
    3: ("not run / no value", "white", "xx"),
}


def axis_label(name: str, attrs: Mapping[str, Any] | None = None) -> str:
    """Readable label with units for a coordinate name (cube attrs fill in unknown names)."""
    attrs = attrs or {}
    base = _LABELS.get(name) or str(attrs.get("long_name") or name)
    units = str(attrs.get("units", "") or "")
    return f"{base} [{units}]" if units and units not in ("1", "dimensionless") else base


@dataclass(frozen=True)
class AxisScale:
    """How one coordinate is laid out on a plot axis.

    Numeric coordinates sit at their values; cell edges are midpoints between neighbours, taken
    in log space when the grid is geometric (then the axis is logarithmic too). String
    coordinates sit at 0, 1, ... with their labels as ticks.
    """

    name: str
    values: np.ndarray
    positions: np.ndarray
    edges: np.ndarray
    log: bool
    categorical: bool

    def position(self, value: Any) -> float:
        """Plot position of a coordinate value."""
        if self.categorical:
            return float(list(self.values).index(value))
        return float(value)


def is_geometric(values: np.ndarray) -> bool:
    """Tell whether ``values`` is a positive grid of 3+ points with a constant ratio > 1.2."""
    v = np.asarray(values)
    if v.dtype.kind not in "iuf" or v.size < 3 or np.any(v <= 0):
        return False
    r = v[1:] / v[:-1]
    return bool(np.all(r > 1.2) and r.max() / r.min() < 1.05)


def axis_scale(coord: xr.DataArray) -> AxisScale:
    """Layout of ``coord`` (a 1-D coordinate) on a plot axis."""
    values = np.asarray(coord.values)
    name = str(coord.name)
    if values.dtype.kind not in "iuf":
        pos = np.arange(values.size, dtype=float)
        return AxisScale(name, values, pos, np.arange(values.size + 1) - 0.5, False, True)
    pos = values.astype(float)
    log = is_geometric(pos)
    t = np.log(pos) if log else pos
    if t.size == 1:
        half = 0.5 if not log else np.log(1.5)
        e = np.array([t[0] - half, t[0] + half])
    else:
        mid = (t[1:] + t[:-1]) / 2
        e = np.concatenate([[t[0] - (mid[0] - t[0])], mid, [t[-1] + (t[-1] - mid[-1])]])
    return AxisScale(name, values, pos, np.exp(e) if log else e, log, False)


def _apply_scale(ax: Axes, sc: AxisScale, which: str, attrs: Mapping[str, Any]) -> None:
    set_label = ax.set_xlabel if which == "x" else ax.set_ylabel
    set_label(axis_label(sc.name, attrs))
    axis = ax.xaxis if which == "x" else ax.yaxis
    if sc.log:
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")
        # Ticks at the grid values, written plainly (not 4x10^0): a sweep grid is few values.
        axis.set_major_locator(FixedLocator(sc.positions))
        axis.set_major_formatter(FixedFormatter([f"{v:g}" for v in sc.positions]))
        axis.set_minor_locator(NullLocator())
    if sc.categorical:
        axis.set_major_locator(FixedLocator(sc.positions))
        axis.set_major_formatter(FixedFormatter([str(v) for v in sc.values]))
    elif sc.name == "layer":
        axis.set_major_locator(FixedLocator(sc.positions))
    lim = ax.set_xlim if which == "x" else ax.set_ylim
    lim(sc.edges[0], sc.edges[-1])


def _grid(nrows: int, ncols: int, extra_w: float = 1.2, sharex: bool = True,
          sharey: bool = True) -> tuple[Figure, np.ndarray]:
    # At least 7 in wide so that a one-column figure still fits its title and legend.
    fig = Figure(figsize=(max(_PANEL_W * ncols + extra_w, 7.0), _PANEL_H * nrows + 0.9), dpi=_DPI,
                 layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex, sharey=sharey)
    return fig, axes


def _outer_labels(axes: np.ndarray) -> None:
    for ax in axes.flat:
        ax.label_outer()


def _facet_values(da: xr.DataArray | xr.Dataset, dim: str | None) -> list[Any]:
    return [None] if dim is None else list(da[dim].values)


def _panel_sel(row: str | None, rv: Any, col: str | None, cv: Any) -> dict[str, Any]:
    return {k: v for k, v in ((row, rv), (col, cv)) if k is not None}


def _panel_title(sel: Mapping[str, Any]) -> str:
    parts = []
    for k, v in sel.items():
        parts.append(rf"$\ell$ = {v}" if k == "layer" else f"{k} = {v}")
    return ", ".join(parts)


def _hatch_cells(ax: Axes, mask: np.ndarray, xs: AxisScale, ys: AxisScale, face: str,
                 hatch: str) -> None:
    """Hatched rectangles over the (y, x) cells where ``mask`` is true, aligned to cell edges."""
    rects = [
        Rectangle((xs.edges[j], ys.edges[i]), xs.edges[j + 1] - xs.edges[j],
                  ys.edges[i + 1] - ys.edges[i])
        for i, j in zip(*np.nonzero(mask), strict=True)
    ]
    if rects:
        ax.add_collection(PatchCollection(rects, facecolor=face, edgecolor="0.35", hatch=hatch,
                                          linewidth=0.0, zorder=2))


def _save(fig: Figure, path: Path, title: str) -> Path:
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=_DPI)
    return path


EXTRA_MARK = 0.5  # mean unmatched outliers per replicate from which a cell is marked


def phase_figure(prob: xr.DataArray, x: str, y: str, row: str | None, col: str | None, *,
                 invalid: xr.DataArray, theory: xr.DataArray | None,
                 empirical: xr.Dataset | None, along: str | None, attrs: Mapping[str, Any],
                 title: str, path: Path, window: xr.DataArray | None = None,
                 extra: xr.DataArray | None = None, scaling: xr.Dataset | None = None) -> Path:
    """Draw detection probability over (y, x) per facet, theory curve and empirical thresholds.

    ``theory`` is the critical value along ``along`` (x or y) as a function of the other plot
    axis; ``window`` (optional, same shape) the finite-n window w_n, drawn as a bar from θ* to
    θ* + w_n; ``empirical`` holds ``threshold``, ``threshold_err``, ``threshold_status``
    likewise. Cells where the theory is not valid are hatched (the detector is theory-free);
    cells where on average at least half an outlier is matched to no signal (``extra``) get a ×.
    ``scaling`` (when one plot axis is ``n``): the finite-size fit θ_∞ + A n^{-1/3}
    (:mod:`sweep.scaling`), drawn as a dashed curve over the n range, θ_∞ ± SE written in the panel.
    """
    rows, cols = _facet_values(prob, row), _facet_values(prob, col)
    fig, axes = _grid(len(rows), len(cols))
    xs, ys = axis_scale(prob[x]), axis_scale(prob[y])
    norm = Normalize(0.0, 1.0)
    mesh = None
    for i, rv in enumerate(rows):
        for j, cv in enumerate(cols):
            ax, sel = axes[i, j], _panel_sel(row, rv, col, cv)
            p = prob.sel(sel).transpose(y, x).values
            mesh = ax.pcolormesh(xs.edges, ys.edges, np.ma.masked_invalid(p), cmap="viridis",
                                 norm=norm, shading="flat")
            bad = invalid.sel(sel).transpose(y, x).values.astype(bool)
            _hatch_cells(ax, bad, xs, ys, "none", "//")
            if extra is not None:
                e = extra.sel(sel).transpose(y, x).values
                iy, ix = np.nonzero(np.nan_to_num(e) >= EXTRA_MARK)
                ax.plot(xs.positions[ix], ys.positions[iy], ls="", marker="x", color="tab:orange",
                        ms=5, mew=1.5, zorder=6)
            if theory is not None and along is not None:
                _threshold_curve(ax, theory.sel(sel), along, x, y, xs, ys,
                                 None if window is None else window.sel(sel))
            if empirical is not None and along is not None:
                _threshold_points(ax, empirical.sel(sel), along, x, y, xs, ys)
            if scaling is not None and along is not None:
                _scaling_curve(ax, scaling.sel(sel), along, x, y, ys if along == x else xs,
                               None if theory is None else theory.sel(sel))
            _apply_scale(ax, xs, "x", prob[x].attrs)
            _apply_scale(ax, ys, "y", prob[y].attrs)
            ax.set_title(_panel_title(sel) + (" (theory not valid)" if bad.all() else ""),
                         fontsize=9)
    handles = [Line2D([], [], color="tab:red", marker="o", ms=3, label=r"theory $\theta^*$"),
               *([Patch(facecolor="tab:red", alpha=0.3, label=r"finite-$n$ window $w_n$")]
                 if window is not None else []),
               Line2D([], [], color="white", mec="black", marker="D", ls="", ms=5,
                      label=r"empirical $P=1/2$ ($\pm$ err)"),
               *([Line2D([], [], color="white", ls="--", lw=1.4, path_effects=[
                   withStroke(linewidth=2.8, foreground="black")],
                   label=r"fit $\theta_\infty + A\,n^{-1/3}$")]
                 if scaling is not None and bool(np.isfinite(scaling["threshold_inf"]).any())
                 else []),
               Patch(facecolor="none", edgecolor="0.35", hatch="//", label="theory not valid"),
               *([Line2D([], [], color="tab:orange", marker="x", ls="", ms=5, mew=1.5,
                         label="outlier matched to no signal")]
                 if extra is not None and bool((extra.fillna(0) >= EXTRA_MARK).any()) else []),
               *([Line2D([], [], color="white", mec="black", marker=">", ls="", ms=6,
                         label="threshold beyond the grid")]
                 if empirical is not None and along is not None
                 and bool((abs(empirical["threshold_status"]) == 1).any()) else [])]
    _outer_labels(axes)
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 3), fontsize=8)
    cbar = fig.colorbar(mesh, ax=axes, shrink=0.9, pad=0.02)
    cbar.set_label("detection probability (separated outlier)")
    return _save(fig, path, title)


def _threshold_curve(ax: Axes, th: xr.DataArray, along: str, x: str, y: str, xs: AxisScale,
                     ys: AxisScale, window: xr.DataArray | None = None) -> None:
    other = y if along == x else x
    vals = th.transpose(other).values.astype(float)
    opos = (ys if along == x else xs).positions
    ok = np.isfinite(vals)
    if not ok.any():
        return
    px, py = (vals[ok], opos[ok]) if along == x else (opos[ok], vals[ok])
    if window is not None:  # one translucent bar [θ*, θ* + w_n] per grid row (or column)
        w = window.transpose(other).values.astype(float)[ok]
        for v, o, wv in zip(vals[ok], opos[ok], w, strict=True):
            if np.isfinite(wv):
                seg = ([v, v + wv], [o, o]) if along == x else ([o, o], [v, v + wv])
                ax.plot(*seg, color="tab:red", alpha=0.35, lw=6, solid_capstyle="butt", zorder=3)
    ax.plot(px, py, "-o", color="tab:red", ms=3, lw=1.6, zorder=4)


def _threshold_points(ax: Axes, emp: xr.Dataset, along: str, x: str, y: str, xs: AxisScale,
                      ys: AxisScale) -> None:
    other = y if along == x else x
    t = emp["threshold"].transpose(other).values
    e = emp["threshold_err"].transpose(other).values
    st = emp["threshold_status"].transpose(other).values
    opos = (ys if along == x else xs).positions
    lo, hi = ((xs if along == x else ys).edges[[0, -1]])
    ok = np.isfinite(t)
    px, py = (t[ok], opos[ok]) if along == x else (opos[ok], t[ok])
    bars = {"xerr" if along == x else "yerr": e[ok]}
    # White bars with a black outline stay visible on both ends of the viridis scale.
    _, caps, lines = ax.errorbar(px, py, **bars, fmt="D", ms=4, mfc="white", mec="black",
                                 ecolor="white", elinewidth=1.2, capsize=2.5, zorder=5)
    for artist in (*caps, *lines):
        artist.set_path_effects([withStroke(linewidth=2.6, foreground="black")])
    # Thresholds off the grid: an arrowhead at the edge it lies beyond.
    marks = ((-1, lo, "<" if along == x else "v"), (1, hi, ">" if along == x else "^"))
    for flag, edge, mk in marks:
        sel = st == flag
        if sel.any():
            pts = (np.full(sel.sum(), edge), opos[sel])
            ax.plot(*(pts if along == x else pts[::-1]), ls="", marker=mk, color="white",
                    mec="black", ms=6, zorder=5, clip_on=False)


def _scaling_curve(ax: Axes, sc: xr.Dataset, along: str, x: str, y: str,
                   size_axis: AxisScale, theory: xr.DataArray | None) -> None:
    """Dashed θ_∞ + A n^{-1/3} across the n range of the panel; θ_∞ ± SE (and θ*) as text."""
    inf, se = float(sc["threshold_inf"]), float(sc["threshold_inf_se"])
    if not np.isfinite(inf):
        return
    sizes = np.geomspace(size_axis.positions.min(), size_axis.positions.max(), 50)
    amp = sc["scaling_amplitude"]
    curve = inf + float(amp) * sizes ** (-float(amp.attrs["exponent"]))
    line = (curve, sizes) if along == x else (sizes, curve)
    ax.plot(*line, ls="--", color="white", lw=1.4, zorder=4,
            path_effects=[withStroke(linewidth=2.8, foreground="black")])
    label = rf"$\theta_\infty$ = {inf:.3f} $\pm$ {se:.3f}"
    limit = np.nan if theory is None else float(theory.max(skipna=True))
    if np.isfinite(limit):
        label += rf"  ($\theta^*$ = {limit:.3f})"
    ax.text(0.03, 0.96, label, transform=ax.transAxes, ha="left", va="top", fontsize=7.5,
            color="black", bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.85,
                                 "lw": 0})


def breakdown_figure(err: xr.DataArray, category: xr.DataArray, x: str, y: str,
                     row: str | None, col: str | None, *, tol: float,
                     boundary: xr.DataArray | None, metric_label: str,
                     attrs: Mapping[str, Any], title: str, path: Path) -> Path:
    """Error over (y, x) per facet on a log scale centred at ``tol``, contour err = tol.

    Colours run green (agreement) through yellow (err = tol) to red; cells where the theory is
    not valid, the spike is absorbed, or nothing ran are grey/hatched patches, not colours.
    ``boundary`` (the monotone-fit crossing along x, one per y) is drawn as black bars.
    """
    rows, cols = _facet_values(err, row), _facet_values(err, col)
    fig, axes = _grid(len(rows), len(cols))
    xs, ys = axis_scale(err[x]), axis_scale(err[y])
    norm = LogNorm(tol / 10.0, tol * 10.0)
    mesh = None
    for i, rv in enumerate(rows):
        for j, cv in enumerate(cols):
            ax, sel = axes[i, j], _panel_sel(row, rv, col, cv)
            e = err.sel(sel).transpose(y, x).values.astype(float)
            cat = category.sel(sel).transpose(y, x).values
            shown = np.ma.masked_invalid(np.clip(e, tol / 100.0, None))
            mesh = ax.pcolormesh(xs.edges, ys.edges, shown, cmap="RdYlGn_r", norm=norm,
                                 shading="flat")
            for code, (_, face, hatch) in CATEGORY_STYLE.items():
                _hatch_cells(ax, cat == code, xs, ys, face, hatch)
            finite = np.isfinite(e)
            if finite.sum() >= 4 and xs.values.size > 1 and ys.values.size > 1:
                if np.nanmin(e) < tol < np.nanmax(e):
                    ax.contour(xs.positions, ys.positions, np.ma.masked_invalid(e), levels=[tol],
                               colors="black", linewidths=1.5, zorder=4)
            if boundary is not None and not xs.categorical:
                b = boundary.sel(sel).transpose(y).values.astype(float)
                ok = np.isfinite(b)
                ax.plot(b[ok], ys.positions[ok], ls="", marker="|", ms=12, mew=2.5,
                        color="black", zorder=5)
            _apply_scale(ax, xs, "x", err[x].attrs)
            _apply_scale(ax, ys, "y", err[y].attrs)
            ax.set_title(_panel_title(sel), fontsize=9)
    handles = [Line2D([], [], color="black", lw=1.5, label=f"error = tol ({tol:g})"),
               Line2D([], [], color="black", marker="|", ls="", ms=10, mew=2.5,
                      label="boundary (monotone fit)")]
    handles += [Patch(facecolor=f, edgecolor="0.35", hatch=h, label=lab)
                for lab, f, h in CATEGORY_STYLE.values()]
    _outer_labels(axes)
    fig.legend(handles=handles, loc="outside lower center", ncol=2 if len(cols) < 2 else 3,
               fontsize=8)
    cbar = fig.colorbar(mesh, ax=axes, shrink=0.9, pad=0.02, extend="both")
    cbar.set_label(metric_label)
    ticks = [tol / 10, tol / 3, tol, 3 * tol, 10 * tol]
    cbar.set_ticks(ticks, labels=[f"{t:.3g}" + (" = tol" if t == tol else "") for t in ticks])
    cbar.ax.minorticks_off()
    cbar.ax.axhline(tol, color="black", lw=1.5)
    return _save(fig, path, title)


def _count_note(d: xr.Dataset, valid: bool) -> str:
    """': outliers 2, 1 (theory 2)': detected count per replicate, and the theory's count."""
    if "n_outliers" not in d:
        return ""
    counts = ", ".join(str(int(c)) for c in np.atleast_1d(d["n_outliers"].values) if c >= 0)
    th = float(d["theory_outliers"]) if "theory_outliers" in d else np.nan
    theory = f" (theory {int(th)})" if valid and np.isfinite(th) else ""
    return f": outliers {counts}{theory}"


def spectrum_figure(data: xr.Dataset, row: str | None, *, density: xr.DataArray | None,
                    title: str, path: Path) -> Path:
    """Replicate-mean spectrum histogram per layer with theory bulk edge, density and spikes.

    ``data`` holds ``hist`` (layer, bin) with ``bin_lo``/``bin_hi``, ``theory_edge`` (layer),
    ``theory_spike`` (layer, signal), ``edge_emp`` (layer), ``spike_emp`` (layer, signal) and
    ``theory_valid``; ``density`` (layer, x_density) when a theory density is available. Where
    the theory is not valid no theory line is drawn (the panel says so). With ``n_outliers``
    (replicate, layer) and ``theory_outliers`` (layer) the panel titles give the detected count
    per replicate beside the theory's.
    """
    rows, layers = _facet_values(data, row), list(data["layer"].values)
    fig, axes = _grid(len(rows), len(layers), extra_w=0.2, sharex=False, sharey=False)
    for i, rv in enumerate(rows):
        for j, layer in enumerate(layers):
            ax = axes[i, j]
            sel = _panel_sel(row, rv, None, None)
            d = data.sel(sel).sel(layer=layer)
            valid = bool((d["theory_valid"] != 0).all()) if "theory_valid" in d else True
            lo, hi = d["bin_lo"].values, d["bin_hi"].values
            h = d["hist"].values
            ax.stairs(h, np.concatenate([lo, hi[-1:]]), fill=True, color="C0", alpha=0.45,
                      label="simulation (replicate mean)")
            emp = np.atleast_1d(d["spike_emp"].values)
            emp = emp[np.isfinite(emp)]
            right = [hi[np.nonzero(h > 0)[0][-1]]] if (h > 0).any() else [hi[-1]]
            if valid:
                if density is not None and np.isfinite(density.sel(sel).sel(layer=layer)).any():
                    dd = density.sel(sel).sel(layer=layer)
                    ax.plot(dd["x_density"].values, dd.values, color="black", lw=1.2,
                            label="theory bulk density")
                ax.axvline(float(d["theory_edge"]), color="black", ls="--", lw=1,
                           label=r"theory edge $E_\ell$")
                for s in np.atleast_1d(d["theory_spike"].values):
                    if np.isfinite(s):
                        ax.axvline(s, color="tab:red", lw=1.4, label=r"theory spike $\lambda_\ell$")
                        right.append(s)
            ax.axvline(float(d["edge_emp"]), color="C0", ls=":", lw=1.2, label="empirical edge")
            ax.plot(emp, np.zeros_like(emp), ls="", marker="^", color="tab:red", ms=7,
                    clip_on=False, zorder=5, label="matched eigenvalue (mean)")
            # the store's bins reach 1.3x the largest prediction of the whole study: crop to
            # what this panel shows
            ax.set_xlim(min(0.0, lo[0]), 1.08 * max([*right, *emp, float(d["edge_emp"])]))
            ax.set_xlabel(r"eigenvalue of $K_\ell$")
            ax.set_ylabel("density" if j == 0 else "")
            ax.set_ylim(bottom=0)
            ax.set_title(_panel_title({**sel, "layer": layer})
                         + ("" if valid else " (theory not valid)") + _count_note(d, valid),
                         fontsize=9)
    _dedup_legend(fig, axes)
    return _save(fig, path, title)


def _dedup_legend(fig: Figure, axes: np.ndarray) -> None:
    seen: dict[str, Any] = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(lab, h)
    fig.legend(list(seen.values()), list(seen), loc="outside lower center",
               ncol=min(len(seen), 3), fontsize=8)


def curves_figure(mean: xr.DataArray, spread: xr.DataArray, theories: Sequence[xr.DataArray],
                  x: xr.DataArray, xname: str, hue: str, col: str | None, *, ylabel: str,
                  theory_labels: Sequence[str], invalid: xr.DataArray, attrs: Mapping[str, Any],
                  title: str, path: Path) -> Path:
    """Measured mean ± spread (points, error bars) and theory (lines) vs ``x``, one colour per hue.

    ``mean``, ``spread`` and each theory array have dims (hue, [col,] along-x); ``x`` gives the
    abscissa for each (hue, ...) so that a derived abscissa (η = η₀ N^a) can differ per curve.
    """
    cols = _facet_values(mean, col)
    fig, axes = _grid(1, len(cols), extra_w=0.2, sharex=False)
    hues = list(mean[hue].values)
    colours = [f"C{k % 10}" for k in range(len(hues))]
    styles = ["-", "--", ":"]
    xdim = [d for d in mean.dims if d not in (hue, col)][0]
    for j, cv in enumerate(cols):
        ax = axes[0, j]
        sel = _panel_sel(None, None, col, cv)
        bad = bool(invalid.sel(sel).all())
        for hv, c in zip(hues, colours, strict=True):
            s = {**sel, hue: hv}
            xv = x.sel(s).transpose(xdim).values if hue in x.dims or col in x.dims else x.values
            ax.errorbar(xv, mean.sel(s).values, yerr=spread.sel(s).values, fmt="o", ms=4,
                        color=c, capsize=2, label=f"{hue} = {hv}")
            for th, ls in zip(theories, styles, strict=False):
                if not bad:
                    ax.plot(xv, th.sel(s).values, ls=ls, color=c, lw=1.3)
        if axis_scale(mean[xdim]).log:
            ax.set_xscale("log")
        ax.set_xlabel(axis_label(xname, attrs))
        ax.set_ylabel(ylabel if j == 0 else "")
        if xname == "layer":
            ax.set_xticks(mean["layer"].values)
        ax.set_title(_panel_title(sel) + (" (theory not valid)" if bad else ""), fontsize=9)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    handles += [Line2D([], [], color="0.3", ls=ls, label=lab)
                for lab, ls in zip(theory_labels, styles, strict=False)]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4),
               fontsize=8)
    return _save(fig, path, title)
