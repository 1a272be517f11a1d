"""The `HealthLedger` contract: one behavioural suite run on every implementation, the in-memory ledger
(cluster/gpu/memory_ledger.py) and the SQL one of the run store (pipeline/store/ledger.py, the one that runs
in production), so the ledger's rules (quarantine on fault, probation, release, excluded GPUs left alone)
are proved on both, not on a test double. What the probes and cleanups keep there is checked too: kernel
cursors with their boot id and the lines read, cleanup results, each node's last probe. The SQL ledger must
also keep all of it across a process restart. A new implementation is proved by adding it to `LEDGERS`.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.config import NodeConfig
from cluster.gpu.health import GpuHealth, HealthStatus
from cluster.gpu.kernel_log import KernelCursor
from cluster.gpu.ledger import CleanupResult, HealthLedger, apply_checks
from cluster.gpu.memory_ledger import MemoryLedger
from pipeline.store import RunStore

REPO = Path(__file__).resolve().parents[2]

# Every HealthLedger implementation, by name: a factory given a fresh directory.
LEDGERS: dict[str, Callable[[Path], Any]] = {
    "memory": lambda _dir: MemoryLedger(),
    "sqlite": lambda folder: RunStore(folder / "watcher.db"),
}


@pytest.fixture(params=sorted(LEDGERS))
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    made = LEDGERS[request.param](tmp_path)
    yield made
    if hasattr(made, "close"):
        made.close()


def _node(**extra: Any) -> NodeConfig:
    return NodeConfig.model_validate({"name": "rig-a", "transport": "ssh", "host": "127.0.0.1", "user": "op",
                                      "gpu_kind": "rocm", "gpu_count": 3, **extra})  # fmt: skip


def _gpus(*statuses: str) -> list[GpuHealth]:
    evidence = {"faulted": ("power 4294.967295 W (all ones)",), "ok": ()}
    return [GpuHealth("rig-a", i, HealthStatus(s), evidence.get(s, ())) for i, s in enumerate(statuses)]


def test_it_keeps_the_whole_protocol(ledger: Any) -> None:
    assert isinstance(ledger, HealthLedger)


# --- quarantine, probation, release ---------------------------------------------------------------------------
def test_quarantine_is_kept_with_its_evidence_and_refreshed_not_duplicated(ledger: HealthLedger) -> None:
    assert list(ledger.entries()) == []
    ledger.quarantine("rig-b", 0, "scheduler: faulted", ["power all ones"], "scheduler")
    ledger.quarantine("rig-a", 2, "preflight: GPU faulted", ["temp N/A"], "preflight")
    first = {(e.node, e.gpu): e for e in ledger.entries()}
    assert [(e.node, e.gpu) for e in ledger.entries()] == [("rig-a", 2), ("rig-b", 0)]
    entry = first[("rig-a", 2)]
    assert (entry.reason, entry.evidence, entry.source, entry.ok_streak) == (
        "preflight: GPU faulted", ("temp N/A",), "preflight", 0,
    )  # fmt: skip
    assert abs(entry.since - time.time()) < 60
    assert ledger.record_check("rig-a", 2, "ok") == 1
    ledger.quarantine("rig-a", 2, "faulted again", ["SMU hang suspected"], "scheduler")
    (again,) = [e for e in ledger.entries() if (e.node, e.gpu) == ("rig-a", 2)]
    assert (again.reason, again.evidence, again.source) == ("faulted again", ("SMU hang suspected",), "scheduler")
    assert again.since == entry.since and again.ok_streak == 0, "a new fault restarts probation, keeps `since`"
    assert len(ledger.entries()) == 2


def test_probation_counts_consecutive_clean_checks_and_release_is_once(ledger: HealthLedger) -> None:
    assert ledger.record_check("rig-a", 0, "ok") is None, "a GPU not quarantined has no streak"
    ledger.quarantine("rig-a", 0, "faulted")
    assert [ledger.record_check("rig-a", 0, s) for s in ("ok", "ok", "faulted", "ok")] == [1, 2, 0, 1]
    assert ledger.record_check("rig-a", 0, HealthStatus.OK) == 2, "a HealthStatus counts as its value"
    (entry,) = ledger.entries()
    assert entry.last_status == "ok" and entry.last_check is not None and entry.ok_streak == 2
    assert ledger.release("rig-a", 0, "operator") is True
    assert ledger.release("rig-a", 0, "operator") is False
    assert list(ledger.entries()) == []


def test_the_rules_quarantine_a_fault_and_release_it_after_probation(ledger: HealthLedger) -> None:
    node = _node(excluded_gpus=[{"index": 2, "reason": "known bad"}])
    newly, released = apply_checks(ledger, node, _gpus("ok", "faulted", "faulted"), set(), probation_checks=2)
    assert [g.index for g in newly] == [1] and released == []
    assert [(e.gpu, e.evidence) for e in ledger.entries()] == [(1, ("power 4294.967295 W (all ones)",))]
    quarantined = {e.gpu for e in ledger.entries()}
    newly, released = apply_checks(ledger, node, _gpus("ok", "faulted", "faulted"), quarantined, probation_checks=2)
    assert newly == [] and released == [], "a GPU still faulted is not quarantined twice"
    for expected in ([], [(1, 2)]):
        quarantined = {e.gpu for e in ledger.entries()}
        newly, released = apply_checks(ledger, node, _gpus("ok", "ok", "faulted"), quarantined, probation_checks=2)
        assert newly == [] and released == expected
    assert list(ledger.entries()) == [], "released after two clean checks; the excluded GPU never entered"


def test_concurrent_writers_lose_nothing(ledger: HealthLedger) -> None:
    def one(gpu: int) -> None:
        ledger.quarantine("rig-a", gpu, "faulted")
        for _ in range(5):
            ledger.record_check("rig-a", gpu, "ok")

    threads = [threading.Thread(target=one, args=(gpu,)) for gpu in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [(e.gpu, e.ok_streak) for e in ledger.entries()] == [(gpu, 5) for gpu in range(8)]


# --- what the probes and cleanups keep --------------------------------------------------------------------------
def test_kernel_cursor_moves_with_its_boot_and_keeps_the_lines_read(ledger: HealthLedger) -> None:
    assert ledger.kernel_cursor("rig-a") is None
    ledger.save_kernel_cursor("rig-a", KernelCursor("boot-1", 120.5), ["amdgpu: SMU is not responding"])
    ledger.save_kernel_cursor("rig-b", KernelCursor("boot-9", 3.0), [])
    assert ledger.kernel_cursor("rig-a") == KernelCursor("boot-1", 120.5)
    ledger.save_kernel_cursor("rig-a", KernelCursor("boot-2", 7.25), ["Out of memory: Killed process 42", "x"])
    assert ledger.kernel_cursor("rig-a") == KernelCursor("boot-2", 7.25), "a reboot moves the cursor back"
    assert ledger.kernel_cursor("rig-b") == KernelCursor("boot-9", 3.0)
    kept = [(row["boot_id"], row["line"]) for row in ledger.kernel_lines("rig-a")]
    assert kept == [("boot-1", "amdgpu: SMU is not responding"), ("boot-2", "Out of memory: Killed process 42"),
                    ("boot-2", "x")]  # fmt: skip
    assert ledger.kernel_lines("rig-b") == [] and len(ledger.kernel_lines()) == 3


def test_cleanup_results_are_kept_whole(ledger: HealthLedger) -> None:
    failed = CleanupResult("rig-a", 1, ("FAULTED 1 power all ones",), ("SMU line",), "cleanup_gpus.sh: boom")
    ledger.record_cleanup(CleanupResult("rig-a", 0))
    ledger.record_cleanup(failed)
    ledger.record_cleanup(CleanupResult("rig-b", None, ("ssh: connection lost",)))
    fields = ("node", "exit_code", "ok", "findings", "kernel", "stderr_tail")
    rows = [tuple(row[f] for f in fields) for row in ledger.cleanup_results("rig-a")]
    assert rows == [("rig-a", 0, 1, [], [], ""),
                    ("rig-a", 1, 0, ["FAULTED 1 power all ones"], ["SMU line"], "cleanup_gpus.sh: boom")]  # fmt: skip
    assert [row["exit_code"] for row in ledger.cleanup_results("rig-b")] == [None]


def test_the_probe_cache_keeps_each_nodes_newest_reading(ledger: HealthLedger) -> None:
    assert ledger.last_probe("rig-a") is None
    ledger.save_probe("rig-a", {"key": "rig-a@h:22", "gpus": [{"index": 0, "status": "ok"}], "warnings": []})
    ledger.save_probe("rig-b", {"key": "rig-b@h:22", "gpus": [], "warnings": ["rocm-smi hung"]})
    ledger.save_probe("rig-a", {"key": "rig-a@h:22", "gpus": [{"index": 0, "status": "faulted"}], "warnings": []})
    stamped, reading = ledger.last_probe("rig-a") or (0.0, {})
    assert reading["gpus"] == [{"index": 0, "status": "faulted"}] and abs(stamped - time.time()) < 60
    assert (ledger.last_probe("rig-b") or (0, {}))[1]["warnings"] == ["rocm-smi hung"]


# --- the SQL ledger across a process restart --------------------------------------------------------------------
WRITER = """
import sys
from cluster.gpu.kernel_log import KernelCursor
from cluster.gpu.ledger import CleanupResult
from pipeline.store import RunStore
with RunStore(sys.argv[1]) as store:
    store.quarantine("rig-a", 1, "faulted", ["all ones"], "scheduler")
    store.record_check("rig-a", 1, "ok")
    store.save_kernel_cursor("rig-a", KernelCursor("boot-1", 42.0), ["SMU line"])
    store.record_cleanup(CleanupResult("rig-a", 0))
    store.save_probe("rig-a", {"key": "k", "gpus": [], "warnings": []})
"""


def test_the_sql_ledger_keeps_everything_across_a_process_restart(tmp_path: Path) -> None:
    path = tmp_path / "watcher.db"
    subprocess.run([sys.executable, "-c", WRITER, str(path)], check=True, cwd=REPO, timeout=60)
    with RunStore(path) as store:
        (entry,) = store.entries()
        assert (entry.node, entry.gpu, entry.evidence, entry.ok_streak) == ("rig-a", 1, ("all ones",), 1)
        assert store.kernel_cursor("rig-a") == KernelCursor("boot-1", 42.0)
        assert [row["line"] for row in store.kernel_lines("rig-a")] == ["SMU line"]
        assert [row["ok"] for row in store.cleanup_results("rig-a")] == [1]
        assert (store.last_probe("rig-a") or (0, {}))[1]["key"] == "k"
        assert store.record_check("rig-a", 1, "ok") == 2, "probation goes on where the last process left it"
