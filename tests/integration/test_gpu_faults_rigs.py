"""GPU faults as they happen on the rigs (issue 15), through preflight on fake rigs (real sshd, real
sqlite): hung sysfs reads with a reader that ignores SIGTERM, a hung rocm-smi, a GPU vanishing, SMU kernel
lines counted once and a release that sticks, dmesg refused, an index/PCI mismatch, excluded and watched
GPUs, and the batch cleanup's findings stored in the ledger handed to it; health.min_probe_interval_s held
across processes through the ledger; the scheduler's failure probe with and without a ledger; and through
run_chunks, an OOM kill named, counted once, and the node's slot workers lowered for good (the memory
estimate of later chunks does not raise the cap again). `watcher run` through the same faults:
test_gpu_faults_run.py."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import fakerig
import pytest
from loguru import logger

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cluster"))
from sched_helpers import WORKER_ARGV, captured_log

from cluster.gpu.cleanup import batch_cleanup, cleanup_node
from cluster.gpu.probe import failure_probe, probe_gpu
from cluster.scheduler import ChunkSpec, run_chunks
from cluster.transport import executor_for
from pipeline.store import RunStore
from preflight import run_preflight

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
LOCKUP = "watchdog: BUG: soft lockup - CPU#2 stuck for 26s! [python:48301]"


def config_for(rigs, nodes=None, **health):
    data = {"min_healthy_gpus": 1, "check_torch_devices": False, "min_probe_interval_s": 0, **health}
    config = fakerig.cluster_config(rigs, health=data)
    if nodes:
        dumped = config.model_dump()
        for node in dumped["nodes"]:
            node.update(nodes.get(node["name"], {}))
        config = type(config).model_validate(dumped)
    return config


def lines(report, check=None, status=None):
    return [
        r.line()
        for r in report.results
        if (check is None or r.check == check) and (status is None or r.status == status)
    ]


def quarantined(store):
    return {(e.node, e.gpu): e.reason for e in store.entries()}


def test_hung_sysfs_reader_ignoring_sigterm_is_given_up_and_gpu_quarantined(rigs, tmp_path) -> None:
    (rig,) = rigs(1, gpus=3)
    rig.set_gpu(1, "sysfs-hang")
    env = {**rig.node_config().env, "WATCHER_SYSFS_READER_PREFIX": str(rig.bin / "ignore-sigterm")}
    config = config_for([rig], {rig.name: {"env": env}}, probe_deadline_s=1.5)
    store = RunStore(tmp_path / "watcher.db")
    started = time.monotonic()
    report = run_preflight(config, ledger=store)
    elapsed = time.monotonic() - started
    assert elapsed < 1.5 + 4.0, elapsed  # the deadline, not the hung reader, bounds the check
    assert report.ok, report.failure_lines()
    assert set(quarantined(store)) == {(rig.name, 1)}
    assert "SMU hang suspected" in quarantined(store)[(rig.name, 1)]
    assert any("sysfs reads of GPU 1 (0000:06:00.0) did not finish within 1.5 s" in ln for ln in lines(report, "gpu"))
    # the stubborn reader is still blocked on the node (SIGTERM ignored): the check did not wait for it
    stuck = subprocess.run(["pgrep", "-f", f"{rig.sysfs}/class/drm/card1"], capture_output=True, text=True)
    assert stuck.stdout.split(), "expected the SIGTERM-ignoring reader to outlive the probe"


def test_hung_rocm_smi_is_reported_as_such_and_the_gpu_quarantined(rigs, tmp_path) -> None:
    a, b = rigs(2, gpus=2)
    b.set_gpu(1, "hang")
    store = RunStore(tmp_path / "watcher.db")
    started = time.monotonic()
    report = run_preflight(config_for([a, b], probe_deadline_s=1.5), ledger=store)
    assert time.monotonic() - started < 1.5 * 2 + 6
    assert report.ok, report.failure_lines()
    assert not lines(report, "ssh", "fail")
    assert any(
        ln.startswith(f"{b.name}: rocm-smi hung: no answer within 1.5 s") for ln in lines(report, "probe", "warn")
    )
    assert set(quarantined(store)) == {(b.name, 1)}
    assert "SMU hang suspected" in quarantined(store)[(b.name, 1)]


def test_vanished_gpu_is_named_and_quarantined(rigs, tmp_path) -> None:
    (rig,) = rigs(1, gpus=3)
    store = RunStore(tmp_path / "watcher.db")
    assert run_preflight(config_for([rig]), ledger=store).ok and not store.entries()
    rig.set_gpu(2, "missing")
    report = run_preflight(config_for([rig]), ledger=store)
    assert set(quarantined(store)) == {(rig.name, 2)}
    assert any("GPU 2 missing from rocm-smi's JSON output" in ln for ln in lines(report, "gpu", "warn"))


def test_smu_line_counts_once_and_a_release_sticks_until_a_new_fault(rigs, tmp_path) -> None:
    (rig,) = rigs(1, gpus=3)
    store = RunStore(tmp_path / "watcher.db")
    config = config_for([rig])
    rig.kernel_lines([f"[ 100.000001] amdgpu {rig.pci(2)}: amdgpu: SMU: response:0xFFFFFFFF for message:X"])
    run_preflight(config, ledger=store)
    assert set(quarantined(store)) == {(rig.name, 2)}
    assert any("0xFFFFFFFF" in row["line"] for row in store.kernel_lines(rig.name))  # the reader recorded it
    assert store.release(rig.name, 2, "operator")
    for _ in range(2):  # the old line is not new any more: the release sticks
        assert run_preflight(config, ledger=store).ok
        assert not store.entries()
    rig.kernel_lines([f"[ 200.5] amdgpu {rig.pci(2)}: amdgpu: SMU: I'm not done with your previous command!"])
    run_preflight(config, ledger=store)
    assert set(quarantined(store)) == {(rig.name, 2)}


def test_dmesg_refused_is_a_named_warning(rigs, tmp_path) -> None:
    (rig,) = rigs(1, gpus=2)
    rig.deny_dmesg()
    report = run_preflight(config_for([rig]), ledger=RunStore(tmp_path / "watcher.db"))
    assert report.ok
    (warn,) = lines(report, "kernel", "warn")
    assert warn.startswith(
        f"{rig.name}: kernel log unreadable: dmesg: dmesg: read kernel buffer failed: Operation not permitted"
    )


def test_index_pci_mismatch_fails_naming_both(rigs, tmp_path) -> None:
    (rig,) = rigs(1, gpus=3)
    excluded = [{"index": 1, "reason": "SMU 0xFFFFFFFF", "pci": rig.pci(1)}]
    watch = [{"node": rig.name, "gpu": 2, "pci": rig.pci(2)}]
    config = config_for([rig], {rig.name: {"excluded_gpus": excluded}})
    config = type(config).model_validate({**config.model_dump(), "watchlist": watch})
    assert run_preflight(config).ok
    rig.set_pci(2, rig.pci(1).replace("06", "21"))  # GPU 2 reseated into another slot
    rig.set_pci(1, "0000:09:00.0")  # and GPU 1 is now where GPU 2 was
    report = run_preflight(config)
    assert report.exit_code == 69
    fails = lines(report, "identity", "fail")
    assert any("excluded_gpus names GPU 1 at 0000:06:00.0, but GPU 1 is at 0000:09:00.0" in ln for ln in fails), fails
    assert any("watchlist names GPU 2 at 0000:09:00.0, but GPU 2 is at 0000:21:00.0 (0000:09:00.0 is GPU 1 now)" in ln
               for ln in fails), fails  # fmt: skip


def test_excluded_gpu_shown_from_node_probe_never_quarantined_watchlist_logged(rigs, tmp_path) -> None:
    (rig,) = rigs(1, gpus=3)
    rig.set_gpu(0, "ffff")
    config = config_for([rig], {rig.name: {"excluded_gpus": [{"index": 0, "reason": "dead SMU"}]}})
    config = type(config).model_validate({**config.model_dump(), "watchlist": [{"node": rig.name, "gpu": 2}]})
    store = RunStore(tmp_path / "watcher.db")
    seen: list[str] = []
    sink = logger.add(lambda m: seen.append(str(m)), level="WARNING")
    try:
        for _ in range(2):
            report = run_preflight(config, ledger=store)
    finally:
        logger.remove(sink)
    assert report.ok and not store.entries()
    (excluded,) = [ln for ln in lines(report, "gpu") if "GPU 0" in ln]
    assert "excluded by config (gets no work); reads faulted" in excluded and "4294.967295" in excluded
    watched = [s for s in seen if f"watchlist {rig.name}:2 (0000:09:00.0): ok; readings" in s]
    assert len(watched) == 2 and "use_pct" in watched[0] and "temp_edge" in watched[0]


def test_cleanup_reports_and_stores_vanished_gpu_and_orphaned_vram(rigs, tmp_path) -> None:
    (rig,) = rigs(1, gpus=3)
    store = RunStore(tmp_path / "watcher.db")
    ex = executor_for(rig.node_config(), config_for([rig]).timeouts)
    script = str(REPO / "scripts" / "cleanup_gpus.sh")
    seen: list[str] = []
    sink = logger.add(lambda m: seen.append(m.record["level"].name + " " + m.record["message"]), level="DEBUG")
    try:
        assert cleanup_node(ex, script=script, ledger=store) == []
        rig.set_gpu(2, "missing")
        rig.set_vram_used(1, 3 << 30)
        found = batch_cleanup(store, script)(ex)  # what a caller of run_chunks hands the scheduler
        assert [(g.index, g.status.value) for g in found] == [(2, "faulted")]
        with pytest.raises(RuntimeError, match=f"cleanup on node {rig.name}"):
            cleanup_node(ex, script="/nonexistent/cleanup_gpus.sh", ledger=store)
        cleanup_node(ex, script=script)  # no ledger: logged, not stored
    finally:
        logger.remove(sink)
        ex.close()
    results = store.cleanup_results(rig.name)
    assert [r["exit_code"] for r in results] == [0, 3, 127]
    assert any(
        f.startswith("MISSING gpu=2 reason=GPU 2 not reported by rocm-smi (expected 3") for f in results[1]["findings"]
    )
    assert "ORPHANED_VRAM gpu=1 used=3072 MiB with no compute process on it" in results[1]["findings"]
    assert any(s.startswith("WARNING GPU cleanup on rig01: ORPHANED_VRAM gpu=1") for s in seen)
    assert any(s.startswith(f"ERROR GPU cleanup on {rig.name}: cleanup script failed with exit 127") for s in seen)


def test_min_probe_interval_holds_across_processes(rigs, tmp_path) -> None:
    """A cron `preflight check` right after a run's gate reuses the gate's reading (kept in the ledger)
    instead of polling the SMU again; once the interval has passed it probes afresh."""
    (rig,) = rigs(1, gpus=2)
    config = config_for([rig], min_probe_interval_s=30)
    (tmp_path / "cluster.json").write_text(config.model_dump_json())
    state = tmp_path / "state"
    with RunStore(state / "watcher.db") as store:
        assert run_preflight(config, ledger=store).ok  # the run's gate
        (_, reading) = store.last_probe(rig.name)
        assert [g["status"] for g in reading["gpus"]] == ["ok", "ok"]
    polled = len(rig.rocm_smi_calls())
    cli = [sys.executable, "-c", "from agents.commands.preflight import main; raise SystemExit(main())", "check",
           "--config", str(tmp_path / "cluster.json"), "--state-dir", str(state), "--json"]  # fmt: skip
    res = subprocess.run(cli, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(rig.rocm_smi_calls()) == polled, "the cron check polled the SMU again"
    (capacity,) = [r for r in json.loads(res.stdout)["results"] if r["check"] == "capacity"]
    assert capacity["message"] == "2 usable GPU slot(s)", capacity  # judged on the kept reading
    with RunStore(state / "watcher.db") as store:
        stamp, _ = store.last_probe(rig.name)
        store.conn.execute("UPDATE events SET time = ? WHERE kind = 'gpu_probe'", (stamp - 31,))  # 31 s later
        assert run_preflight(config, ledger=store).ok
    assert len(rig.rocm_smi_calls()) == polled + 1


def test_failure_probe_reads_recent_kernel_lines_or_the_ledgers_new_ones(rigs, tmp_path) -> None:
    (rig,) = rigs(1, gpus=2)
    now = fakerig.uptime()
    old_oom = f"[{now - 100:12.6f}] Out of memory: Killed process 101 (python) total-vm:1kB, anon-rss:1kB"
    earlier_oom = f"[{now - 30:12.6f}] Out of memory: Killed process 102 (python) total-vm:1kB, anon-rss:1kB"
    rig.kernel_lines([old_oom, earlier_oom])
    (lockup,) = rig.kernel_event(LOCKUP)
    (fresh_oom,) = rig.kernel_event("Out of memory: Killed process 103 (python) total-vm:1kB, anon-rss:1kB")
    ex = executor_for(rig.node_config(), config_for([rig]).timeouts)
    try:
        # no ledger (the scheduler's own "auto" probe): the last minute, OOM kills of the last 15 s only
        health = probe_gpu(ex, 0)
        assert health.status.value == "ok"
        assert [e for e in health.evidence if "kernel (" in e] == [f"kernel (soft_lockup): {lockup}",
                                                                    f"kernel (oom): {fresh_oom}"]  # fmt: skip
        # bound to a ledger (what a caller with a run store hands the scheduler): each line counts once
        with RunStore(tmp_path / "watcher.db") as store:
            probe = failure_probe(store, config_for([rig]).health)
            first = [e for e in probe(ex, 1).evidence if "kernel (" in e]
            assert len(first) == 4 and first[-1] == f"kernel (oom): {fresh_oom}"  # a first reader: since boot
            assert not [e for e in probe(ex, 1).evidence if "kernel (" in e]
            (again,) = rig.kernel_event("Out of memory: Killed process 104 (python) total-vm:1kB, anon-rss:1kB")
            assert [e for e in probe(ex, 0).evidence if "kernel (" in e] == [f"kernel (oom): {again}"]
            assert [row["line"] for row in store.kernel_lines(rig.name)] == [old_oom, earlier_oom, lockup, fresh_oom,
                                                                             again]  # fmt: skip
    finally:
        ex.close()


@pytest.fixture(scope="module")
def oom_then_hang(tmp_path_factory):
    """One run_chunks call on a rig with 3 GPUs, slot workers reporting their size (as pipeline.worker does),
    probe and cleanup bound to the run store as a caller with a ledger passes them: the first chunk on GPU 0
    is OOM-killed, a later one on GPU 0 ends in a GPU hang. Shared by the tests below (one call, ~5 s)."""
    reason = fakerig.available()
    if reason:
        pytest.skip(reason)
    factory = fakerig.RigFactory(fakerig.private_base("oom"))
    tmp = tmp_path_factory.mktemp("oom")
    try:
        (rig,) = factory.make(1, gpus=3)
        rig.worker_faults()
        node = {"env": {**rig.node_config().env, "SCHED_WORKER_MEM_TOTAL": str(64 << 30)}}
        config = config_for([rig], {rig.name: node})
        policy = {"backoff_s": 0.05, "backoff_max_s": 0.2, "cleanup_batch_size": 100}
        config = type(config).model_validate({**config.model_dump(), "scheduler": {**config.scheduler.model_dump(),
                                                                                   **policy}})  # fmt: skip
        store = RunStore(tmp / "watcher.db")
        run = store.create_run(1)
        executors = {n.name: executor_for(n, config.timeouts) for n in config.nodes}
        rig.fault_worker(0, "oom")  # the first chunk on GPU 0

        def hang_later() -> None:  # once GPU 0 has finished two chunks after its OOM kill
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with RunStore(tmp / "watcher.db", readonly=True) as view:
                    done = [r for r in view.chunk_rows(run, 1) if r["status"] == "done" and r["gpu"] == 0]
                if not rig.worker_fault_pending(0) and len(done) >= 2:
                    rig.fault_worker(0, "gpu-hang")
                    return
                time.sleep(0.02)

        watcher = threading.Thread(target=hang_later, daemon=True)
        watcher.start()
        payloads = [{"value": i, "sleep": 0.3, "fake_rss": 100 << 20} for i in range(24)]
        capped: list[float] = []  # when the scheduler lowered the cap (the failure's own time is the death's)
        sink = logger.add(lambda m: capped.append(m.record["time"].timestamp()), level="WARNING",
                          filter=lambda r: "the OOM killer took a worker" in r["message"])  # fmt: skip
        with captured_log("INFO") as messages:
            report = run_chunks(
                config, [ChunkSpec.of(p) for p in payloads], sink=store.chunk_sink(run, 1), executors=executors,
                worker_argv=WORKER_ARGV, ledger=store, probe=failure_probe(store, config.health),
                cleanup=batch_cleanup(store, config.scheduler.cleanup_script), progress=False,
            )  # fmt: skip
        logger.remove(sink)
        watcher.join(5)
        for ex in executors.values():
            ex.close()
        yield rig, store, run, report, messages, capped
        store.close()
    finally:
        factory.stop_all(remove=True)


def test_oom_kill_is_named_counted_once_and_lowers_the_nodes_workers(oom_then_hang) -> None:
    rig, store, run, report, messages, _ = oom_then_hang
    assert not rig.worker_fault_pending(0), "the GPU hang never fired"
    want = {i: [s for s in range(i * 10, i * 10 + 10) if (s * 2654435761) % 7 == 0] for i in range(24)}
    assert {r["value"]: r["survivors"] for r in report.results.values()} == want
    oom, hang = store.chunk_failures(run)
    assert (oom["gpu"], hang["gpu"]) == (0, 0)
    assert oom["error"].startswith("OOM-killed: kernel (oom): [") and "Out of memory: Killed process " in oom["error"]
    assert oom["stderr_tail"].strip() in {"", "Killed"}
    # the second failure on the same node is not blamed on the same OOM line: the ledger counted it once
    assert not hang["error"].startswith("OOM-killed") and "reason :GPU Hang" in hang["stderr_tail"]
    assert hang["gpu_state"]["status"] == "faulted"
    gpu_lines = [e for e in hang["gpu_state"]["evidence"] if e.startswith("kernel: [")]  # mapped to GPU 0
    assert len(gpu_lines) == 2 and "HW Exception by GPU node-1 " in gpu_lines[0] and rig.pci(0) in gpu_lines[1]
    assert [(e.node, e.gpu) for e in store.entries()] == [(rig.name, 0)]
    lines = [row["line"] for row in store.kernel_lines(rig.name)]
    assert sum("Out of memory: Killed process" in ln for ln in lines) == 1 and len(lines) == 3, lines
    # the scheduler says so, once
    said = [m for m in messages if "the OOM killer took a worker" in m]
    assert said == [f"{rig.name}: the OOM killer took a worker; at most 2 slot worker(s) there from now on"]
    # the batch cleanup bound to the store recorded its result
    assert store.cleanup_results(rig.name)


def test_after_an_oom_kill_the_node_runs_one_worker_fewer(oom_then_hang) -> None:
    """The cap the OOM kill lowered holds: no more than 2 chunks at once on the node from then on, and the
    slot over the cap stops (its log line)."""
    rig, store, run, _, messages, capped = oom_then_hang
    after = [(r["started"], r["finished"]) for r in store.chunk_rows(run, 1) if r["started"] > capped[0]]
    most = max(sum(1 for s, f in after if s <= t < f) for t, _ in after)
    assert most <= 2, f"{most} chunks ran at once on {rig.name} after the OOM kill capped it at 2"
    assert any(m.startswith(f"slot {rig.name}:2 stops: an OOM kill there allows 2") for m in messages), messages
