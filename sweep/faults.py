"""Fault injection for tests and drills: real exceptions, hangs and SIGKILLs inside workers.

Set ``SPIKESWEEP_FAULTS`` in the driver's environment to a ``;``-separated list of
``action:block_key`` rules, e.g. ``"raise:0.1;kill-once:0.2;hang:0.3"``. Block keys are the
dotted chunk indices printed by ``sweep status``. Actions:

- ``raise``: the block raises ``RuntimeError`` on every attempt (a poison block);
- ``raise-once``: it raises on its first attempt only;
- ``kill``: the worker process SIGKILLs itself on every attempt;
- ``kill-once``: SIGKILL on the first attempt only;
- ``hang``: the block sleeps forever (exercises the per-block timeout).

"once" is tracked with marker files in ``SPIKESWEEP_FAULTS_DIR`` (required for ``*-once``), so it
holds across processes and nodes of one machine. Unset, this module does nothing.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

__all__ = ["FAULTS_DIR_ENV", "FAULTS_ENV", "fault_env", "maybe_inject"]

FAULTS_ENV = "SPIKESWEEP_FAULTS"
FAULTS_DIR_ENV = "SPIKESWEEP_FAULTS_DIR"
_ACTIONS = {"raise", "raise-once", "kill", "kill-once", "hang"}


def fault_env() -> dict[str, str]:
    """The fault variables of this process's environment (forwarded to Ray workers)."""
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


def _first_time(action: str, key: str) -> bool:
    folder = os.environ.get(FAULTS_DIR_ENV)
    if not folder:
        raise ValueError(f"{FAULTS_DIR_ENV}: needed by '{action}' rules")
    marker = Path(folder) / f"{action}-{key}"
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def maybe_inject(block_key: str) -> None:
    """Apply the configured fault for ``block_key``, if any (called at the start of each attempt)."""
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
