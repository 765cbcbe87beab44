"""Cluster use: cluster.yaml validates offline; a study runs on a multi-node loopback cluster.

The cluster (fixture ``loopback_cluster``, tests/sweep/conftest.py) is a head with no CPU and
two worker nodes on 127.0.0.1 with token authentication; drivers join it exactly as the README
says: ``sweep run STUDY --address HOST:PORT`` and
``ray job submit -- sweep run STUDY --address auto``.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from sweep.store import open_cube
from tests.sweep.conftest import (
    NODE_A,
    PROVENANCE_ATTRS,
    TINY_STUDY,
    assert_cubes_equal,
    block_status_map,
    sweep_exe,
    tiny_study_text,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]
LOCAL_BLOCK = re.compile(r"^# --- begin local provider ---\n(.*?)^# --- end local provider ---",
                         re.M | re.S)


def _cluster_yaml() -> tuple[str, dict]:
    text = (ROOT / "cluster.yaml").read_text()
    return text, yaml.safe_load(text)


def _local_variant(text: str) -> dict:
    match = LOCAL_BLOCK.search(text)
    assert match, "cluster.yaml: the commented local-provider block is missing"
    lines = [ln[2:] if ln.startswith("# ") else ln.lstrip("#")
             for ln in match.group(1).splitlines()]
    return yaml.safe_load("\n".join(lines))


def test_cluster_yaml_passes_ray_config_validation_offline() -> None:
    """What `ray up` does to the file before it touches a cloud: merge defaults, then schema."""
    from jsonschema import ValidationError
    from ray.autoscaler._private.util import prepare_config, validate_config

    text, cfg = _cluster_yaml()
    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # no actor on the head: it holds the driver and cube
    gpu = [t for t in types.values() if t.get("resources", {}).get("GPU", 0) >= 1]
    assert gpu and all(t["max_workers"] >= 1 for t in gpu)
    setup = " ".join(prepared["setup_commands"])
    assert "pip install" in setup and "spikesweep[gpu]" in setup
    starts = prepared["head_start_ray_commands"] + prepared["worker_start_ray_commands"]
    assert sum("RAY_AUTH_MODE=token ray start" in c for c in starts) == 2
    assert "~/.ray/auth_token" in prepared["file_mounts"]
    # the validation is not vacuous: a misspelt key is refused by Ray's schema
    bad = copy.deepcopy(prepared)
    bad["max_worker"] = 3
    with pytest.raises(ValidationError):
        validate_config(bad)


def test_local_provider_variant_bootstraps_offline() -> None:
    """The on-premise variant goes through the launcher's whole bootstrap (no SSH is opened)."""
    from ray.autoscaler._private.commands import _bootstrap_config

    text, _ = _cluster_yaml()
    local = _local_variant(text)
    assert local["provider"]["type"] == "local"
    resolved = _bootstrap_config(copy.deepcopy(local), no_config_cache=True)
    (node_type,) = resolved["available_node_types"].values()
    ips = local["provider"]["worker_ips"]
    assert node_type["min_workers"] == node_type["max_workers"] == len(ips)
    starts = resolved["head_start_ray_commands"]
    assert any("RAY_AUTH_MODE=token ray start --head" in c for c in starts)


def _write_study(tmp_path: Path, text: str = TINY_STUDY) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return path


