"""What a run's status is now: the one answer `watcher status`, `--json`, `watcher metrics` and the report give.

The store says "running" until the run itself says otherwise, which a SIGKILL, an OOM kill or a power cut never
lets it do. The state directory's lock tells the truth, since the kernel drops it with its holder: a run stored
as running is "crashed" unless the lock is held by that run's own process.
"""

from __future__ import annotations

from pathlib import Path

from agents.lock import lock_is_held, read_holder
from pipeline.store import RunRecord

CRASHED = "crashed"
CRASHED_FIX = "its process is gone; `watcher run --resume` continues it (finished chunks are not redone)"


def run_status(run: RunRecord, state_dir: str | Path) -> str:
    """The stored status, except "crashed" for a run stored as running whose process no longer holds the lock."""
    if run.status != "running":
        return run.status
    if lock_is_held(Path(state_dir)) and read_holder(Path(state_dir)).get("pid") == run.pid:
        return "running"
    return CRASHED
