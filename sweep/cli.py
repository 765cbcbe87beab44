"""The ``sweep`` command line: run | plan | status | query | map | theory | bench.

Heavy modules (Ray, zarr, matplotlib) are imported inside the commands that need them, so
``sweep --help`` and ``sweep theory`` start fast. Errors in user input print one line naming the
key or option and exit with status 2; a run with failed blocks exits with status 1.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    add_completion=False, no_args_is_help=True,
    help="Parameter sweeps over spiked conjugate-kernel spectra: measurements beside the theory.",
)


def _fail(msg: str, code: int = 2) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def _load(study: Path):  # -> Spec
    from sweep.spec import SpecError, load_spec

    try:
        return load_spec(study)
    except SpecError as exc:
        _fail(str(exc))


def _open(store: Path):  # -> xr.Dataset
    from sweep.store import StoreError, open_cube

    if store.suffix == ".toml":
        from sweep.runner import default_store

        store = default_store(_load(store))
    try:
        return open_cube(store)
    except StoreError as exc:
        _fail(str(exc))


@app.command()
def run(
    study: Annotated[Path, typer.Argument(help="study file (TOML)")],
    store: Annotated[Path | None, typer.Option(help="cube path (default results/<name>.zarr)")] = None,
    address: Annotated[str | None, typer.Option(
        help="Ray cluster to join ('auto', host:port, ray://...); default: start Ray in-process "
             "on loopback. RAY_ADDRESS is honoured too.")] = None,
    workers: Annotated[int | None, typer.Option(help="actors to start (default: CPUs / cpus_per_actor)")] = None,
    executor: Annotated[str, typer.Option(help="'ray' (default) or 'local' (in-process, for debugging)")] = "ray",
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="also rerun failed blocks")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace a store written by another study")] = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Run a study (or resume it: only pending blocks run) and write its cube."""
    from sweep.runner import run_study
    from sweep.store import StoreError

    spec = _load(study)
    try:
        out = run_study(spec, store, executor=executor, address=address, workers=workers,
                        retry_failed=retry_failed, overwrite=overwrite, progress=progress)
    except (StoreError, ValueError) as exc:
        _fail(str(exc))
    s = out.summary
    typer.echo(f"cube: {out.store}")
    typer.echo(f"blocks: {out.total_blocks} total, {out.skipped} already done, {s.done} computed now, "
               f"{len(s.failed)} failed, {s.retried} retried attempts, {s.actors_replaced} actors replaced")
    if s.done:
        ray_nodes = [k for k in s.nodes if k]
        nodes = f" on {len(ray_nodes)} node(s)" if ray_nodes else ""
        typer.echo(f"time: {s.wall_s:.1f} s wall, {s.task_s:.1f} s in tasks on {s.workers} worker(s){nodes}")
    if s.aborted:
        typer.echo(f"aborted: {s.aborted}", err=True)
    for key, err in s.failed.items():
        typer.echo(f"failed block {key}: {err}", err=True)
    if not out.ok:
        typer.echo("some blocks failed; see `sweep status`, fix, then rerun with --retry-failed", err=True)
        raise typer.Exit(1)


@app.command()
def plan(study: Annotated[Path, typer.Argument(help="study file (TOML)")]) -> None:
    """Validate a study and print its points, blocks, estimated time and memory."""
    from sweep.grid import (
        block_memory_bytes,
        blocks,
        default_workers,
        memory_budget_bytes,
        task_flops,
    )
    from sweep.perf import blas_gflops

    spec = _load(study)
    bl = blocks(spec)
    flops = sum(task_flops(spec, b) for b in bl)
    rate = blas_gflops(threads=spec.run.cpus_per_actor) * 1e9
    workers = spec.run.workers or default_workers(spec)
    typer.echo(f"study {spec.name} ({spec.experiment}), spec hash {spec.hash}")
    typer.echo("dimensions: " + ", ".join(f"{d}={n}" for d, n in zip(spec.dims, spec.shape, strict=True))
               + f", layer={len(spec.layers)}, k={spec.measure.top_k}, signal={spec.n_signals}")
    typer.echo(f"points: {math.prod(spec.shape)}; blocks (tasks): {len(bl)}")
    typer.echo(f"work: {flops / 1e9:.1f} GFlop at {rate / 1e9:.1f} GFlop/s per actor "
               f"-> about {flops / rate:.0f} s of compute, {flops / rate / workers:.0f} s on {workers} actor(s) "
               "(matmul floor; eigensolves and overheads add to it)")
    typer.echo(f"memory: {block_memory_bytes(spec) / 2**20:.0f} MiB per task, "
               f"budget {memory_budget_bytes(spec) / 2**30:.1f} GiB per actor")


