"""Helpers the read-only commands share: open the run store of a state directory."""

from __future__ import annotations

from pathlib import Path

from cluster.errors import StoreError, StoreNotCreatedError
from pipeline.store import RunStore


def open_store(state_dir: str | Path, *, must_exist: bool = True) -> RunStore | None:
    """The state directory's run store, read-only; None (with must_exist False) when there is none yet, or
    when a run is still creating it."""
    path = Path(state_dir) / "watcher.db"
    if not path.exists():
        if must_exist:
            raise StoreError(f"no run store at {path}: nothing has run with --state-dir {state_dir} yet")
        return None
    try:
        return RunStore(path, readonly=True)
    except StoreNotCreatedError:
        if must_exist:
            raise
        return None
