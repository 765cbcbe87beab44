"""The result cube on zarr: template, single-writer block writes, ledger, provenance, lock, resume.

Rules (from data-loss reports in xarray and zarr): one writer only (the driver); the template
(coordinates, attributes, empty variables) is written once before any result; every write
covers whole chunks (a chunk is one block); the ledger ``status`` of a block is written last,
so ``status == done`` implies its data are on disk; consolidated metadata is rewritten at the
end of every run. A lock file keeps a second driver off a store in use; a lock whose process is
gone (same host) is taken over.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from sweep.grid import Block, blocks, chunk_shape
from sweep.schema import STATUS_DONE, STATUS_FAILED, STATUS_PENDING, variables
from sweep.spec import Spec

__all__ = [
    "StoreError",
    "StoreLock",
    "block_status",
    "check_space",
    "check_writable",
    "create_store",
    "estimate_bytes",
    "histogram_edges",
    "open_cube",
    "pending_blocks",
    "prepare_store",
    "write_block",
    "write_failure",
]

LOCK_SUFFIX = ".lock"


class StoreError(RuntimeError):
    """The store cannot be used for this run (different study, locked, unwritable)."""


def _coords(spec: Spec) -> dict[str, Any]:
    coords: dict[str, Any] = {}
    for name, vals in spec.axes.items():
        arr = np.array(vals, dtype=object) if isinstance(vals[0], str) else np.array(vals)
        coords[name] = (name, arr)
    coords["replicate"] = ("replicate", np.arange(spec.replicates))
    coords["layer"] = ("layer", np.array(spec.layers))
    coords["k"] = ("k", np.arange(spec.measure.top_k))
    coords["signal"] = ("signal", np.arange(spec.n_signals))
    if spec.spikes is not None:
        coords["signal_strength"] = ("signal", np.array(spec.spikes))
    if spec.measure.histogram_bins and spec.experiment == "deep-ck":
        edges = histogram_edges(spec)
        coords["bin_lo"] = (("layer", "bin"), edges[:, :-1])
        coords["bin_hi"] = (("layer", "bin"), edges[:, 1:])
    return coords


def histogram_edges(spec: Spec) -> np.ndarray:
    """Bin edges (layer, bins + 1): [0, 1.3 x max predicted edge or spike in the study]."""
    from sweep.task import theory_for_point

    top = np.zeros(len(spec.layers))
    grid_shape = spec.shape[:-1]
    for idx in np.ndindex(*grid_shape):
        t = theory_for_point(spec, spec.values_at((*idx, 0)))
        top = np.fmax(top, np.fmax(t["theory_edge"], np.nanmax(t["theory_spike"], axis=1,
                                                              initial=0.0)))
    return np.stack([np.linspace(0.0, 1.3 * t, spec.measure.histogram_bins + 1) for t in top])


def _git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def provenance(spec: Spec) -> dict[str, str]:
    """Attributes recording what produced the cube."""
    from importlib.metadata import PackageNotFoundError, version

    import scipy

    from kernels.backend import blas_info

    try:
        pkg = version("spikesweep")
    except PackageNotFoundError:
        pkg = "unknown"
    libs = {"numpy": np.__version__, "scipy": scipy.__version__, "xarray": xr.__version__,
            "zarr": zarr.__version__}
    try:
        libs["ray"] = version("ray")
    except PackageNotFoundError:
        pass
    return {
        "study": spec.name, "experiment": spec.experiment, "description": spec.description,
        "spec_hash": spec.hash, "study_toml": spec.text, "fixed": json.dumps(spec.fixed),
        "spikes": json.dumps(spec.spikes), "seed": str(spec.seed),
        "spikesweep_version": pkg, "git_commit": _git_commit(),
        "libraries": json.dumps(libs), "blas": json.dumps(blas_info(), default=str),
        "backend": f"{spec.run.backend}/{spec.run.dtype}",
        "python": platform.python_version(), "host": socket.gethostname(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def template(spec: Spec) -> xr.Dataset:
    """Build the empty cube: coordinates, attributes and every variable at its fill value."""
    sizes = {**dict(zip(spec.dims, spec.shape, strict=True)), "layer": len(spec.layers),
             "k": spec.measure.top_k, "signal": spec.n_signals, "bin": spec.measure.histogram_bins}
    data_vars = {}
    for name, v in variables(spec).items():
        dims = v.dims(spec)
        shape = tuple(sizes[d] for d in dims)
        dtype = object if v.dtype == "str" else v.dtype
        attrs = {"long_name": v.long_name}
        if v.units:
            attrs["units"] = v.units
        data_vars[name] = (dims, np.full(shape, v.fill, dtype=dtype), attrs)
    ds = xr.Dataset(data_vars, coords=_coords(spec), attrs=provenance(spec))
    for name in spec.axes:
        pdef = spec.params[name]
        ds[name].attrs["long_name"] = pdef.doc
    ds["replicate"].attrs["long_name"] = "independent replicate (own noise and weights)"
    ds["layer"].attrs["long_name"] = "layer (0 = input Gram)" if spec.experiment == "deep-ck" \
        else "trained layer (test-data conjugate kernel)"
    ds["k"].attrs["long_name"] = "eigenvalue rank (0 = largest)"
    ds["signal"].attrs["long_name"] = "input signal index" if spec.experiment == "deep-ck" \
        else "test labels"
    if "signal_strength" in ds.coords:
        ds["signal_strength"].attrs["long_name"] = "spike strength theta of each signal"
    if "bin_lo" in ds.coords:
        ds["bin_lo"].attrs["long_name"] = "histogram bin lower edge"
        ds["bin_hi"].attrs["long_name"] = "histogram bin upper edge"
    return ds


def _encoding(spec: Spec, ds: xr.Dataset) -> dict[str, dict]:
    cs = dict(zip(spec.dims, chunk_shape(spec), strict=True))
    enc = {}
    for name, var in ds.data_vars.items():
        enc[name] = {"chunks": tuple(cs.get(d, var.sizes[d]) for d in var.dims)}
    return enc


@contextlib.contextmanager
def _quiet_v3() -> Iterator[None]:
    # consolidated metadata is an extension in zarr v3; zarr warns on every write of it
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Consolidated metadata.*")
        yield


def create_store(spec: Spec, path: Path) -> None:
    """Write the template to a new store at ``path`` (coordinates, attrs, fill values), once.

    A template that cannot be written completely (disk full mid-way) is removed again, so a
    half-written store never blocks the next run.
    """
    ds = template(spec)
    try:
        with _quiet_v3():
            ds.to_zarr(path, mode="w-", zarr_format=3, consolidated=True,
                       encoding=_encoding(spec, ds))
    except OSError as exc:
        shutil.rmtree(path, ignore_errors=True)
        raise StoreError(f"store: cannot write the template at {str(path)!r} "
                         f"({exc.strerror or exc}); nothing was computed") from None


def estimate_bytes(spec: Spec) -> int:
    """Upper bound of the finished cube's size on disk: every variable uncompressed.

    Measured values are floats with little redundancy (zstd saves a few per cent), so the bound
    is close for a complete cube; strings are counted at 16 bytes.
    """
    sizes = {**dict(zip(spec.dims, spec.shape, strict=True)), "layer": len(spec.layers),
             "k": spec.measure.top_k, "signal": spec.n_signals, "bin": spec.measure.histogram_bins}
    total = 0
    for v in variables(spec).values():
        count = math.prod(sizes[d] for d in v.dims(spec))
        total += count * (16 if v.dtype == "str" else np.dtype(v.dtype).itemsize)
    return total


def _existing_ancestor(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_space(spec: Spec, path: Path, fraction: float = 1.0) -> None:
    """Refuse, before any work, a disk without room for ``fraction`` of the cube (plus 1 MiB)."""
    need = int(estimate_bytes(spec) * fraction) + 2**20
    try:
        free = shutil.disk_usage(_existing_ancestor(path)).free
    except OSError:
        return
    if free < need:
        raise StoreError(f"store: {free / 2**20:.1f} MiB free at {str(_existing_ancestor(path))!r} "
                         f"but the cube needs up to {need / 2**20:.1f} MiB; free space or use "
                         "--store to write elsewhere")


def check_writable(path: Path) -> None:
    """Refuse, before any work, a store location that cannot be written."""
    parent = path if path.exists() else path.parent
    parent.mkdir(parents=True, exist_ok=True)
    probe = parent / f".spikesweep-write-probe-{os.getpid()}"
    try:
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise StoreError(f"store: cannot write in {str(parent)!r} ({exc.strerror})") from None


def prepare_store(spec: Spec, path: Path, *, overwrite: bool = False) -> bool:
    """Create the store, or check that an existing one belongs to this spec. True if created.

    A store written by a different spec (another hash) is refused unless ``overwrite``.
    """
    try:
        check_writable(path)
    except OSError as exc:
        raise StoreError(f"store: cannot create {str(path)!r} ({exc})") from None
    if path.exists():
        try:
            group = zarr.open_group(path, mode="r")
            old = group.attrs.get("spec_hash")
        except Exception:  # not a zarr store, or a half-written template
            old = None
        if old == spec.hash and "status" in group:
            status = block_status(spec, path)
            left = sum(v != STATUS_DONE for v in status.values()) / max(1, len(status))
            check_space(spec, path, left)
            return False
        if not overwrite:
            what = f"written by a different study (spec hash {old} != {spec.hash})" if old \
                else "not a spikesweep cube"
            raise StoreError(f"store {str(path)!r} exists and is {what}; use --overwrite to "
                             "replace it or --store to write elsewhere")
        shutil.rmtree(path)
    check_space(spec, path)
    create_store(spec, path)
    return True


def _open_arrays(path: Path) -> zarr.Group:
    return zarr.open_group(path, mode="r+", zarr_format=3)


def _region(spec: Spec, block: Block, dims: tuple[str, ...]) -> tuple[slice, ...]:
    by_dim = dict(zip(spec.dims, block.slices, strict=True))
    return tuple(by_dim.get(d, slice(None)) for d in dims)


def _check_whole_chunks(name: str, arr: zarr.Array, region: tuple[slice, ...]) -> None:
    """Refuse a write that would cover part of a chunk (a read-modify-write that can lose data)."""
    for dim, (sl, n, c) in enumerate(zip(region, arr.shape, arr.chunks, strict=True)):
        start, stop, _ = sl.indices(n)
        if start % c or (stop % c and stop != n):
            raise StoreError(f"{name}: write of [{start}:{stop}] along axis {dim} does not cover "
                             f"whole chunks of {c}; refusing (only whole-chunk writes are safe)")


def _put(group: zarr.Group, name: str, region: tuple[slice, ...], value: Any) -> None:
    arr = group[name]
    _check_whole_chunks(name, arr, region)
    arr[region] = value


def _erase_block(spec: Spec, group: zarr.Group, block: Block) -> None:
    """Reset a block after a failed write (best effort): status to pending first, then the rest.

    Variables whose chunks belong to this block alone go back to their fill value (zarr deletes
    chunks equal to the fill value, so this frees space on a full disk). Chunks shared with
    other blocks are left alone: theory variables have no ``replicate`` dimension, so blocks of
    different replicates write the same theory chunk, with identical values, and a finished
    sibling's chunk must not be wiped. Chunk writes are atomic (write, then rename), so a failed
    write never leaves a torn chunk behind.
    """
    vdefs = variables(spec)
    for name in ["status", *(n for n in vdefs if n != "status")]:
        v = vdefs[name]
        dims = v.dims(spec)
        shared = any(d not in dims and (a, b) != (0, n) for d, a, b, n in
                     zip(spec.dims, block.start, block.stop, spec.shape, strict=True))
        if shared:
            continue
        region = _region(spec, block, dims)
        try:
            group[name][region] = "" if v.dtype == "str" else v.fill
        except Exception:  # the store is failing; what cannot be erased stays pending anyway
            continue


def _guarded(spec: Spec, path: Path, group: zarr.Group, block: Block, write: Any) -> None:
    try:
        write()
    except OSError as exc:
        _erase_block(spec, group, block)
        raise StoreError(
            f"store {str(path)!r}: writing block {block.key} failed ({exc.strerror or exc}); "
            "the run stops. Blocks already marked done are intact and this one stays pending: "
            "free space (or make the store writable) and rerun to resume"
        ) from None


def write_block(spec: Spec, path: Path, block: Block, values: dict[str, np.ndarray], *,
                wall_s: float, attempts: int, group: zarr.Group | None = None) -> None:
    """Write one finished block (whole chunks), then mark its points done.

    Data first, ledger ``status`` last: a crash between the two leaves the block pending, and a
    resume recomputes and rewrites the same values. A write that fails (disk full, read-only
    store) erases the block's partial chunks and raises :class:`StoreError`.
    """
    group = group or _open_arrays(path)
    vdefs = variables(spec)

    def write() -> None:
        for name, arr in values.items():
            _put(group, name, _region(spec, block, vdefs[name].dims(spec)), arr)
        _write_ledger(spec, group, block, status=STATUS_DONE, attempts=attempts, wall_s=wall_s,
                      error="", shape=block.shape)

    _guarded(spec, path, group, block, write)


def write_failure(spec: Spec, path: Path, block: Block, *, error: str, attempts: int,
                  wall_s: float = float("nan"), group: zarr.Group | None = None) -> None:
    """Mark a block failed with its error (its measured values stay at their fill values)."""
    group = group or _open_arrays(path)
    _guarded(spec, path, group, block, lambda: _write_ledger(
        spec, group, block, status=STATUS_FAILED, attempts=attempts, wall_s=wall_s,
        error=error[-2000:], shape=block.shape))


def _write_ledger(spec: Spec, group: zarr.Group, block: Block, *, status: int, attempts: int,
                  wall_s: float, error: str, shape: tuple[int, ...]) -> None:
    region = _region(spec, block, spec.dims)
    _put(group, "error", region, np.full(shape, error, dtype=object))
    _put(group, "attempts", region, np.full(shape, attempts, dtype=np.int16))
    _put(group, "wall_s", region, np.full(shape, wall_s))
    _put(group, "status", region, np.full(shape, status, dtype=np.int8))


def block_status(spec: Spec, path: Path) -> dict[tuple[int, ...], int]:
    """Status of every block (pending unless all its points are done or any failed)."""
    status = np.asarray(zarr.open_group(path, mode="r")["status"][...])
    out = {}
    for b in blocks(spec):
        s = status[b.slices]
        out[b.index] = STATUS_FAILED if (s == STATUS_FAILED).any() else \
            STATUS_DONE if (s == STATUS_DONE).all() else STATUS_PENDING
    return out


def pending_blocks(spec: Spec, path: Path, *, retry_failed: bool = False) -> list[Block]:
    """Blocks still to run: pending ones, plus failed ones when ``retry_failed``."""
    st = block_status(spec, path)
    todo = {STATUS_PENDING, STATUS_FAILED} if retry_failed else {STATUS_PENDING}
    return [b for b in blocks(spec) if st[b.index] in todo]


def consolidate(path: Path) -> None:
    """Rewrite the consolidated metadata (end of every run, resumed ones included).

    The root ``zarr.json`` is replaced atomically, so a failure keeps the previous, still valid
    metadata (the template's arrays and attributes never change after creation).
    """
    try:
        with _quiet_v3():
            zarr.consolidate_metadata(str(path))
    except OSError as exc:
        raise StoreError(f"store {str(path)!r}: could not rewrite the consolidated metadata "
                         f"({exc.strerror or exc}); the data written are intact, rerun to "
                         "consolidate") from None


def open_cube(path: str | Path) -> xr.Dataset:
    """Open a cube lazily with xarray (what ``xarray.open_zarr`` gives, without warnings)."""
    p = Path(path)
    if not (p / "zarr.json").exists():
        raise StoreError(f"{str(p)!r} is not a spikesweep cube (no zarr.json)")
    return xr.open_zarr(p, consolidated=True)


class StoreLock:
    """An exclusive lock file beside the store (``<store>.lock``), held by one driver at a time.

    The file records host and pid, and the holder touches it every ``heartbeat_s`` seconds. A
    live holder is refused with its name; a lock is taken over when its driver is gone: same
    host and pid gone, or (any host, e.g. a driver on another machine of a shared file system)
    no heartbeat for ``stale_after_s`` seconds. A dead driver never leaves a store locked for good.
    """

    def __init__(self, path: Path, *, heartbeat_s: float = 30.0, stale_after_s: float = 300.0):
        if not 0 < heartbeat_s < stale_after_s:
            raise ValueError(f"heartbeat_s: {heartbeat_s} must be > 0 and < stale_after_s "
                             f"({stale_after_s})")
        self.file = path.with_name(path.name + LOCK_SUFFIX)
        self.store = path
        self.heartbeat_s, self.stale_after_s = heartbeat_s, stale_after_s
        self.held = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`StoreError` naming the holder."""
        me = {"host": socket.gethostname(), "pid": os.getpid(),
              "since": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
        for _ in range(3):
            try:
                fd = os.open(self.file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder, age = self._holder(), self._age()
                if age is None:  # released between our open and our look: try again
                    continue
                if self._stale(holder, age):
                    self._take_over(holder)
                    continue
                who = (f"pid {holder.get('pid')} on {holder.get('host')} "
                       f"since {holder.get('since')}") if holder else "an unknown process"
                raise StoreError(
                    f"store {str(self.store)!r} is in use by another sweep driver ({who}, last "
                    f"heartbeat {age:.0f} s ago); wait for it to finish. A lock whose driver is "
                    f"gone is taken over automatically (same host at once, other hosts after "
                    f"{self.stale_after_s:g} s without heartbeat), or remove {str(self.file)!r}"
                ) from None
            except OSError as exc:
                raise StoreError(f"store: cannot create the lock {str(self.file)!r} "
                                 f"({exc.strerror or exc})") from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            self._stop.clear()
            self._beat = threading.Thread(target=self._heartbeat, name="spikesweep-lock",
                                          daemon=True)
            self._beat.start()
            return
        raise StoreError(f"could not take the lock {str(self.file)!r}")

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.file)
            except OSError:  # a full or flaky disk must not kill the driver; staleness is lenient
                pass

    def _holder(self) -> dict:
        try:
            out = json.loads(self.file.read_text())
        except (OSError, ValueError):  # empty: the holder died between create and write
            return {}
        return out if isinstance(out, dict) else {}

    def _age(self) -> float | None:
        try:
            return max(0.0, time.time() - self.file.stat().st_mtime)
        except FileNotFoundError:
            return None

    def _stale(self, holder: dict, age: float) -> bool:
        if age > self.stale_after_s:
            return True
        if holder.get("host") != socket.gethostname():
            return False
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, KeyError, ValueError, TypeError):
            return False
        return False

    def _take_over(self, seen: dict) -> None:
        # remove only the lock we judged stale, not one a third driver created meanwhile
        if self._holder() == seen:
            self.file.unlink(missing_ok=True)

    def release(self) -> None:
        """Drop the lock if this process holds it."""
        if self.held:
            self._stop.set()
            if self._beat is not None:
                self._beat.join(timeout=5)
            self.file.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
