"""Resume as an API: ``run_study`` prepares the store, locks it, runs what is pending, consolidates.

Re-running a study whose store exists (same spec hash) resumes: only blocks not yet done run;
``retry_failed`` also reruns failed ones. A store written by a different spec is refused unless
``overwrite``. Everything that can be refused is refused before any worker starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sweep.execute import RunSummary, init_ray, run_local, run_ray
from sweep.grid import blocks
from sweep.spec import Spec
from sweep.store import StoreError, StoreLock, check_writable, consolidate, pending_blocks, prepare_store

__all__ = ["RunOutcome", "default_store", "run_study"]


@dataclass
class RunOutcome:
    """Result of :func:`run_study`: the store, how many blocks there are and what this run did."""

    store: Path
    created: bool
    total_blocks: int
    skipped: int
    summary: RunSummary

    @property
    def ok(self) -> bool:
        """True when no block is recorded failed."""
        return not self.summary.failed


def default_store(spec: Spec, root: Path | None = None) -> Path:
    """``results/<study-name>.zarr`` under ``root`` (the current directory by default)."""
    return (root or Path.cwd()) / "results" / f"{spec.name}.zarr"


def run_study(spec: Spec, store: Path | None = None, *, executor: str = "ray",
              address: str | None = None, workers: int | None = None, retry_failed: bool = False,
              overwrite: bool = False, progress: bool = True) -> RunOutcome:
    """Run (or resume) ``spec`` into ``store`` and return what happened."""
    if executor not in ("ray", "local"):
        raise ValueError(f"executor: {executor!r} must be 'ray' or 'local'")
    if workers is not None and workers < 1:
        raise ValueError(f"workers: {workers} must be >= 1")
    path = Path(store) if store is not None else default_store(spec)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"store: cannot create {str(path.parent)!r} ({exc.strerror})") from None
    check_writable(path)  # local and cheap: refused before any cluster is contacted
    if executor == "ray" and (address or os.environ.get("RAY_ADDRESS")):
        init_ray(address)  # a cluster that cannot be joined is refused before a store exists
    # lock first: a second driver (even with --overwrite) never touches a store in use
    with StoreLock(path):
        created = prepare_store(spec, path, overwrite=overwrite)
        todo = pending_blocks(spec, path, retry_failed=retry_failed)
        total = len(blocks(spec))
        if not todo:
            summary = RunSummary()
        elif executor == "local":
            summary = run_local(spec, path, todo, progress=progress)
        else:
            summary = run_ray(spec, path, todo, address=address, workers=workers, progress=progress)
        consolidate(path)
    return RunOutcome(path, created, total, total - len(todo), summary)
