"""Pure rules behind issue 15: kernel signatures and the since-last-check cursor, impossible readings,
index/PCI identity, and the run store's v2 -> v3 migration."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from cluster.config import NodeConfig
from cluster.gpu.health import HealthStatus, impossible_readings
from cluster.gpu.kernel_log import (
    KernelCursor,
    map_kfd_nodes,
    new_lines,
    node_lines,
    oom_line,
    parse_kernel_lines,
    recent_lines,
)
from cluster.gpu.rocm_smi import parse_rocm_json
from cluster.gpu.sysfs import parse_kfd_nodes, sysfs_health
from pipeline.store import RunStore
from preflight.evaluate import evaluate_identity

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def test_other_kernel_signatures_are_read_and_mapped() -> None:
    faults = parse_kernel_lines((FIX / "kernel-other-lines.txt").read_text())
    assert [(f.kind, f.pci_bus) for f in faults] == [
        ("oom", None),
        ("soft_lockup", None),
        ("gpu_hang", None),
        ("gpu_hang", "0000:22:00.0"),
    ]
    assert faults[0].timestamp == 7001.120301
    assert oom_line([f"kernel (oom): {faults[0].line}"]).endswith("oom_score_adj:0")
    # "HW Exception by GPU node-11": KFD topology node 11, mapped to its GPU once the probe knows its address
    assert [f.kfd_node for f in faults] == [None, None, 11, None]
    mapped = map_kfd_nodes(faults, {11: "0000:22:00.0", 3: "0000:03:00.0"})
    assert [f.pci_bus for f in mapped] == [None, None, "0000:22:00.0", "0000:22:00.0"]
    assert [f.kind for f in node_lines(mapped)] == ["oom", "soft_lockup"]


def test_kfd_topology_and_recent_kernel_lines_are_read() -> None:
    out = "\n".join([
        '{"bus": "0000:03:00.0", "vendor": "0x1002", "card": "card0"}',
        '{"kfd_node": 1, "bus": "0000:03:00.0"}',
        '{"kfd_node": 2, "bus": "22:00.0"}',
        '{"kfd_node": "x", "bus": "0000:05:00.0"}',
        '{"done": true, "cards": 1}',
    ])  # fmt: skip
    assert parse_kfd_nodes(out) == {1: "0000:03:00.0", 2: "0000:22:00.0"}
    text = "[ 1.0] a\n[ 50.5] b\nno stamp\n[ 99.0] c"
    assert recent_lines(text, 50.5) == "[ 50.5] b\n[ 99.0] c"
    assert recent_lines("no\nstamps", 50.0) == "no\nstamps"  # printk.time=0: cannot be cut by time


def test_only_lines_after_the_cursor_count_and_a_reboot_resets_it() -> None:
    text = "[ 1.0] a\n[ 5.5] b\n[ 9.25] c"
    fresh, cursor = new_lines(text, "boot-1", None)
    assert fresh == text and cursor == KernelCursor("boot-1", 9.25)
    fresh, cursor = new_lines(text + "\n[ 12.0] d", "boot-1", cursor)
    assert fresh == "[ 12.0] d" and cursor == KernelCursor("boot-1", 12.0)
    fresh, cursor = new_lines("[ 2.0] after reboot", "boot-2", cursor)
    assert fresh == "[ 2.0] after reboot" and cursor == KernelCursor("boot-2", 2.0)


def test_non_finite_and_impossible_readings_are_fault_evidence() -> None:
    assert impossible_readings({"temp_edge": float("nan"), "use_pct": -5.0, "power_w": 98.0}) == [
        "non-finite reading temp_edge = nan",
        "physically impossible reading use_pct = -5",
    ]
    card = {"Temperature (Sensor edge) (C)": "-300.0", "GPU use (%)": "12", "PCI Bus": "0000:03:00.0"}
    (gpu,) = parse_rocm_json("n", json.dumps({"card0": card}), "", 1)
    assert gpu.status is HealthStatus.FAULTED and "physically impossible reading temp_edge = -300" in gpu.evidence
    hung = sysfs_health("n", 3, {"bus": "0000:0c:00.0", "hung": True, "seconds": 2.0})
    assert hung.status is HealthStatus.FAULTED and hung.evidence[0].startswith("SMU hang suspected")


def test_identity_mismatch_names_both() -> None:
    node = NodeConfig(name="rig-6600b", gpu_kind="rocm", gpu_count=8,
                      excluded_gpus=[{"index": 4, "reason": "SMU", "pci": "0F:00.0"}])  # fmt: skip
    assert evaluate_identity(node, {4: "0000:0f:00.0"}, {}) == []
    (bad,) = evaluate_identity(node, {4: "0000:12:00.0", 3: "0000:0f:00.0"}, {})
    assert (
        bad.status == "fail"
        and "GPU 4 at 0000:0f:00.0, but GPU 4 is at 0000:12:00.0 (0000:0f:00.0 is GPU 3 now)" in bad.message
    )


def test_a_version_2_store_gains_the_v3_tables(tmp_path: Path) -> None:
    path = tmp_path / "watcher.db"
    RunStore(path).close()
    conn = sqlite3.connect(path)
    for table in ("kernel_cursor", "kernel_lines", "cleanup_results"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("DELETE FROM schema_version")
    conn.execute("INSERT INTO schema_version VALUES (2, 'watcher 0.2', 0)")
    conn.commit()
    conn.close()
    with RunStore(path) as store:
        store.save_kernel_cursor("rig", KernelCursor("b", 3.5), ["[ 3.5] x"])
        assert store.kernel_cursor("rig") == KernelCursor("b", 3.5)
        assert [v for (v,) in store.conn.execute("SELECT version FROM schema_version ORDER BY version")] == [2, 3]
