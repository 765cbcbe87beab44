"""Faults injected for real; nothing finished is lost and the cube is complete or says what failed.

Ray faults run on the shared loopback cluster (tests/sweep/conftest.py) with drivers started as
the README says (``sweep run STUDY --address HOST:PORT``). A ``pause-once`` fault
(sweep/faults.py) holds one block in flight and names its worker pid and node, so the test
strikes at a known moment: SIGKILL of the worker, removal of its node, SIGKILL of the driver, a
full disk. Storage faults use small tmpfs mounts (a read-only one, and one the test fills);
they are skipped with the reason where this process may not mount.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr

from sweep.faults import pause_marker
from sweep.grid import Block, blocks, point_memory_bytes
from sweep.runner import run_study
from sweep.spec import parse_spec
from sweep.store import StoreError, StoreLock, open_cube, prepare_store, write_block
from sweep.task import run_block
from tests.sweep.conftest import (
    PROVENANCE_ATTRS,
    TINY_STUDY,
    assert_cubes_equal,
    block_status_map,
    sweep_exe,
    tiny_study_text,
    wait_for,
)

SPEC = parse_spec(TINY_STUDY)
KEYS = [b.key for b in blocks(SPEC)]  # "0.0.0", "0.0.1", "0.1.0", ..., "0.2.1"


# ---------------------------------------------------------------- helpers

def _driver(cluster, tmp_path: Path, *args: str, faults: str = "", study: str = TINY_STUDY,
            store: Path | None = None, env: dict | None = None) -> subprocess.Popen:
    """Start ``sweep run`` against the cluster in the background (faults forwarded to workers)."""
    study_file = tmp_path / "tiny.toml"
    study_file.write_text(study)
    run_env = {**cluster.env, **(env or {})}
    if faults:
        (tmp_path / "faults").mkdir(exist_ok=True)
        run_env.update(SPIKESWEEP_FAULTS=faults, SPIKESWEEP_FAULTS_DIR=str(tmp_path / "faults"))
    cmd = [*sweep_exe(), "run", str(study_file), "--address", cluster.address, "--store",
           str(store or tmp_path / "cube.zarr"), "--no-progress", *args]
    return subprocess.Popen(cmd, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"driver still running after {timeout} s\n{out}\n{err}") from None
    return proc.returncode, out, err


def _sweep(*args: str, env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([*sweep_exe(), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _paused(tmp_path: Path, key: str) -> dict | None:
    marker = pause_marker(tmp_path / "faults", key)
    return json.loads(marker.read_text()) if marker.exists() else None


def _block_values(cube, key: str):
    block = next(b for b in blocks(SPEC) if b.key == key)
    return cube.isel(dict(zip(SPEC.dims, block.slices, strict=True)))


def _ledger(path: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(path, mode="r")
    return {name: np.asarray(group[name][...]) for name in ("status", "attempts", "wall_s")}


@pytest.fixture()
def cleanup() -> Iterator[list]:
    """Processes a test started, killed (by pid) if the test fails before they end."""
    procs: list[subprocess.Popen] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)


# ---------------------------------------------------------------- worker and node loss

def test_worker_sigkilled_mid_block_is_retried_elsewhere(loopback_cluster, reference_cube,
                                                         tmp_path: Path, cleanup) -> None:
    key = "0.1.0"
    proc = _driver(loopback_cluster, tmp_path, "--workers", "2", faults=f"pause-once:{key}")
    cleanup.append(proc)
    victim = wait_for(lambda: _paused(tmp_path, key), 120, f"block {key} to start")
    os.kill(victim["pid"], signal.SIGKILL)  # the worker process holding the block, from outside
    rc, out, err = _finish(proc)
    assert rc == 0, err
    assert "6 computed now, 0 failed, 1 retried attempts, 1 actors replaced" in out
    cube = open_cube(tmp_path / "cube.zarr")
    assert_cubes_equal(cube, reference_cube, ignore_vars=("wall_s", "attempts"))
    attempts = {k: int(_block_values(cube, k)["attempts"].max()) for k in KEYS}
    assert attempts == {k: 2 if k == key else 1 for k in KEYS}
    actors = loopback_cluster.actors_of_driver(proc.pid)
    assert len(actors) == 3  # two started, one replacement
    assert [a["state"] for a in actors if a["pid"] == victim["pid"]] == ["DEAD"]


def test_node_removed_mid_sweep(loopback_cluster, reference_cube, tmp_path: Path,
                                cleanup) -> None:
    key = "0.1.0"
    proc = _driver(loopback_cluster, tmp_path, "--workers", "2", faults=f"pause-once:{key}")
    cleanup.append(proc)
    victim = wait_for(lambda: _paused(tmp_path, key), 120, f"block {key} to start")
    node = victim["node_id"]
    args = loopback_cluster.nodes[node]
    try:
        loopback_cluster.remove_node(node)  # raylet and all its workers killed at once
        rc, out, err = _finish(proc)
    finally:
        loopback_cluster.add_node(**args)  # the next tests get two worker nodes again
    assert rc == 0, err
    assert "6 computed now, 0 failed" in out
    cube = open_cube(tmp_path / "cube.zarr")
    assert_cubes_equal(cube, reference_cube, ignore_vars=("wall_s", "attempts"))
    assert int(_block_values(cube, key)["attempts"].max()) == 2
    placed = {a["node_id"] for a in loopback_cluster.actors_of_driver(proc.pid) if a["node_id"]}
    assert node in placed and len(placed) == 2


# ---------------------------------------------------------------- the driver

def test_driver_sigkilled_resume_recomputes_only_what_was_not_written(
        loopback_cluster, reference_cube, tmp_path: Path, cleanup) -> None:
    """Also: a second driver on a store in use is refused; the dead driver's lock is not."""
    key = KEYS[-1]
    store = tmp_path / "cube.zarr"
    first = _driver(loopback_cluster, tmp_path, "--workers", "2", faults=f"pause-once:{key}")
    cleanup.append(first)
    wait_for(lambda: _paused(tmp_path, key), 120, f"block {key} to start")
    wait_for(lambda: sum(v == 1 for v in block_status_map(store).values()) == 5, 120,
             "the other five blocks to be written")
    second = _sweep("run", str(tmp_path / "tiny.toml"), "--address", loopback_cluster.address,
                    "--store", str(store), "--no-progress", env=loopback_cluster.env)
    assert second.returncode == 2
    assert "in use by another sweep driver" in second.stderr
    assert f"pid {first.pid}" in second.stderr
    before = _ledger(store)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert store.with_name(store.name + ".lock").exists()  # left behind by the dead driver
    again = _sweep("run", str(tmp_path / "tiny.toml"), "--address", loopback_cluster.address,
                   "--store", str(store), "--no-progress", env=loopback_cluster.env)
    assert again.returncode == 0, again.stderr
    assert "6 total, 5 already done, 1 computed now, 0 failed" in again.stdout
    after = _ledger(store)
    done = before["status"] == 1
    assert done.sum() == 10  # 5 blocks x 2 points
    for name in ("attempts", "wall_s"):  # untouched: the finished blocks were not recomputed
        np.testing.assert_array_equal(after[name][done], before[name][done])
    assert_cubes_equal(open_cube(store), reference_cube)


