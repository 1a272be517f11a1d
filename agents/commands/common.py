"""Helpers the read-only commands share: open the run store of a state directory, and what a run's status is
now (`watcher status`, `--json` and `watcher metrics` all ask `run_status`, so they never disagree)."""

from __future__ import annotations

from pathlib import Path

from agents.lock import lock_is_held, read_holder
from cluster.errors import StoreError
from pipeline.store import RunRecord, RunStore

CRASHED = "crashed"
CRASHED_FIX = "its process is gone; `watcher run --resume` continues it (finished chunks are not redone)"


def open_store(state_dir: str | Path, *, must_exist: bool = True) -> RunStore | None:
    path = Path(state_dir) / "watcher.db"
    if not path.exists():
        if must_exist:
            raise StoreError(f"no run store at {path}: nothing has run with --state-dir {state_dir} yet")
        return None
    return RunStore(path, readonly=True)


def run_status(run: RunRecord, state_dir: str | Path) -> str:
    """The run's status as it is now. The store says "running" until the run itself says otherwise, which a
    SIGKILL, an OOM kill or a power cut never lets it do; the state directory's lock tells the truth, since
    the kernel drops it with its holder. A run stored as running is "crashed" unless the lock is held by that
    run's own process."""
    if run.status != "running":
        return run.status
    if lock_is_held(Path(state_dir)) and read_holder(Path(state_dir)).get("pid") == run.pid:
        return "running"
    return CRASHED
