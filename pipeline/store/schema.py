"""Schema, versioning and opening of the run store's SQLite file.

Kept apart from the query code so that the rules about *which* files we accept live in one place:
a file written by a newer watcher, a damaged file, or some other SQLite database is refused with a
message that says what to do, because quietly recreating or "repairing" it would lose run history
that a resume depends on.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from cluster.errors import StoreError, StoreNotCreatedError

SCHEMA_VERSION = 3
QUICK_CHECK_MAX_BYTES = 256 << 20
APPLICATION_ID = 0x57415443  # "WATC": marks the file as ours, so a foreign SQLite file is recognised

_DDL = """
CREATE TABLE schema_version (version INTEGER NOT NULL, written_by TEXT NOT NULL, time REAL NOT NULL);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL, finished REAL, status TEXT NOT NULL,
    from_step REAL, to_step REAL, config_hash TEXT, pid INTEGER, host TEXT, args TEXT, reason TEXT,
    verdict TEXT
);
CREATE TABLE steps (
    run_id INTEGER NOT NULL REFERENCES runs(id), number REAL NOT NULL, name TEXT NOT NULL,
    attempt INTEGER NOT NULL, params TEXT, status TEXT NOT NULL, metrics TEXT,
    started REAL NOT NULL, finished REAL, error TEXT,
    PRIMARY KEY (run_id, number, attempt)
);
CREATE TABLE chunks (
    run_id INTEGER NOT NULL, step REAL NOT NULL, chunk_id TEXT NOT NULL, step_attempt INTEGER NOT NULL,
    spec TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0, node TEXT, gpu INTEGER, started REAL, finished REAL,
    duration REAL, result TEXT, result_ref TEXT,
    PRIMARY KEY (run_id, step, chunk_id)
);
CREATE TABLE chunk_failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER NOT NULL, step REAL NOT NULL,
    chunk_id TEXT NOT NULL, attempt INTEGER NOT NULL, node TEXT, gpu INTEGER, kind TEXT NOT NULL,
    command TEXT, exit_code INTEGER, stderr_tail TEXT, gpu_state TEXT, traceback TEXT, error TEXT,
    duration REAL, time REAL NOT NULL
);
CREATE INDEX chunk_failures_by_chunk ON chunk_failures (run_id, step, chunk_id);
CREATE TABLE decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER NOT NULL, step REAL NOT NULL,
    attempt INTEGER NOT NULL, inputs TEXT, advisor TEXT NOT NULL, raw_answer TEXT, clamped TEXT,
    applied TEXT, decision TEXT NOT NULL, reason TEXT, fallback TEXT, time REAL NOT NULL,
    next_run TEXT, dataset TEXT
);
CREATE TABLE gpu_quarantine (
    node TEXT NOT NULL, gpu INTEGER NOT NULL, reason TEXT NOT NULL, evidence TEXT NOT NULL,
    source TEXT NOT NULL, since REAL NOT NULL, ok_streak INTEGER NOT NULL DEFAULT 0,
    last_check REAL, last_status TEXT,
    PRIMARY KEY (node, gpu)
);
CREATE TABLE gpu_ledger_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, node TEXT NOT NULL, gpu INTEGER NOT NULL,
    action TEXT NOT NULL, status TEXT, reason TEXT, evidence TEXT, actor TEXT, time REAL NOT NULL
);
CREATE TABLE preflight_results (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER, step REAL, ok INTEGER, result TEXT NOT NULL,
    time REAL NOT NULL
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER, step REAL, kind TEXT NOT NULL, node TEXT,
    gpu INTEGER, reason TEXT NOT NULL, detail TEXT, time REAL NOT NULL
);
CREATE INDEX events_by_run ON events (run_id, kind);
"""
# v3: what the health ledger must remember between readers: the kernel log cursor per node (boot id and
# the timestamp of the last line read), the new kernel lines themselves, and every GPU cleanup's result.
_V3_DDL = """
CREATE TABLE IF NOT EXISTS kernel_cursor (
    node TEXT PRIMARY KEY, boot_id TEXT NOT NULL, timestamp REAL NOT NULL, time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS kernel_lines (
    id INTEGER PRIMARY KEY AUTOINCREMENT, node TEXT NOT NULL, boot_id TEXT NOT NULL, line TEXT NOT NULL,
    time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cleanup_results (
    id INTEGER PRIMARY KEY AUTOINCREMENT, node TEXT NOT NULL, exit_code INTEGER, ok INTEGER NOT NULL,
    findings TEXT NOT NULL, kernel TEXT NOT NULL, stderr_tail TEXT, time REAL NOT NULL
);
"""
_DDL += _V3_DDL

EXPECTED_TABLES = frozenset(
    {
        "schema_version",
        "runs",
        "steps",
        "chunks",
        "chunk_failures",
        "decisions",
        "gpu_quarantine",
        "gpu_ledger_log",
        "preflight_results",
        "events",
        "kernel_cursor",
        "kernel_lines",
        "cleanup_results",
    }
)


def _v1_to_v2(conn: sqlite3.Connection) -> None:
    """v2: a run's verdict; a decision's parameters for the next run of its step and the data set it saw."""
    conn.execute("ALTER TABLE runs ADD COLUMN verdict TEXT")
    conn.execute("ALTER TABLE decisions ADD COLUMN next_run TEXT")
    conn.execute("ALTER TABLE decisions ADD COLUMN dataset TEXT")


def _v2_to_v3(conn: sqlite3.Connection) -> None:
    """v3: the kernel log cursor and new kernel lines per node, and GPU cleanup results."""
    for statement in _V3_DDL.split(";"):
        if statement.strip():
            conn.execute(statement)


# version n -> function migrating a file at version n to n + 1, inside one transaction.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _v1_to_v2, 2: _v2_to_v3}


def _damaged(path: Path, detail: str) -> StoreError:
    return StoreError(
        f"run store {path} is damaged or not a watcher store ({detail}); "
        "fix: move it aside (keep it for inspection) and start with --state-dir pointing elsewhere"
    )


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}?mode=rwc"
    conn = sqlite3.connect(uri, uri=True, timeout=10.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    return conn


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _create(conn: sqlite3.Connection, written_by: str, now: float) -> None:
    """Write the schema, unless another process did while this one waited for the write lock."""
    conn.execute("BEGIN IMMEDIATE")
    if _tables(conn):
        conn.execute("COMMIT")
        return
    try:
        for statement in _DDL.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (?, ?, ?)", (SCHEMA_VERSION, written_by, now))
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _check_and_migrate(conn: sqlite3.Connection, path: Path) -> None:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if app_id != APPLICATION_ID or "schema_version" not in tables:
        raise _damaged(path, "no watcher schema in this SQLite file")
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    version = row[0] if row else None
    if version is None:
        raise _damaged(path, "schema_version is empty")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"run store {path} has schema version {version}, newer than this watcher understands "
            f"({SCHEMA_VERSION}); fix: upgrade watcher on this machine, or use another --state-dir"
        )
    while version < SCHEMA_VERSION:
        migrate = MIGRATIONS.get(version)
        if migrate is None:
            raise StoreError(f"run store {path} has schema version {version} and no migration to {version + 1}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            migrate(conn)
            version += 1
            conn.execute("INSERT INTO schema_version VALUES (?, ?, strftime('%s','now'))", (version, "migration"))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = EXPECTED_TABLES - tables
    if missing:
        raise _damaged(path, f"missing tables: {', '.join(sorted(missing))}")


def _unwritten(conn: sqlite3.Connection) -> bool:
    """An SQLite file with no table and no application id: what a writer leaves before its schema commits."""
    return not _tables(conn) and conn.execute("PRAGMA application_id").fetchone()[0] == 0


def open_store_connection(path: Path, *, readonly: bool, written_by: str, now: float) -> sqlite3.Connection:
    """Open (creating once, up front, if absent) and verify the store; every refusal is a StoreError."""
    existed = path.exists() and path.stat().st_size > 0
    if readonly and not existed:
        if path.exists():  # created this instant, not written yet
            raise StoreNotCreatedError(f"run store {path} holds no schema yet: a run is creating it; try again")
        raise StoreError(f"run store {path} does not exist; fix: run `watcher run` first or check --state-dir")
    if not readonly:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = _connect(path, readonly)
    except sqlite3.Error as err:
        raise StoreError(f"cannot open run store {path}: {err}") from err
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        if not readonly:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"run store {path}: cannot switch to WAL journal (got {mode}); is the disk read-only?")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        if existed:
            # a full check costs a read of the whole file: done for ordinary sizes, skipped for huge stores
            small = path.stat().st_size <= QUICK_CHECK_MAX_BYTES
            if small and conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise _damaged(path, "SQLite integrity check failed")
        if existed and _unwritten(conn):  # a writer is creating it (WAL switched on, schema not yet committed)
            if readonly:
                raise StoreNotCreatedError(
                    f"run store {path} holds no schema yet: a run is creating it (or died doing so); try again"
                )
            existed = False
        if existed:
            _check_and_migrate(conn, path)
        else:
            _create(conn, written_by, now)
            _check_and_migrate(conn, path)
    except StoreError:
        conn.close()
        raise
    except sqlite3.DatabaseError as err:
        conn.close()
        raise _damaged(path, str(err)) from err
    return conn
