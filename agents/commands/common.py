"""Helpers the read-only commands share: open the run store of a state directory."""

from __future__ import annotations

from pathlib import Path

from cluster.errors import StoreError
from pipeline.store import RunStore


def open_store(state_dir: str | Path, *, must_exist: bool = True) -> RunStore | None:
    path = Path(state_dir) / "watcher.db"
    if not path.exists():
        if must_exist:
            raise StoreError(f"no run store at {path}: nothing has run with --state-dir {state_dir} yet")
        return None
    return RunStore(path, readonly=True)