# ---------------------------------------------------------------- blocks that fail

def test_poison_and_hanging_blocks_recorded_then_retry_failed_reruns_exactly_them(
        loopback_cluster, reference_cube, tmp_path: Path) -> None:
    poison, hang = "0.0.1", "0.1.0"
    study = tiny_study_text(timeout_s=6)
    proc = _driver(loopback_cluster, tmp_path, "--workers", "2", study=study,
                   faults=f"raise:{poison};hang:{hang}")
    rc, out, err = _finish(proc)
    assert rc == 1
    assert "4 computed now, 2 failed, 2 retried attempts, 2 actors replaced" in out
    assert f"failed block {poison}: RuntimeError: injected fault in block {poison}" in err
    assert f"failed block {hang}: timed out after 6 s (run.timeout_s)" in err
    store = tmp_path / "cube.zarr"
    status = _sweep("status", str(store), env=loopback_cluster.env)
    assert status.returncode == 1
    assert "8 done, 4 failed, 0 pending" in status.stdout
    assert f"failed (2 attempts) at spike=0.5, activation=tanh, replicate=1: RuntimeError: " \
           f"injected fault in block {poison}" in status.stdout
    assert "activation=sin, replicate=0: timed out after 6 s" in status.stdout
    cube = open_cube(store)
    for key in KEYS:
        got = _block_values(cube, key)
        if key in (poison, hang):
            assert (got["status"].values == 2).all() and np.isnan(got["eigval"].values).all()
        else:  # the rest finished, with the undisturbed numbers
            want = _block_values(reference_cube, key)
            for name in ("eigval", "align", "theory_spike", "status"):
                np.testing.assert_array_equal(got[name].values, want[name].values)
    before = _ledger(store)
    retry = _driver(loopback_cluster, tmp_path, "--retry-failed", study=study)
    rc, out, err = _finish(retry)
    assert rc == 0, err
    assert "6 total, 4 already done, 2 computed now, 0 failed" in out
    after = _ledger(store)
    kept = before["status"] == 1
    np.testing.assert_array_equal(after["wall_s"][kept], before["wall_s"][kept])
    assert_cubes_equal(open_cube(store), reference_cube,
                       ignore_attrs=PROVENANCE_ATTRS | {"study_toml"})