@app.command()
def status(store: Annotated[Path, typer.Argument(help="cube path, or the study file")]) -> None:
    """Count done / failed / pending blocks of a cube and list failures with their errors."""
    import numpy as np

    cube = _open(store)
    st = cube["status"].values
    counts = {name: int((st == v).sum()) for name, v in (("done", 1), ("failed", 2), ("pending", 0))}
    typer.echo(f"{cube.attrs.get('study')}: {st.size} points — " +
               ", ".join(f"{v} {k}" for k, v in counts.items()))
    if counts["failed"]:
        err = cube["error"].values
        att = cube["attempts"].values
        seen = set()
        for idx in zip(*np.nonzero(st == 2), strict=True):
            where = ", ".join(f"{d}={cube[d].values[i]}" for d, i in zip(cube["status"].dims, idx, strict=True))
            key = (str(err[idx]), where)
            if key not in seen:
                seen.add(key)
                typer.echo(f"failed ({int(att[idx])} attempts) at {where}: {err[idx]}")
    if counts["failed"] or counts["pending"]:
        raise typer.Exit(1)


@app.command()
def query(
    store: Annotated[Path, typer.Argument(help="cube path, or the study file")],
    var: Annotated[list[str], typer.Option(help="variables to show (repeat)")] = ["eigval"],  # noqa: B006
    sel: Annotated[list[str], typer.Option(help="name=value (repeat); on the grid, to 3-4 digits")] = [],  # noqa: B006
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
    out: Annotated[Path | None, typer.Option(help="write to this file instead of the terminal")] = None,
) -> None:
    """Select from a cube and print a tidy table (or write CSV/JSON)."""
    from sweep.query import parse_selection, table

    cube = _open(store)
    try:
        df = table(cube, var, parse_selection(cube, sel))
    except (ValueError, KeyError) as exc:
        _fail(str(exc))
    if fmt == "csv":
        text = df.to_csv(index=False)
    elif fmt == "json":
        text = df.to_json(orient="records", indent=1)
    elif fmt == "table":
        text = df.to_string(index=False, max_rows=200)
    else:
        _fail(f"--format {fmt!r}: choose table, csv or json")
    if out:
        out.write_text(text)
        typer.echo(f"wrote {len(df)} rows to {out}")
    else:
        typer.echo(text)


