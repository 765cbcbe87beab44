"""Fault injection for tests and drills: real exceptions, hangs, pauses and SIGKILLs inside workers.

Set ``SPIKESWEEP_FAULTS`` in the driver's environment to a ``;``-separated list of
``action:block_key`` rules, e.g. ``"raise:0.1;kill-once:0.2;hang:0.3"``. Block keys are the
dotted chunk indices printed by ``sweep status``. Actions:

- ``raise``: the block raises ``RuntimeError`` on every attempt (a poison block);
- ``raise-once``: it raises on its first attempt only;
- ``kill``: the worker process SIGKILLs itself on every attempt;
- ``kill-once``: SIGKILL on the first attempt only;
- ``hang``: the block sleeps forever (exercises the per-block timeout);
- ``pause`` / ``pause-once``: the attempt writes ``paused-<key>.json`` (pid, Ray node id) into
  ``SPIKESWEEP_FAULTS_DIR`` and waits until a file ``release-<key>`` appears there, then computes
  normally. A test uses the pause to strike from outside at a known moment: SIGKILL the worker
  pid, remove its node, kill the driver, or fill the disk, while the block is in flight.

"once" is tracked with marker files in ``SPIKESWEEP_FAULTS_DIR`` (required for ``*-once`` and
``pause``), so it holds across processes and nodes of one machine. Unset, this module does nothing.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

__all__ = ["FAULTS_DIR_ENV", "FAULTS_ENV", "fault_env", "maybe_inject", "pause_marker"]

FAULTS_ENV = "SPIKESWEEP_FAULTS"
FAULTS_DIR_ENV = "SPIKESWEEP_FAULTS_DIR"
_ACTIONS = {"raise", "raise-once", "kill", "kill-once", "hang", "pause", "pause-once"}


def fault_env() -> dict[str, str]:
    """Return the fault variables of this process's environment (forwarded to Ray workers)."""
    return {k: os.environ[k] for k in (FAULTS_ENV, FAULTS_DIR_ENV) if k in os.environ}


def _rules(text: str) -> list[tuple[str, str]]:
    rules = []
    for item in filter(None, (s.strip() for s in text.split(";"))):
        action, _, key = item.partition(":")
        if action not in _ACTIONS or not key:
            raise ValueError(f"{FAULTS_ENV}: bad rule {item!r}; use action:block_key with action "
                             f"in {sorted(_ACTIONS)}")
        rules.append((action, key))
    return rules


def _folder(action: str) -> Path:
    folder = os.environ.get(FAULTS_DIR_ENV)
    if not folder:
        raise ValueError(f"{FAULTS_DIR_ENV}: needed by '{action}' rules")
    return Path(folder)


def _first_time(action: str, key: str) -> bool:
    marker = _folder(action) / f"{action}-{key}"
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def pause_marker(folder: str | Path, block_key: str) -> Path:
    """Where a paused attempt of ``block_key`` announces itself (JSON: pid, node_id, since)."""
    return Path(folder) / f"paused-{block_key}.json"


def _node_id() -> str:
    """Return the Ray node id of this process ("" outside Ray); never imports Ray itself."""
    ray = sys.modules.get("ray")
    try:
        if ray is not None and ray.is_initialized():
            return str(ray.get_runtime_context().get_node_id())
    except Exception:  # the marker is diagnostic; a missing node id must not break the pause
        pass
    return ""


def _pause(block_key: str) -> None:
    folder = _folder("pause")
    marker = pause_marker(folder, block_key)
    tmp = marker.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"pid": os.getpid(), "node_id": _node_id(), "since": time.time()}))
    os.replace(tmp, marker)  # readers never see a half-written marker
    release = folder / f"release-{block_key}"
    while not release.exists():
        time.sleep(0.05)


def maybe_inject(block_key: str) -> None:
    """Apply the configured fault for ``block_key``, if any (called as each attempt starts)."""
    text = os.environ.get(FAULTS_ENV)
    if not text:
        return
    for action, key in _rules(text):
        if key != block_key:
            continue
        if action.endswith("-once") and not _first_time(action, key):
            continue
        if action.startswith("raise"):
            raise RuntimeError(f"injected fault in block {block_key}")
        if action.startswith("kill"):
            os.kill(os.getpid(), signal.SIGKILL)
        if action == "hang":
            while True:
                time.sleep(3600)
        if action.startswith("pause"):
            _pause(block_key)
