"""Long-lived slot workers (issue 13): the same chunks through both slot modes, worker faults (killed,
SIGSTOPped, garbage, too old), a node lost with 12 live workers, Ctrl-C and SIGKILL of the coordinator,
the memory cap. Real processes, real sshd rigs on 127.0.0.1 (the session API of both transports is in
test_executor_contract.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cluster"))

import fakerig
from sched_helpers import WORKER_ARGV, captured_log, chunks, executions, local_config, local_executors, survivors

from cluster.config import ClusterConfig, parse_config
from cluster.errors import SchedulingError
from cluster.scheduler import run_chunks
from cluster.transport import executor_for
from pipeline.store import RunStore

pytestmark = pytest.mark.integration
HERE = Path(__file__).resolve().parent
COORDINATOR = HERE.parent / "cluster" / "sched_coordinator.py"


@pytest.fixture
def store(tmp_path: Path):
    s = RunStore(tmp_path / "watcher.db")
    yield s
    s.close()


def _run(config: ClusterConfig, specs: list, store: RunStore, run: int, executors=None, **kw: Any):
    kw.setdefault("probe", None)
    kw.setdefault("cleanup", None)
    own = executors is None
    executors = executors or local_executors(config)
    try:
        return run_chunks(
            config, specs, sink=store.chunk_sink(run, 1), executors=executors, worker_argv=WORKER_ARGV,
            progress=False, **kw,
        )  # fmt: skip
    finally:
        if own:
            for ex in executors.values():
                ex.close()


def _rig_config(rig_list: list[Any], **policy: Any) -> ClusterConfig:
    scheduler = {"backoff_s": 0.05, "backoff_max_s": 0.2, "run_cleanup": False, **policy}
    return fakerig.cluster_config(
        rig_list, scheduler=scheduler, timeouts={"connect": 2.0, "command": 30.0, "job": 60.0, "preflight": 15.0}
    )


def _rig_executors(config: ClusterConfig) -> dict:
    return {n.name: executor_for(n, config.timeouts) for n in config.nodes}


def _scratch(rig: Any) -> Path:
    path = rig.root.parent / "slot-scratch"
    path.mkdir(exist_ok=True)
    path.chmod(0o777)
    return path


def rig_processes(rigs: list[Any]) -> list[tuple[int, str]]:
    """Processes started by a command on these rigs (each carries RIG_DIR=<root>), sshd itself excluded."""
    marks = [f"RIG_DIR={rig.root}".encode() for rig in rigs]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(m in env for m in marks) and not cmd.startswith("sshd"):
            found.append((int(entry.name), cmd[:160]))
    return found


def _wait_none(rigs: list[Any], seconds: float = 10.0) -> list[tuple[int, str]]:
    deadline = time.monotonic() + seconds
    while (left := rig_processes(rigs)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _record(failure: dict[str, Any] | Any) -> tuple:
    get = failure.get if isinstance(failure, dict) else lambda k: getattr(failure, k)
    return (get("kind"), get("exit_code"), get("error"), tuple((get("stderr_tail") or "").strip().splitlines()[-1:]))


# --- both modes, same answers -------------------------------------------------------------------------
def test_both_slot_modes_give_the_same_results_and_failure_records(tmp_path: Path) -> None:
    """Contract: per-chunk processes and slot workers run the same chunks, with faults pinned to a slot or
    to a chunk, to the same results and the same failure records."""
    cfg = local_config(tmp_path, {"a": 2, "b": 1}, breaker_min_failures=50, max_attempts=2)
    calls = [
        chunks(12, fail_slots=["b:0"]),
        chunks(1, value=100, ok_false=True),
        chunks(1, value=101, bad_output=True),
        chunks(1, value=102, bad_spec=True),
    ]
    outcomes: dict[str, list] = {}
    for mode in ("per_chunk", "workers"):
        outcomes[mode] = []
        with RunStore(tmp_path / f"{mode}.db") as st:
            for number, specs in enumerate(calls):
                run = st.create_run(1)
                try:
                    results = survivors(_run(cfg, specs, st, run, slot_mode=mode).results)
                except SchedulingError as err:
                    results = {"error": str(err).split(";")[0]}
                records = sorted({_record(f) for f in st.chunk_failures(run)})
                outcomes[mode].append((number, results, records, st.chunk_counts(run, 1)["done"]))
    assert outcomes["workers"] == outcomes["per_chunk"]
    kinds = {rec[0] for _n, _r, records, _d in outcomes["workers"] for rec in records}
    assert kinds == {"exit", "worker_error", "invalid", "bad_spec"}


# --- worker faults --------------------------------------------------------------------------------------
def test_worker_killed_mid_chunk_is_restarted_and_its_chunk_redone(tmp_path: Path, store: RunStore) -> None:
    cfg = local_config(tmp_path, {"a": 2}, breaker_min_failures=50, max_attempts=3)
    log = tmp_path / "exec.log"
    run = store.create_run(1)
    with captured_log() as messages:
        report = _run(cfg, chunks(8, log=str(log), die_slots=["a:1"]), store, run)
    assert len(report.results) == 8 and all(r["slot"] == "a:0" for r in report.results.values())
    died = [f for f in store.chunk_failures(run) if f["gpu"] == 1]
    assert died and all(f["kind"] == "exit" and "dying on a:1" in f["stderr_tail"] for f in died)
    assert any("restart" in m for m in messages), "the dead worker was not restarted with backoff"
    first_fail = next(i for i, m in enumerate(messages) if " FAILED on a:1" in m)
    chunk_id = messages[first_fail].split()[1]
    retry = [i for i, m in enumerate(messages) if m.startswith(f"retrying chunk {chunk_id} attempt 2/")]
    assert retry and retry[0] > first_fail, "retried before the failure was logged"


def test_sigstopped_worker_is_noticed_within_the_heartbeat_timeout(tmp_path: Path, store: RunStore) -> None:
    hb = 1.0
    cfg = local_config(tmp_path, {"a": 2}, heartbeat_timeout_s=hb, breaker_min_failures=50)
    log = tmp_path / "exec.log"
    run = store.create_run(1)
    stopped: dict[str, float] = {}

    def stop_one() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    env = (entry / "environ").read_bytes().split(b"\0")
                    cmd = (entry / "cmdline").read_bytes()
                    cwd = os.readlink(entry / "cwd")
                except OSError:
                    continue
                ours = b"--serve" in cmd and b"WATCHER_SLOT=a:1" in env and cwd == str(tmp_path)
                if ours and len(executions(log)) >= 3:
                    os.kill(int(entry.name), signal.SIGSTOP)
                    stopped["at"] = time.monotonic()
                    return
            time.sleep(0.05)

    stopper = threading.Thread(target=stop_one, daemon=True)
    stopper.start()
    report = _run(cfg, chunks(40, log=str(log), sleep=0.1), store, run)
    stopper.join(5)
    assert "at" in stopped, "no worker was stopped"
    stale = [f for f in report.failures if f.kind == "stale"]
    assert len(stale) == 1 and stale[0].slot.gpu == 1 and "heartbeat_timeout_s" in stale[0].error
    noticed = stale[0].time - (time.time() - (time.monotonic() - stopped["at"]))
    assert noticed <= hb + 1.0, f"noticed {noticed:.2f} s after SIGSTOP"
    assert len(report.results) == 40


def test_worker_printing_garbage_fails_the_chunk_and_is_replaced(tmp_path: Path, store: RunStore) -> None:
    cfg = local_config(tmp_path, {"a": 1}, max_attempts=2)
    run = store.create_run(1)
    with pytest.raises(SchedulingError, match="outside the protocol"):
        _run(cfg, chunks(3) + chunks(1, value=9, protocol_garbage=True), store, run)
    rows = store.chunk_failures(run)
    assert [r["kind"] for r in rows] == ["invalid", "invalid"]
    assert store.chunk_counts(run, 1)["done"] == 3


def test_worker_older_than_the_coordinator_is_refused_naming_both(tmp_path: Path, store: RunStore) -> None:
    base = local_config(tmp_path, {"old": 1, "new": 1}).model_dump()
    base["nodes"][0]["env"] = {"SCHED_WORKER_VERSION": "0.0.1"}
    cfg = parse_config(base)
    run = store.create_run(1)
    report = _run(cfg, chunks(4), store, run)
    assert all(r["slot"] == "new:0" for r in report.results.values())
    reason = report.nodes_tripped["old"]
    assert "0.0.1" in reason and "older than the coordinator's" in reason
    assert not store.chunk_failures(run)


def test_memory_estimate_caps_live_workers_per_node(tmp_path: Path, store: RunStore) -> None:
    base = local_config(tmp_path, {"a": 4}, worker_memory_fraction=0.5).model_dump()
    base["nodes"][0]["env"] = {"SCHED_WORKER_MEM_TOTAL": str(4 << 30)}
    cfg = parse_config(base)
    log = tmp_path / "exec.log"
    run = store.create_run(1)
    with captured_log() as messages:
        report = _run(cfg, chunks(24, log=str(log), fake_rss=1 << 30, sleep=0.05), store, run)
    assert len(report.results) == 24
    assert any("2 of 4 may be up together" in m for m in messages)
    late = {slot for _c, slot, _a in executions(log)[12:]}
    assert len(late) <= 2, f"more workers than the memory allows kept running: {late}"


# --- rigs: lost node, Ctrl-C, SIGKILL -------------------------------------------------------------------
def test_node_lost_with_12_live_workers_completes_and_leaves_nothing(rigs, store, tmp_path) -> None:
    rig_a, rig_b = rigs(2, gpus=12)
    config = _rig_config([rig_a, rig_b], breaker_min_failures=2, breaker_window=4)
    log = _scratch(rig_a) / "exec.log"
    run = store.create_run(1)

    def pull_plug() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if len({s for _c, s, _a in executions(log) if s.startswith(rig_b.name)}) >= 12:
                rig_b.down()
                return
            time.sleep(0.02)

    killer = threading.Thread(target=pull_plug, daemon=True)
    killer.start()
    executors = _rig_executors(config)
    try:
        report = _run(config, chunks(120, sleep=0.1, log=str(log)), store, run, executors=executors)
    finally:
        for ex in executors.values():
            ex.close()
    killer.join(5)
    assert rig_b.proc is None and rig_b.name in report.nodes_tripped
    assert len(report.results) == 120
    assert store.chunk_counts(run, 1)["done"] == 120
    assert _wait_none([rig_a, rig_b]) == []


def test_ctrl_c_leaves_no_worker_on_the_rigs(rigs, store) -> None:
    (rig,) = rigs(1, gpus=4)
    config = _rig_config([rig])
    log = _scratch(rig) / "exec.log"
    executors = _rig_executors(config)

    def interrupted() -> bool:
        if len(executions(log)) >= 6:
            raise KeyboardInterrupt
        return False

    try:
        with pytest.raises(KeyboardInterrupt):
            _run(config, chunks(40, sleep=0.2, log=str(log)), store, store.create_run(1), executors=executors,
                 halt_check=interrupted)  # fmt: skip
    finally:
        for ex in executors.values():
            ex.close()
    assert _wait_none([rig]) == []


def test_coordinator_sigkill_leaves_no_worker_on_the_rigs(rigs, tmp_path) -> None:
    (rig,) = rigs(1, gpus=4)
    config = _rig_config([rig])
    cfg_path = tmp_path / "distributed_config.json"
    cfg_path.write_text(config.model_dump_json())
    log = _scratch(rig) / "exec.log"
    proc = subprocess.Popen(
        [sys.executable, str(COORDINATOR), str(tmp_path / "w.db"), str(tmp_path), "40", str(log),
         "--sleep", "0.3", "--config", str(cfg_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while len(executions(log)) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(rig_processes([rig])) >= 4, "the slot workers never came up"
    finally:
        proc.kill()
        proc.wait(10)
    assert _wait_none([rig]) == []


def test_local_workers_die_with_a_sigkilled_coordinator(tmp_path: Path) -> None:
    def workers() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                cmd = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
                cwd = os.readlink(entry / "cwd") if cmd else ""
            except OSError:
                continue
            if b"--serve" in cmd and cwd == str(tmp_path):
                found.append(int(entry.name))
        return found

    log = tmp_path / "exec.log"
    proc = subprocess.Popen(
        [sys.executable, str(COORDINATOR), str(tmp_path / "w.db"), str(tmp_path), "40", str(log), "--sleep", "0.3"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while len(executions(log)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(workers()) == 4, "the slot workers never came up"
    finally:
        proc.kill()
        proc.wait(10)
    deadline = time.monotonic() + 10
    while workers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert workers() == []
