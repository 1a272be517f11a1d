"""Helpers the read-only commands share: open the run store of a state directory, and what a run's status is
now (agents.runstate.run_status: `watcher status`, `--json`, `watcher metrics` and the report all ask it)."""

from __future__ import annotations

from pathlib import Path

from agents.runstate import CRASHED, CRASHED_FIX, run_status
from cluster.errors import StoreError, StoreNotCreatedError
from pipeline.store import RunStore

__all__ = ["CRASHED", "CRASHED_FIX", "open_store", "run_status"]


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