def _run_held(cluster, study: Path, store: Path, workers: int) -> tuple[int, str, str, int]:
    """``sweep run --address`` with the first block held until the other five are written.

    Holding block 0.0.0 (``pause-once``) makes a second actor compute: on this tiny study a fast
    actor could otherwise finish everything before its peers start. Returns rc, out, err, pid.
    """
    faults = store.parent / "faults"
    faults.mkdir()
    env = {**cluster.env, "SPIKESWEEP_FAULTS": "pause-once:0.0.0",
           "SPIKESWEEP_FAULTS_DIR": str(faults)}
    proc = subprocess.Popen([*sweep_exe(), "run", str(study), "--address", cluster.address,
                             "--store", str(store), "--workers", str(workers), "--no-progress"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: sum(v == 1 for v in block_status_map(store).values()) == 5, 120,
                 "the other five blocks")
        (faults / "release-0.0.0").touch()
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    return proc.returncode, out, err, proc.pid


def test_two_node_run_with_address_equals_single_node(loopback_cluster, reference_cube,
                                                       tmp_path: Path) -> None:
    """Two actors, one per worker node: the head offers no CPU and Ray spreads them."""
    store = tmp_path / "cube.zarr"
    rc, out, err, pid = _run_held(loopback_cluster, _write_study(tmp_path), store, workers=2)
    assert rc == 0, err
    assert "6 computed now, 0 failed, 0 retried attempts" in out and "on 2 worker(s)" in out
    assert_cubes_equal(open_cube(store), reference_cube)
    actors = loopback_cluster.actors_of_driver(pid)
    assert len(actors) == 2
    assert {a["node_id"] for a in actors} == set(loopback_cluster.nodes)


def test_job_submit_with_address_auto(loopback_cluster, reference_cube, tmp_path: Path) -> None:
    """The README's command (study path relative to the uploaded --working-dir, absolute store);
    without --workers the driver sizes itself to the cluster's CPUs."""
    work = tmp_path / "work"
    work.mkdir()
    _write_study(work)
    store = tmp_path / "cube.zarr"
    res = loopback_cluster.ray_cli("job", "submit", "--address", loopback_cluster.dashboard,
                                   "--working-dir", str(work), "--", "sweep", "run", "tiny.toml",
                                   "--address", "auto", "--store", str(store), "--no-progress",
                                   timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"cube: {store}" in res.stdout and "succeeded" in res.stdout
    cpus = sum(n["num_cpus"] for n in loopback_cluster.nodes.values())
    assert f"on {cpus} worker(s)" in res.stdout
    assert_cubes_equal(open_cube(store), reference_cube)


def test_gpu_fraction_places_actors_on_the_gpu_node(loopback_cluster, reference_cube,
                                                    tmp_path: Path) -> None:
    """gpus_per_actor = 0.5: two actors share node A's one GPU, node B (no GPU) gets none, and
    a third requested actor, which fits nowhere, is never placed and never holds a block."""
    study = _write_study(tmp_path, tiny_study_text(gpus_per_actor=0.5))
    store = tmp_path / "cube.zarr"
    rc, out, err, pid = _run_held(loopback_cluster, study, store, workers=3)
    assert rc == 0, err
    assert "6 computed now, 0 failed, 0 retried attempts" in out
    assert_cubes_equal(open_cube(store), reference_cube,
                       ignore_attrs=PROVENANCE_ATTRS | {"study_toml"})
    actors = loopback_cluster.actors_of_driver(pid)
    placed = [a for a in actors if a.get("node_id")]
    gpu_nodes = {nid for nid, args in loopback_cluster.nodes.items() if args.get("num_gpus")}
    assert len(actors) == 3 and len(placed) == 2 == NODE_A["num_gpus"] / 0.5
    assert {a["node_id"] for a in placed} == gpu_nodes
    assert all(a["required_resources"] == {"CPU": 1.0, "GPU": 0.5} for a in actors)


def test_actor_the_cluster_cannot_place_fails_blocks_with_the_reason(loopback_cluster,
                                                                     tmp_path: Path) -> None:
    """gpus_per_actor = 2 exceeds every node: warned at once, then recorded failed (not a hang)."""
    study = _write_study(tmp_path, tiny_study_text(gpus_per_actor=2.0))
    store = tmp_path / "cube.zarr"
    env = {**loopback_cluster.env, "SPIKESWEEP_START_TIMEOUT_S": "3"}
    res = subprocess.run([*sweep_exe(), "run", str(study), "--address", loopback_cluster.address,
                          "--store", str(store), "--no-progress"], env=env, capture_output=True,
                         text=True, timeout=240)
    assert res.returncode == 1
    assert "warning: no node of this cluster can host an actor" in res.stderr
    failed = [ln for ln in res.stderr.splitlines() if ln.startswith("failed block")]
    assert len(failed) == 6 and all("no worker became ready within" in ln for ln in failed)
    cube = open_cube(store)
    assert (cube["status"].values == 2).all() and (cube["attempts"].values == 0).all()


@pytest.mark.slow
def test_driver_with_another_token_is_refused_clearly(loopback_cluster, tmp_path: Path) -> None:
    """Token auth: a driver whose token differs is refused, and told what to set (about 25 s)."""
    study = _write_study(tmp_path)
    env = {**loopback_cluster.env, "RAY_AUTH_TOKEN": "0" * 64}
    res = subprocess.run([*sweep_exe(), "run", str(study), "--address", loopback_cluster.address,
                          "--store", str(tmp_path / "c.zarr"), "--no-progress"], env=env,
                         capture_output=True, text=True, timeout=240)
    assert res.returncode == 2
    assert "cannot join the Ray cluster" in res.stderr and "RAY_AUTH_MODE=token" in res.stderr


@pytest.mark.slow
def test_actors_that_cannot_start_fail_the_blocks_with_their_error(loopback_cluster,
                                                                   tmp_path: Path) -> None:
    """backend = "cupy" on nodes without cupy: every actor constructor fails; after three tries
    (the first actor, two replacements) the driver stops and records the blocks failed with the
    constructor's error, instead of replacing actors forever."""
    study = _write_study(tmp_path, tiny_study_text(backend="cupy", gpus_per_actor=0.5))
    store = tmp_path / "cube.zarr"
    res = subprocess.run([*sweep_exe(), "run", str(study), "--address", loopback_cluster.address,
                          "--store", str(store), "--workers", "1", "--no-progress"],
                         env=loopback_cluster.env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1
    assert "0 computed now, 6 failed, 0 retried attempts, 2 actors replaced" in res.stdout
    assert res.stderr.count("not run: workers cannot start") == 6
    assert "cupy" in res.stderr.lower()
    assert (open_cube(store)["status"].values == 2).all()