def _too_big_n() -> tuple[int, float]:
    """An n whose matrices need about twice the memory this machine has free (and a budget that
    lets the study through the driver's check), so the worker must refuse it."""
    from sweep.execute import memory_limit_bytes

    limit, _ = memory_limit_bytes(SPEC)
    assert limit is not None
    n = 1000
    while point_memory_bytes(SPEC, {**SPEC.values_at((0, 0, 0)), "n": n}) < 2 * limit:
        n = int(n * 1.2)
    need = point_memory_bytes(SPEC, {**SPEC.values_at((0, 0, 0)), "n": n})
    return n, need / 2**30


def test_memory_preflight_refuses_a_block_that_would_not_fit(loopback_cluster,
                                                             tmp_path: Path) -> None:
    n, need_gib = _too_big_n()
    study = TINY_STUDY.replace("n = 80", f"n = {n}").replace(
        'activation = ["tanh", "sin", "erf"]', 'activation = ["tanh"]').replace(
        "replicates = 2", "replicates = 1") + f"memory_gb = {4 * need_gib:.0f}\n"
    proc = _driver(loopback_cluster, tmp_path, "--workers", "1", study=study)
    rc, out, err = _finish(proc)
    assert rc == 1
    assert "0 computed now, 1 failed, 0 retried attempts, 0 actors replaced" in out
    assert f"its matrices need about {need_gib:.2f} GiB but this worker can use" in err
    assert "memory available on this node" in err
    cube = open_cube(tmp_path / "cube.zarr")
    assert int(cube["attempts"].max()) == 1 and (cube["status"].values == 2).all()


def test_memory_beyond_the_study_budget_refused_before_any_store(tmp_path: Path) -> None:
    study = tmp_path / "big.toml"
    study.write_text(TINY_STUDY.replace("n = 80", "n = 20000") + "memory_gb = 1\n")
    res = _sweep("run", str(study), "--store", str(tmp_path / "c.zarr"), "--executor", "local",
                 env={**os.environ})
    assert res.returncode == 2
    assert "the largest task needs about" in res.stderr and "an actor has 1.0 GiB" in res.stderr
    assert not (tmp_path / "c.zarr").exists()


# ---------------------------------------------------------------- storage

@pytest.fixture()
def tmpfs(tmp_path: Path) -> Iterator:
    """Mount small tmpfs file systems (a real read-only or full disk); unmounted afterwards."""
    mounted: list[Path] = []

    def mount(name: str, size: str, *options: str) -> Path:
        where = tmp_path / name
        where.mkdir()
        opts = ",".join((f"size={size}", *options))
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or res.returncode}); "
                        "needs root or CAP_SYS_ADMIN")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_read_only_store_refused_before_work(tmp_path: Path, tmpfs) -> None:
    """Root ignores permission bits, so the store sits on a tmpfs mounted read-only."""
    ro = tmpfs("ro", "1m", "ro")
    (tmp_path / "tiny.toml").write_text(TINY_STUDY)
    # nothing listens on 127.0.0.1:1: had the driver tried to join a cluster before checking
    # the store, it would fail with "cannot join" after Ray's connection retries, not this
    res = _sweep("run", str(tmp_path / "tiny.toml"), "--address", "127.0.0.1:1", "--store",
                 str(ro / "cube.zarr"), "--no-progress", env={**os.environ}, timeout=60)
    assert res.returncode == 2
    assert "cannot write" in res.stderr and "Read-only file system" in res.stderr
    assert "cannot join" not in res.stderr
    assert not (ro / "cube.zarr").exists()


