"""Run store: schema versioning, refusal of damaged/foreign/newer files, WAL, runs/steps/decisions, chunks."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from cluster.errors import StoreError
from cluster.scheduler.types import ChunkFailure, ChunkSpec, Slot
from pipeline.store import SCHEMA_VERSION, RunStore
from pipeline.store import chunks as store_chunks


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    s = RunStore(tmp_path / "watcher.db")
    yield s
    s.close()


def test_created_once_with_version_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "state" / "watcher.db"
    RunStore(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    conn.close()
    with RunStore(path) as again:  # reopening keeps the data and does not recreate
        run = again.create_run(1)
    with RunStore(path) as third:
        assert third.get_run(run) is not None
        assert len(third._query("SELECT * FROM schema_version")) == 1


def test_a_version_1_store_is_migrated_keeping_its_runs(tmp_path: Path) -> None:
    """A store written before verdicts and next-run budgets existed (schema 1) opens and gains them."""
    path = tmp_path / "watcher.db"
    with RunStore(path) as store:
        run = store.create_run(1)
        store.record_decision(run, 1, 1, advisor="rules", decision="PROCEED")
    conn = sqlite3.connect(path)
    for table, column in (("runs", "verdict"), ("decisions", "next_run"), ("decisions", "dataset")):
        conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    conn.execute("DELETE FROM schema_version")
    conn.execute("INSERT INTO schema_version VALUES (1, 'watcher 0.1', 0)")
    conn.commit()
    conn.close()
    with RunStore(path) as store:
        assert [r.id for r in store.runs()] == [run]
        store.finish_run(run, "succeeded", "done", verdict="no seed reproduces this history")
        store.record_decision(run, 1, 2, advisor="rules", decision="PROCEED", next_run={"max_seeds": 2}, dataset="d")
        assert store.get_run(run).verdict == "no seed reproduces this history"
        assert store.last_decision(1, "d")["next_run"] == {"max_seeds": 2}
        assert [v for (v,) in store.conn.execute("SELECT version FROM schema_version ORDER BY version")] == [1, 2, 3]


def test_newer_schema_is_refused_with_a_fix(tmp_path: Path) -> None:
    path = tmp_path / "watcher.db"
    RunStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_version VALUES (?, 'future', 0)", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=r"newer than this watcher.*upgrade watcher"):
        RunStore(path)


def test_garbage_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "watcher.db"
    junk = b"this is not a database at all\x00" * 200
    path.write_bytes(junk)
    with pytest.raises(StoreError, match="damaged or not a watcher store"):
        RunStore(path)
    assert path.read_bytes() == junk


def test_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE runs (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="no watcher schema"):
        RunStore(path)


def test_truncated_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "watcher.db"
    with RunStore(path) as s:
        s.create_run(1)
        s.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match="damaged"):
        RunStore(path)


def test_missing_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "watcher.db"
    RunStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE decisions")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="missing tables: decisions"):
        RunStore(path)


def test_readonly_open_needs_an_existing_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        RunStore(tmp_path / "absent.db", readonly=True)
    with RunStore(tmp_path / "w.db") as s:
        run = s.create_run(1)
    with RunStore(tmp_path / "w.db", readonly=True) as ro:
        assert ro.get_run(run).status == "running"  # type: ignore[union-attr]
        with pytest.raises(StoreError, match="read-only"):
            ro.create_run(2)


def test_runs_steps_history_and_resume(store: RunStore) -> None:
    first = store.create_run(1, 3, config_hash="h1", args={"from": 1})
    a1 = store.start_step(first, 1, "window", {"trials": 50})
    store.finish_step(first, 1, a1, "failed", {"survivors": 0}, error="no survivors")
    a2 = store.start_step(first, 1, "window", {"trials": 100})
    store.finish_step(first, 1, a2, "succeeded", {"survivors": 12})
    store.finish_run(first, "succeeded")
    second = store.create_run(2, config_hash="h1")
    store.start_step(second, 2.5, "scorer")
    assert (a1, a2) == (1, 2)
    history = store.step_history(number=1)
    assert [(h.attempt, h.params["trials"], h.metrics["survivors"]) for h in history] == [(1, 50, 0), (2, 100, 12)]
    assert store.step_history(run_id=second)[0].number == 2.5
    assert store.step_history(limit=1)[0].run_id == second
    assert store.latest_run().id == second  # type: ignore[union-attr]
    assert store.find_resumable_run().id == second  # type: ignore[union-attr]
    assert store.find_resumable_run(config_hash="other") is None
    store.finish_run(second, "halted", reason="halt file")
    store.resume_run(second)
    assert store.get_run(second).status == "running"  # type: ignore[union-attr]
    assert [e["kind"] for e in store.events(run_id=second)] == ["resumed"]
    with pytest.raises(StoreError, match="status 'done'"):
        store.finish_run(second, "done")


def test_decisions_and_preflight_round_trip(store: RunStore) -> None:
    run = store.create_run(1)
    store.record_decision(
        run,
        1,
        1,
        advisor="claude",
        decision="RETRY",
        inputs={"survivors": 0},
        raw_answer='{"trials": 9999}',
        clamped={"trials": 500},
        applied={"trials": 500},
        reason="0 survivors",
        fallback=None,
    )
    store.record_preflight({"checks": [{"name": "ssh", "status": "ok"}]}, run_id=run, step=1, ok=True)
    (decision,) = store.decisions(run)
    assert decision["clamped"] == {"trials": 500} and decision["raw_answer"] == '{"trials": 9999}'
    assert store.preflight_results(run)[0]["result"]["checks"][0]["name"] == "ssh"


def test_first_valid_result_wins_and_orphans_go_back_to_pending(store: RunStore) -> None:
    run = store.create_run(1)
    sink = store.chunk_sink(run, 2)
    specs = [ChunkSpec.of({"i": i}) for i in range(3)]
    sink.chunks_planned(specs)
    sink.attempt_started(specs[0].chunk_id, 1, Slot("a", 0))
    sink.attempt_started(specs[1].chunk_id, 1, Slot("a", 1))
    assert sink.chunk_done(specs[0].chunk_id, Slot("a", 0), {"ok": True, "v": 1}, 1.0)
    assert not sink.chunk_done(specs[0].chunk_id, Slot("b", 0), {"ok": True, "v": "late"}, 9.0)
    assert store.chunk_results(run, 2) == {specs[0].chunk_id: {"ok": True, "v": 1}}
    # a new coordinator plans the same chunks: the 'running' row of the dead one is pending again
    fresh = store.chunk_sink(run, 2)
    fresh.chunks_planned(specs)
    assert fresh.orphans_reset == 1
    assert store.chunk_counts(run, 2) == {"pending": 2, "running": 0, "done": 1, "failed": 0}


def test_failures_are_stored_in_full(store: RunStore) -> None:
    run = store.create_run(1)
    sink = store.chunk_sink(run, 1)
    spec = ChunkSpec.of({"i": 1})
    sink.chunks_planned([spec])
    sink.chunk_failed(
        ChunkFailure(
            spec.chunk_id,
            1,
            Slot("rig", 4),
            "exit",
            "worker exited with code 1",
            "python -m w",
            exit_code=1,
            stderr_tail="HIP error",
            gpu_state={"status": "faulted"},
            traceback="tb",
            time=5.0,
        )
    )
    (row,) = store.chunk_failures(run)
    assert (row["node"], row["gpu"], row["exit_code"], row["stderr_tail"]) == ("rig", 4, 1, "HIP error")
    assert row["gpu_state"] == {"status": "faulted"} and row["traceback"] == "tb"
    assert store.chunk_rows(run, 1)[0]["status"] == "failed"


def test_large_results_spill_to_a_file(store: RunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_chunks, "INLINE_RESULT_LIMIT", 100)
    run = store.create_run(1)
    sink = store.chunk_sink(run, 3)
    big = {"ok": True, "survivors": list(range(500))}
    sink.chunk_done("c1", Slot("a", 0), big, 1.0)
    row = store._query("SELECT result, result_ref FROM chunks")[0]
    assert row["result"] is None and row["result_ref"].endswith("c1.json")
    assert store.chunk_results(run, 3) == {"c1": big}


def test_ledger_quarantine_probation_and_release(store: RunStore) -> None:
    store.quarantine("rig", 3, "SMU timeout", ["0xFFFFFFFF"], "scheduler")
    assert store.record_check("rig", 3, "ok", []) == 1
    assert store.record_check("rig", 3, "faulted", ["N/A"]) == 0
    assert store.record_check("rig", 5, "ok", []) is None  # not quarantined: only logged
    (entry,) = store.entries()
    assert (entry.node, entry.gpu, entry.evidence, entry.source) == ("rig", 3, ("0xFFFFFFFF",), "scheduler")
    assert store.release("rig", 3, by="alice") and not store.release("rig", 3, by="alice")
    assert store.entries() == []
    assert [r["action"] for r in store.ledger_log("rig")][:2] == ["release", "check"]


def test_concurrent_writers_from_threads(store: RunStore) -> None:
    run = store.create_run(1)
    sink = store.chunk_sink(run, 1)
    specs = [ChunkSpec.of({"i": i}) for i in range(200)]
    sink.chunks_planned(specs)
    wins: list[bool] = []

    def worker(offset: int) -> None:
        for spec in specs:  # every thread tries every chunk: exactly one result per chunk may win
            wins.append(sink.chunk_done(spec.chunk_id, Slot("n", offset), {"ok": True, "by": offset}, 0.1))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(wins) == 200 and len(wins) == 800
    assert store.chunk_counts(run, 1)["done"] == 200