@app.command(name="map")
def map_(
    store: Annotated[Path, typer.Argument(help="cube path, or the study file")],
    kind: Annotated[str, typer.Option(
        help="map kind: phase, breakdown, spectrum, alignment-depth or one-step-alignment "
             "(described above)")] = "phase",
    x: Annotated[str | None, typer.Option(help="x axis (a dimension)")] = None,
    y: Annotated[str | None, typer.Option(help="y axis (a dimension)")] = None,
    tol: Annotated[float, typer.Option(help="breakdown tolerance (relative error)")] = 0.05,
    metric: Annotated[str, typer.Option(
        help="breakdown metric: spike, align, edge, spike_realised, align_realised")] = "spike",
    sel: Annotated[list[str], typer.Option(help="name=value selections (repeat)")] = [],  # noqa: B006
    out: Annotated[Path, typer.Option(help="output folder")] = Path("results/maps"),
) -> None:
    """Draw a map from a cube: PNG + data (netCDF) + a printed table.

    Kinds:
    phase: detection probability, theory threshold and finite-n window;
    breakdown: theory vs simulation error, validity contour at --tol;
    spectrum: histograms with the theoretical density;
    alignment-depth; one-step-alignment.
    """
    from sweep.maps import make_map
    from sweep.query import parse_selection

    cube = _open(store)
    try:
        res = make_map(cube, kind, out, x=x, y=y, tol=tol, metric=metric,
                       select=parse_selection(cube, sel))
    except (ValueError, KeyError) as exc:
        _fail(str(exc))
    typer.echo(res.table)
    for p in res.pngs:
        typer.echo(f"figure: {p}")
    typer.echo(f"data: {res.data_path}")


@app.command()
def theory(
    activation: Annotated[str, typer.Option(help="activation name")] = "tanh",
    input_ratio: Annotated[float, typer.Option(help="d0 / n")] = 2.0,
    width_ratio: Annotated[float, typer.Option(help="d_l / n for every hidden layer")] = 2.0,
    depth: Annotated[int, typer.Option(help="deepest layer L")] = 2,
    spike: Annotated[list[float], typer.Option(help="spike strength theta (repeat for several)")] = [2.0],  # noqa: B006
    input_model: Annotated[str, typer.Option("--input", help="gmm or spiked_cov")] = "gmm",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON (one object per layer and spike)")] = False,
) -> None:
    """Print the theory's predictions per layer: edge, spike location, alignment, survival."""
    from kernels.activations import UnknownActivationError
    from kernels.theory import deep_ck_prediction

    if depth < 0:
        _fail("--depth: must be >= 0")
    try:
        pred = deep_ck_prediction(activation, input_ratio, [width_ratio] * depth, spike,
                                  input_model=input_model)
    except (UnknownActivationError, ValueError) as exc:
        _fail(str(exc))
    rows = []
    for i, theta in enumerate(spike):
        for layer in range(depth + 1):
            surv = bool(pred.survives[i, layer])
            loc = float(pred.location[i, layer])
            rows.append({
                "layer": layer, "spike_strength": theta, "edge": float(pred.edge[layer]),
                "location": loc if surv and math.isfinite(loc) else None,
                "alignment": float(pred.alignment[i, layer]), "survives": surv,
                "threshold": float(pred.threshold[layer]), "valid": bool(pred.valid),
            })
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    if not pred.valid:
        typer.echo(f"note: theory not valid here: {pred.reason}")
    typer.echo(f"{'layer':>5} {'theta':>7} {'edge':>9} {'spike':>9} {'align':>8} {'survives':>8} {'theta*':>8}")
    for r in rows:
        loc = f"{r['location']:9.5f}" if r["location"] is not None else f"{'absorbed':>9}"
        typer.echo(f"{r['layer']:>5} {r['spike_strength']:7.3f} {r['edge']:9.5f} {loc} "
                   f"{r['alignment']:8.5f} {str(r['survives']):>8} {r['threshold']:8.5f}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(
    ctx: typer.Context,
    what: Annotated[str, typer.Argument(help="layers | theory | training | overhead")] = "overhead",
) -> None:
    """Run a benchmark script and print its figures (not a test).

    Options after WHAT go to the script: `sweep bench layers --window --sizes 500`
    (`python -m kernels.bench.layers --help` lists them).
    """
    import runpy

    modules = {"layers": "kernels.bench.layers", "theory": "kernels.bench.theory",
               "training": "kernels.bench.training", "overhead": "sweep.bench_overhead"}
    if what not in modules:
        _fail(f"bench {what!r}: choose one of {sorted(modules)}")
    sys.argv = [modules[what], *ctx.args]
    runpy.run_module(modules[what], run_name="__main__")


if __name__ == "__main__":
    app()