def test_too_small_disk_refused_before_work(tmp_path: Path, tmpfs) -> None:
    small = tmpfs("small", "256k")
    (tmp_path / "tiny.toml").write_text(TINY_STUDY)
    res = _sweep("run", str(tmp_path / "tiny.toml"), "--store", str(small / "cube.zarr"),
                 "--executor", "local", "--no-progress", env={**os.environ})
    assert res.returncode == 2
    assert "MiB free" in res.stderr and "the cube needs up to" in res.stderr
    assert not (small / "cube.zarr").exists()


def test_disk_full_mid_run_stops_without_corrupting_finished_blocks(
        loopback_cluster, reference_cube, tmp_path: Path, tmpfs, cleanup) -> None:
    disk = tmpfs("disk", "8m")
    store = disk / "cube.zarr"
    key = KEYS[-1]
    proc = _driver(loopback_cluster, tmp_path, "--workers", "2", store=store,
                   faults=f"pause-once:{key}")
    cleanup.append(proc)
    wait_for(lambda: _paused(tmp_path, key), 120, f"block {key} to start")
    wait_for(lambda: sum(v == 1 for v in block_status_map(store).values()) == 5, 120,
             "the other five blocks to be written")
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:  # another process fills the disk while the last block is in flight
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == 28  # ENOSPC
    try:
        while True:
            os.write(fd, b"\0")
    except OSError:
        pass
    os.close(fd)
    (tmp_path / "faults" / f"release-{key}").touch()
    rc, out, err = _finish(proc)
    assert rc == 2
    assert f"writing block {key} failed (No space left on device)" in err
    cube = open_cube(store)
    for k in KEYS[:-1]:  # finished blocks intact
        got, want = _block_values(cube, k), _block_values(reference_cube, k)
        for name in cube.data_vars:
            if name != "wall_s":
                np.testing.assert_array_equal(got[name].values, want[name].values, err_msg=name)
    last = _block_values(cube, key)  # the failed write was erased: pending, fill values
    assert (last["status"].values == 0).all() and np.isnan(last["eigval"].values).all()
    filler.unlink()  # space again: a rerun (here in-process) resumes with the erased block
    again = _sweep("run", str(tmp_path / "tiny.toml"), "--store", str(store), "--executor",
                   "local", "--no-progress", env={**os.environ})
    assert again.returncode == 0, again.stderr
    assert "5 already done, 1 computed now, 0 failed" in again.stdout
    assert_cubes_equal(open_cube(store), reference_cube)


# ---------------------------------------------------------------- the lock

def test_lock_of_a_frozen_driver_expires_after_its_heartbeat_stops(tmp_path: Path) -> None:
    """A live holder is refused while it beats; stopped (SIGSTOP: a hung or cut-off driver, the
    case a pid check cannot see), its lock is taken over after stale_after_s."""
    store = tmp_path / "c.zarr"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from sweep.store import StoreLock; "
         "StoreLock(Path(sys.argv[1]), heartbeat_s=0.2, stale_after_s=1.5).acquire(); "
         "print('held', flush=True); time.sleep(120)", str(store)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        time.sleep(2.0)  # longer than stale_after_s: only the heartbeat keeps the lock fresh
        with pytest.raises(StoreError, match=f"in use by another sweep driver \\(pid {holder.pid}"):
            StoreLock(store, heartbeat_s=0.2, stale_after_s=1.5).acquire()
        holder.send_signal(signal.SIGSTOP)
        time.sleep(2.0)
        lock = StoreLock(store, heartbeat_s=0.2, stale_after_s=1.5)
        lock.acquire()
        assert json.loads(lock.file.read_text())["pid"] == os.getpid()
        lock.release()
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_lock_left_by_a_driver_on_another_host(tmp_path: Path) -> None:
    store = tmp_path / "c.zarr"
    lock_file = store.with_name("c.zarr.lock")
    lock_file.write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": "then"}))
    with pytest.raises(StoreError, match="pid 1 on elsewhere"):
        StoreLock(store).acquire()
    old = time.time() - 301  # no heartbeat for longer than stale_after_s (300 s)
    os.utime(lock_file, (old, old))
    lock = StoreLock(store)
    lock.acquire()
    lock.release()
    lock_file.write_text("")  # died between creating the file and writing its name
    with pytest.raises(StoreError, match="an unknown process"):
        StoreLock(store).acquire()
    os.utime(lock_file, (old, old))
    with StoreLock(store):
        pass


