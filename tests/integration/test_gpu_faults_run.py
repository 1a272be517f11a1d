"""`watcher run` on fake rigs through GPU faults as they happen (issue 15), in one run that several checks
share (a watcher run costs ~15 s of the suite's budget):
- in the middle of step 1 a GPU of rig a starts reading 0xFFFFFFFF (sysfs all ones, rocm-smi, an SMU kernel
  line) and the worker on it dies: the GPU is named and quarantined, its chunk redone on another slot;
- in step 2 the kernel's OOM killer takes the worker of a chunk on rig b (SIGKILL, nothing on stderr,
  "Out of memory: Killed process PID (python)" in b's kernel log) as a soft lockup line appears there: the
  stored chunk failure says OOM-killed with the line, the scheduler says b runs one slot worker fewer, and
  the lines are recorded for b;
- in step 2 a GPU of rig a hangs ("HW Exception by GPU node-N ... GPU Hang" and a ring-test failure naming
  its PCI address in a's kernel log, ROCr's message on the worker's stderr, abort): both lines mapped to the
  GPU (KFD node N and the PCI address, from the node's sysfs), which is named and quarantined, its chunk
  redone, and the failure not taken for an OOM kill;
and the run still ends with the survivors of a fault-free run."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_run_dead_rig import reference_survivors, setup, survivors, watcher_run

from cluster.errors import StoreError
from pipeline.store import RunStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOCKUP = "watchdog: BUG: soft lockup - CPU#2 stuck for 26s! [python:48301]"


def wait_for(what: str, proc: Any, find: Callable[[], Any], timeout: float = 240) -> Any:
    """Poll `find` until it returns something (the run still going), or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            found = find()
        except StoreError:
            found = None  # the store is not created yet, or being created by the run right now
        if found:
            return found
        time.sleep(0.05)
    out = proc.stdout.read() if proc.poll() is not None and proc.stdout else ""
    pytest.fail(f"watcher run ended or timed out before {what}\n{out[-3000:]}")


def running_on(db: Path, step: float, rig: str, gpus: set[int] | None = None) -> dict[str, Any] | None:
    """A chunk of `step` running now on one of `rig`'s GPUs (any, or one of `gpus`)."""
    with RunStore(db, readonly=True) as store:
        rows = store.chunk_rows(1, step)
    for row in rows:
        if row["status"] == "running" and row["node"] == rig and (gpus is None or row["gpu"] in gpus):
            return row
    return None


