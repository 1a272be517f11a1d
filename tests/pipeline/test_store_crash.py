"""The run store's promises to its readers: `watcher status` reads it while a run writes (WAL: readers never
wait for the writer, nor see half a transaction), and a writer SIGKILLed in the middle of a step leaves a
store that opens, read-write, whole, with every stored result still there. One real coordinator process
(tests/cluster/sched_coordinator.py: the scheduler storing chunk after chunk from its slot threads) is
read and then killed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agents.commands.common import open_store
from agents.commands.status import collect
from cluster.errors import StoreNotCreatedError
from pipeline.store import RunStore

REPO = Path(__file__).resolve().parents[2]
CLUSTER_TESTS = REPO / "tests" / "cluster"
sys.path.insert(0, str(CLUSTER_TESTS))

from sched_helpers import local_config  # noqa: E402

CHUNKS = 60


def _status_cli(state: Path, config: Path) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "agents.cli", "--state-dir", str(state), "status", "--json", "--config", str(config)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode in (0, 3), proc.stderr[-2000:]
    return proc.returncode, json.loads(proc.stdout)


def test_status_reads_while_a_run_writes_and_a_sigkilled_writer_leaves_a_store_that_opens(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    db = state / "watcher.db"
    config = tmp_path / "distributed_config.json"
    config.write_text(local_config(tmp_path, {"a": 2, "b": 2}).model_dump_json())
    writer = subprocess.Popen(
        [sys.executable, str(CLUSTER_TESTS / "sched_coordinator.py"), str(db), str(tmp_path), str(CHUNKS),
         str(tmp_path / "exec.log"), "--sleep", "0.1", "--config", str(config), "--step"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
    )  # fmt: skip
    seen: list[int] = []
    cli: list[dict] = []
    try:
        deadline = time.monotonic() + 90
        while not seen or seen[-1] < CHUNKS // 3:
            assert writer.poll() is None, "the writer ended before it could be killed"
            assert time.monotonic() < deadline, f"no progress seen: {seen[-5:]}"
            info = collect(state, str(config)) if db.exists() else {"run": None}
            run = info["run"]
            if run is not None and run["chunks"]:
                planned = sum(run["chunks"].values())  # the chunks are planned in one transaction
                assert planned in (0, CHUNKS), f"a read saw half a transaction: {run['chunks']}"
                seen.append(run["chunks"].get("done", 0))
                if len(cli) < 1 and seen[-1] >= 3:
                    cli.append(_status_cli(state, config)[1])  # the real command, in its own process
            time.sleep(0.02)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(10)
    assert seen == sorted(seen), "done counts went backwards between reads"
    assert cli and cli[0]["run"]["status"] == "running" and cli[0]["run"]["step"] == 1
    with RunStore(db) as store:  # read-write: the killed writer's WAL is recovered
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        run = store.latest_run()
        assert run is not None and run.status == "running"
        counts = store.chunk_counts(run.id, 1)
        assert sum(counts.values()) == CHUNKS and counts["done"] >= seen[-1]
        assert len(store.chunk_results(run.id, 1)) == counts["done"]
    code, after = _status_cli(state, config)
    assert code == 3 and after["run"]["chunks"]["done"] == counts["done"]


def test_a_store_whose_creator_died_before_its_schema_is_not_damaged(tmp_path: Path) -> None:
    """Killed between switching on WAL and committing the schema: readers see no store yet, the next writer
    creates it (before, every later open called the file damaged)."""
    state = tmp_path / "state"
    state.mkdir()
    path = state / "watcher.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    with pytest.raises(StoreNotCreatedError, match="holds no schema yet"):
        RunStore(path, readonly=True)
    assert open_store(state, must_exist=False) is None
    with RunStore(path) as store:
        assert store.create_run(1) == 1
    with RunStore(path, readonly=True) as store:
        assert store.latest_run() is not None
