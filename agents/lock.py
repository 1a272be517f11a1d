"""One run per state directory: an flock held for the whole run.

The kernel drops the lock when the holder dies (even on SIGKILL), so a crashed run never leaves a stale
lock behind; the file's contents only say who holds it, for the message the second run prints.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from cluster.errors import LockHeldError

LOCK_NAME = "watcher.lock"


def read_holder(state_dir: Path) -> dict[str, object]:
    try:
        return json.loads((Path(state_dir) / LOCK_NAME).read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return {}


def lock_is_held(state_dir: Path) -> bool:
    path = Path(state_dir) / LOCK_NAME
    if not path.exists():
        return False
    with path.open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


class RunLock:
    """holder: extra facts the running run publishes beside its pid (e.g. its halt file, so `watcher halt`
    stops the run that is running, whatever pipeline file it was started with)."""

    def __init__(self, state_dir: Path, holder: dict[str, object] | None = None) -> None:
        self.path = Path(state_dir) / LOCK_NAME
        self.holder = dict(holder or {})
        self._fh: object | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            holder = read_holder(self.path.parent)
            raise LockHeldError(
                f"another watcher run holds {self.path} (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
                f"started {holder.get('started', '?')}); exit 75: wait for it, or `watcher halt` to stop it"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    **self.holder,
                }
            )
        )
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)  # type: ignore[arg-type]
            self._fh.close()  # type: ignore[attr-defined]
            self._fh = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def acquire_run_lock(state_dir: Path) -> RunLock:
    return RunLock(state_dir).acquire()