# ---------------------------------------------------------------- store hardening

def _files(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in root.rglob("*") if p.is_file()}


def test_block_writes_touch_only_their_own_whole_chunks(tmp_path: Path) -> None:
    path = tmp_path / "c.zarr"
    prepare_store(SPEC, path)
    before = _files(path)
    block = blocks(SPEC)[3]  # chunk index (0, 1, 1)
    result = run_block(SPEC, block)
    write_block(SPEC, path, block, result.values, wall_s=result.wall_s, attempts=1)
    after = _files(path)
    changed = {f for f in after if before.get(f) != after[f]}
    assert set(before) <= set(after)  # nothing deleted
    own = set()
    for f in changed:
        var, _, chunk = f.partition("/c/")
        assert chunk, f"{f}: a metadata or coordinate file was rewritten by a block write"
        dims = zarr.open_group(path, mode="r")[var].metadata.dimension_names
        idx = dict(zip(SPEC.dims, block.index, strict=True))
        assert chunk.split("/") == [str(idx.get(d, 0)) for d in dims], f
        own.add(var)
    assert {"eigval", "theory_spike", "status", "attempts", "wall_s"} <= own
    # a region that is not whole chunks is refused before anything is written
    part = Block(index=(0, 0, 0), start=(1, 0, 0), stop=(2, 1, 1))
    with pytest.raises(StoreError, match="does not cover whole chunks"):
        write_block(SPEC, path, part, run_block(SPEC, part).values, wall_s=0.1, attempts=1)
    assert _files(path) == after


def test_resume_keeps_coordinates_and_consolidated_metadata_consistent(
        tmp_path: Path, reference_cube, monkeypatch) -> None:
    path = tmp_path / "c.zarr"
    prepare_store(SPEC, path)
    coords = {f: v for f, v in _files(path).items()
              if f.split("/")[0] in {*SPEC.dims, "layer", "k", "signal"}}
    assert any(f.startswith("activation/c/") for f in coords)
    # run 1: one poison block (local executor, same engine code paths); run 2: retry it
    monkeypatch.setenv("SPIKESWEEP_FAULTS", f"raise:{KEYS[2]}")
    first = run_study(SPEC, path, executor="local", progress=False)
    assert first.summary.failed and first.summary.done == 5
    monkeypatch.delenv("SPIKESWEEP_FAULTS")
    second = run_study(SPEC, path, executor="local", retry_failed=True, progress=False)
    assert second.ok and second.summary.done == 1 and second.skipped == 5
    now = _files(path)
    assert {f: now[f] for f in coords} == coords  # coordinates never rewritten after the template
    root = json.loads((path / "zarr.json").read_text())
    consolidated = root["consolidated_metadata"]["metadata"]
    on_disk = {p.parent.name: json.loads(p.read_text()) for p in path.glob("*/zarr.json")}
    assert consolidated == on_disk
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cube = open_cube(path).load()  # no warning from opening or reading, strings included
        import xarray as xr

        xr.open_zarr(path).load()
    assert_cubes_equal(cube, reference_cube)
    for name in ("activation", "error"):  # zarr v3 "string" type (vlen-utf8), not numpy object
        meta = on_disk[name]
        assert meta["data_type"] == "string"
        assert meta["codecs"][0]["name"] == "vlen-utf8"