def test_gpu_faults_mid_run_are_named_quarantined_and_the_survivors_hold(rigs, tmp_path) -> None:
    a, b = (rig.worker_faults() for rig in rigs(2, gpus=2))
    db = tmp_path / "state" / "watcher.db"
    proc = watcher_run(tmp_path, setup(tmp_path, [a, b], 1))
    try:
        on_a = wait_for("step 1 ran a chunk on rig a", proc, lambda: running_on(db, 1, a.name))
        a.set_gpu(on_a["gpu"], "ffff")  # mid-chunk: the worker on it dies, the sysfs reads all ones
        on_b = wait_for("step 2 ran a chunk on rig b", proc, lambda: running_on(db, 2, b.name))
        b.fault_worker(on_b["gpu"], "oom")
        (lockup,) = b.kernel_event(LOCKUP)
        hung = 1 - on_a["gpu"]  # a's other GPU
        wait_for("step 2 ran a chunk on a's other GPU", proc, lambda: running_on(db, 2, a.name, {hung}))
        a.fault_worker(hung, "gpu-hang")
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert not b.worker_fault_pending(on_b["gpu"]) and not a.worker_fault_pending(hung), "a fault never fired"
    with RunStore(db, readonly=True) as store:
        failures = store.chunk_failures(1)
        quarantine = {(e.node, e.gpu): e for e in store.entries()}
        kernel = {rig.name: [row["line"] for row in store.kernel_lines(rig.name)] for rig in (a, b)}
        rows = {step: {r["chunk_id"]: r for r in store.chunk_rows(1, step)} for step in (1, 2)}
        cleanups = {rig.name: store.cleanup_results(rig.name) for rig in (a, b)}

    # (a) the GPU reading 0xFFFFFFFF: named, quarantined with the sysfs evidence, its chunk redone elsewhere
    dead = (a.name, on_a["gpu"])
    (on_dead,) = [f for f in failures if (f["node"], f["gpu"]) == dead]
    assert on_dead["step"] == 1 and on_dead["gpu_state"]["status"] == "faulted"
    assert any("all-ones sysfs" in e for e in on_dead["gpu_state"]["evidence"]), on_dead["gpu_state"]
    assert "Memory access fault by GPU node-" in on_dead["stderr_tail"]
    assert dead in quarantine and quarantine[dead].source == "scheduler"
    assert f"GPU {a.name}:{on_a['gpu']} quarantined" in out
    redone = rows[1][on_dead["chunk_id"]]
    assert redone["status"] == "done" and (redone["node"], redone["gpu"]) != dead

    # (b) the OOM kill: the stored failure says so with the kernel's line; b runs one worker fewer
    (oom,) = [f for f in failures if (f["node"], f["gpu"]) == (b.name, on_b["gpu"])]
    assert oom["step"] == 2 and oom["error"].startswith("OOM-killed: kernel (oom): ["), oom["error"]
    assert "] Out of memory: Killed process " in oom["error"] and " (python) total-vm:" in oom["error"]
    assert oom["stderr_tail"].strip() in {"", "Killed"}, oom["stderr_tail"]  # no word from the worker (its shell's)
    assert (b.name, on_b["gpu"]) not in quarantine  # an OOM kill is the node's trouble, not the GPU's
    assert out.count("the OOM killer took a worker") == 1, out
    assert f"{b.name}: the OOM killer took a worker; at most 1 slot worker(s) there from now on" in out
    assert rows[2][oom["chunk_id"]]["status"] == "done"
    # the soft lockup beside it: a node line, recorded for b (by the next gate's read of b's kernel log)
    assert lockup in kernel[b.name] and any("Out of memory: Killed process" in ln for ln in kernel[b.name])

    # (c) the GPU hang: recorded for a, both lines mapped to the GPU (its KFD node, its PCI address)
    exception = f"amdgpu: HW Exception by GPU node-{hung + 1} (Agent handle: 0x5603c0a1b2c0) reason :GPU Hang"
    ring = f"amdgpu {a.pci(hung)}: [drm:amdgpu_ring_test_helper [amdgpu]] *ERROR* ring gfx_0.0.0 test failed"
    assert any(exception in line for line in kernel[a.name]) and any(ring in line for line in kernel[a.name])
    (on_hung,) = [f for f in failures if (f["node"], f["gpu"]) == (a.name, hung)]
    assert on_hung["step"] == 2 and on_hung["gpu_state"]["status"] == "faulted"
    gpu_lines = [e for e in on_hung["gpu_state"]["evidence"] if e.startswith("kernel: [")]  # the GPU's own
    assert any(exception in e for e in gpu_lines) and any(ring in e for e in gpu_lines), on_hung["gpu_state"]
    assert "reason :GPU Hang" in on_hung["stderr_tail"] and not on_hung["error"].startswith("OOM-killed")
    assert (a.name, hung) in quarantine
    assert rows[2][on_hung["chunk_id"]]["status"] == "done"
    assert set(quarantine) == {dead, (a.name, hung)}

    # the run's failure probes read kernel lines from the ledger's cursor: each line stored once, never again by
    # the next reader; and every batch cleanup of the run left its result in the ledger, on both rigs
    for name, lines in kernel.items():
        assert len(lines) == len(set(lines)), f"{name}: a kernel line stored twice: {lines}"
    assert all(cleanups.values()), cleanups

    # and the run's answer is the fault-free run's
    assert survivors(tmp_path) == reference_survivors(tmp_path / "ref", b)
