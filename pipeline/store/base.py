"""The connection, lock and transaction helper shared by the run store's parts.

One connection guarded by one lock: the coordinator is the only writer, but its scheduler threads
write concurrently, and SQLite connections must not be used by two threads at once.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from cluster.errors import StoreError
from pipeline.store.schema import open_store_connection


def dumps(value: Any) -> str | None:
    """Canonical JSON (sorted keys) so equal values compare equal as text; None stays NULL."""
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class StoreBase:
    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = open_store_connection(
            self.path, readonly=readonly, written_by=f"watcher pid {os.getpid()} on {socket.gethostname()}", now=_now()
        )
        if not readonly:
            self._make_private()

    def _make_private(self) -> None:
        """Run history, LLM transcripts and node evidence are the owner's alone, whatever the umask was."""
        for path in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            with suppress(OSError):
                if path.exists() and path.stat().st_uid == os.getuid():
                    path.chmod(0o600)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"run store {self.path} is closed")
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE), so a crash leaves either all of it or none."""
        with self._lock, self._translated():
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock, self._translated():
            return self.conn.execute(sql, params).fetchall()

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """SQLite errors leave the store as StoreError naming the file (disk full, read-only, damage found late)."""
        try:
            yield
        except sqlite3.Error as err:
            hint = "read-only store" if self.readonly else "check free disk space and that no other process holds it"
            raise StoreError(f"run store {self.path}: {err} ({hint})") from err

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> StoreBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _now() -> float:
    return time.time()


now = _now
