"""GPU faults as they happen on the rigs (issue 15), through preflight on fake rigs (real sshd, real
sqlite): hung sysfs reads with a reader that ignores SIGTERM, a hung rocm-smi, a GPU vanishing, SMU kernel
lines counted once and a release that sticks, dmesg refused, an index/PCI mismatch, excluded and watched
GPUs, and the batch cleanup's findings stored."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import fakerig
import pytest
from loguru import logger

from cluster.gpu import cleanup as gpu_cleanup
from cluster.gpu.cleanup import cleanup_node
from cluster.transport import executor_for
from pipeline.store import RunStore
from preflight import run_preflight

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


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
    assert any("card2 missing from rocm-smi JSON" in ln for ln in lines(report, "gpu", "warn"))


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
    gpu_cleanup.use_result_store(store)
    seen: list[str] = []
    sink = logger.add(lambda m: seen.append(m.record["level"].name + " " + m.record["message"]), level="DEBUG")
    try:
        assert cleanup_node(ex, script=script) == []
        rig.set_gpu(2, "missing")
        rig.set_vram_used(1, 3 << 30)
        found = cleanup_node(ex, script=script)
        assert [(g.index, g.status.value) for g in found] == [(2, "faulted")]
        with pytest.raises(RuntimeError, match=f"cleanup on node {rig.name}"):
            cleanup_node(ex, script="/nonexistent/cleanup_gpus.sh")
    finally:
        logger.remove(sink)
        gpu_cleanup.use_result_store(None)
        ex.close()
    results = store.cleanup_results(rig.name)
    assert [r["exit_code"] for r in results] == [0, 3, 127]
    assert any(
        f.startswith("MISSING gpu=2 reason=GPU 2 not reported by rocm-smi (expected 3") for f in results[1]["findings"]
    )
    assert "ORPHANED_VRAM gpu=1 used=3072 MiB with no compute process on it" in results[1]["findings"]
    assert any(s.startswith("WARNING GPU cleanup on rig01: ORPHANED_VRAM gpu=1") for s in seen)
    assert any(s.startswith(f"ERROR GPU cleanup on {rig.name}: cleanup script failed with exit 127") for s in seen)
