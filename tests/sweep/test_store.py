"""The zarr cube: template once, whole-chunk block writes, ledger, refusal of foreign stores, lock."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr

from sweep.grid import blocks, chunk_shape
from sweep.schema import empty_block, variables
from sweep.spec import parse_spec
from sweep.store import (
    StoreError,
    StoreLock,
    block_status,
    consolidate,
    open_cube,
    pending_blocks,
    prepare_store,
    write_block,
    write_failure,
)

STUDY = """
[study]
name = "s"
experiment = "deep-ck"
seed = 1
replicates = 2
[fixed]
n = 50
depth = 2
[axes]
spike = [0.5, 1.0, 1.5]
activation = ["tanh", "sin"]
[measure]
top_k = 3
[run]
block = { spike = 2 }
"""


@pytest.fixture()
def spec():
    return parse_spec(STUDY)


def _fake_values(spec, block, value: float) -> dict[str, np.ndarray]:
    vals = empty_block(spec, block.shape)
    for arr in vals.values():
        if arr.dtype.kind == "f":
            arr[...] = value
        else:
            arr[...] = 1
    return vals


def test_template_has_contract_names_and_long_names(spec, tmp_path: Path) -> None:
    path = tmp_path / "c.zarr"
    assert prepare_store(spec, path) is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cube = open_cube(path)
    assert set(cube.dims) == {"spike", "activation", "replicate", "layer", "k", "signal"}
    for name in ("eigval", "edge_emp", "n_outliers", "align", "theory_spike", "theory_edge",
                 "theory_align", "theory_survives", "theory_valid", "status", "attempts",
                 "wall_s", "error"):
        assert name in cube.data_vars
    for name, var in cube.variables.items():
        assert var.attrs.get("long_name"), name
    assert cube["eigval"].dims == ("spike", "activation", "replicate", "layer", "k")
    assert cube["theory_spike"].dims == ("spike", "activation", "layer", "signal")
    assert (cube["status"].values == 0).all()
    assert list(cube["activation"].values) == ["tanh", "sin"]
    assert cube.attrs["spec_hash"] == spec.hash and "[study]" in cube.attrs["study_toml"]
    assert json.loads(cube.attrs["fixed"])["n"] == 50


def test_chunks_equal_blocks(spec, tmp_path: Path) -> None:
    path = tmp_path / "c.zarr"
    prepare_store(spec, path)
    group = zarr.open_group(path, mode="r")
    cs = dict(zip(spec.dims, chunk_shape(spec), strict=True))
    for name, v in variables(spec).items():
        dims = v.dims(spec)
        expect = tuple(cs.get(d, group[name].shape[i]) for i, d in enumerate(dims))
        assert group[name].chunks == expect, name


def test_block_writes_and_ledger(spec, tmp_path: Path) -> None:
    path = tmp_path / "c.zarr"
    prepare_store(spec, path)
    bl = blocks(spec)
    write_block(spec, path, bl[0], _fake_values(spec, bl[0], 3.5), wall_s=0.25, attempts=1)
    write_failure(spec, path, bl[1], error="boom", attempts=3)
    st = block_status(spec, path)
    assert st[bl[0].index] == 1 and st[bl[1].index] == 2
    assert all(st[b.index] == 0 for b in bl[2:])
    assert [b.index for b in pending_blocks(spec, path)] == [b.index for b in bl[2:]]
    assert len(pending_blocks(spec, path, retry_failed=True)) == len(bl) - 1
    consolidate(path)
    cube = open_cube(path)
    sub = cube.isel(dict(zip(spec.dims, bl[0].slices, strict=True)))
    assert float(sub["eigval"].min()) == 3.5 and float(sub["wall_s"].max()) == 0.25
    other = cube.isel(dict(zip(spec.dims, bl[2].slices, strict=True)))
    assert np.isnan(other["eigval"].values).all()
    failed = cube.isel(dict(zip(spec.dims, bl[1].slices, strict=True)))
    assert set(np.unique(failed["error"].values)) == {"boom"}
    assert int(failed["attempts"].max()) == 3


def test_same_spec_resumes_other_spec_refused(spec, tmp_path: Path) -> None:
    path = tmp_path / "c.zarr"
    assert prepare_store(spec, path) is True
    assert prepare_store(spec, path) is False
    other = parse_spec(STUDY.replace("seed = 1", "seed = 2"))
    with pytest.raises(StoreError, match="different study"):
        prepare_store(other, path)
    assert prepare_store(other, path, overwrite=True) is True
    assert open_cube(path).attrs["spec_hash"] == other.hash


def test_unwritable_location_refused_before_work(spec, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root ignores permission bits; a path under a regular file cannot be created by anyone
        blocker = tmp_path / "file"
        blocker.write_text("x")
        target = blocker / "sub" / "c.zarr"
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = ro / "c.zarr"
    with pytest.raises(StoreError, match="cannot"):
        prepare_store(spec, target)


def test_lock_refuses_live_holder_and_takes_over_dead(spec, tmp_path: Path) -> None:
    path = tmp_path / "c.zarr"
    prepare_store(spec, path)
    with StoreLock(path):
        with pytest.raises(StoreError, match="in use by another sweep driver"):
            StoreLock(path).acquire()
    # a lock left by a process that is gone is taken over
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    path.with_name("c.zarr.lock").write_text(json.dumps(
        {"host": socket.gethostname(), "pid": int(dead.stdout), "since": "then"}))
    lock = StoreLock(path)
    lock.acquire()
    assert lock.held
    lock.release()
    assert not path.with_name("c.zarr.lock").exists()
