"""Scale of one coordinator: SSH slot workers against the Ray runner, at 24, 240 and 2,400 slots (not a test).

    python bench/scale.py [--json] [--slots 24,240,2400] [--chunk-s 5] [--latency-ms 2] [--rounds 3]
                          [--msg-cpu-us N] [--call-cpu-us N] [--calibrate]

The real scheduler (`run_chunks`, one thread per slot) drives the real runner of each design, `WorkerRunner`
(slot_mode workers) and `RayRunner` (slot_mode ray); what is on the nodes and on the wire is modelled in-process
(bench/scale_fakes.py): every reply comes `--latency-ms` after its request, a chunk `--chunk-s` later, and the
coordinator pays, per SSH line sent or received, `--msg-cpu-us` (paramiko's share), per Ray call submitted or
result taken, `--call-cpu-us` (the Ray driver's share). Both defaults were measured here with --calibrate, which
times real round trips: a `cat` session on a fake rig (sshd on 127.0.0.1) and a trivial actor on a local Ray
cluster. Nodes have 12 GPUs each (the operators' rigs), so 2, 20 and 200 nodes. Figures:
  makespan_over_ideal   makespan / (rounds * chunk_s): what the coordinator's own delays cost the cluster
  coordinator_cpu_ms    per chunk, CPU of the coordinator's threads (the modelled nodes' thread excluded)
  cpu_share             coordinator CPU / makespan: cores the coordinator keeps busy (2 here, shared)
  threads               peak OS threads of the coordinator during the call (the model's own excluded)
A call still running at GIVE_UP_X (8) times its ideal makespan is halted and reported as not finished, with the
chunks it did. No fault is modelled, so a failed attempt means the coordinator fell behind (a `stale` one: it
could not read a live worker's heartbeats in time). The modelled nodes run in the coordinator's process: once
it saturates (cpu_share near one core: the GIL), their replies come late too and the makespan is overstated;
where saturation begins is the figure to read.
The SSH design keeps a reader thread per slot (it also wakes every 0.5 s when idle) and a transport thread per
node; the Ray design neither (Ray's driver has a fixed set of threads, counted by --calibrate).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "cluster"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from loguru import logger  # noqa: E402
from scale_fakes import Nodes, RayLink, SSHLink  # noqa: E402

from cluster.config import ClusterConfig, parse_config  # noqa: E402
from cluster.errors import HaltRequested  # noqa: E402
from cluster.scheduler import run_chunks  # noqa: E402
from cluster.scheduler.types import ChunkFailure, ChunkSpec, Slot  # noqa: E402

GPUS_PER_NODE = 12
# bench/scale.py --calibrate on the development machine (2 shared cores, 3,000 round trips each): 44 us of CPU per
# SSH line, 216 us per Ray call (submitted or taken), and 24 fixed threads of the Ray driver.
MSG_CPU_US = 44.0
CALL_CPU_US = 216.0
GIVE_UP_X = 8  # a call still running at this many times its ideal makespan is halted: the design cannot keep up


class MemorySink:
    """The run store's part, kept in memory: the store costs the same in both designs and is not measured."""

    def __init__(self) -> None:
        self.done: dict[str, dict[str, Any]] = {}
        self.failed: list[str] = []

    def chunks_planned(self, chunks: Any) -> None:
        pass

    def completed_results(self) -> dict[str, dict[str, Any]]:
        return dict(self.done)

    def attempt_started(self, chunk_id: str, attempt: int, slot: Slot) -> None:
        pass

    def chunk_done(self, chunk_id: str, slot: Slot, result: dict[str, Any], duration: float) -> bool:
        self.done.setdefault(chunk_id, result)
        return True

    def chunk_failed(self, failure: ChunkFailure) -> None:
        self.failed.append(failure.kind)  # none is modelled: a failure here is the coordinator falling behind

    def node_tripped(self, node: str, reason: str) -> None:
        pass


def cluster(slots: int) -> ClusterConfig:
    nodes = [
        {"name": f"rig{i:03d}", "transport": "ssh", "host": "127.0.0.1", "gpu_kind": "rocm", "gpu_count": GPUS_PER_NODE}
        for i in range(max(1, slots // GPUS_PER_NODE))
    ]
    return parse_config({
        "nodes": nodes, "timeouts": {"job": 600},
        "scheduler": {"worker_start_stagger_s": 0, "run_cleanup": False},
    })  # fmt: skip


def _thread_cpu(native_ids: list[int]) -> float:
    ticks = 0
    for tid in native_ids:
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(design: str, slots: int, chunk_s: float, latency_s: float, rounds: int, cost_s: float) -> dict[str, Any]:
    config = cluster(slots)
    nodes = Nodes()
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            peak[0] = max(peak[0], len(os.listdir("/proc/self/task")))

    monitor = threading.Thread(target=sample, name="monitor", daemon=True)
    monitor.start()
    model = [nodes.thread.native_id or 0, monitor.native_id or 0]
    before_threads = len(os.listdir("/proc/self/task"))  # the model's two threads included
    chunks = [ChunkSpec.of({"value": i, "design": design}) for i in range(len(config.nodes) * GPUS_PER_NODE * rounds)]
    ssh = SSHLink(nodes, config, chunk_s, latency_s, cost_s, sessions=design == "ssh")
    kw: dict[str, Any] = {"executors": ssh.executors, "slot_mode": "workers"}
    if design == "ray":
        kw.update(slot_mode="ray", ray_backend=RayLink(nodes, config, chunk_s, latency_s, cost_s))
    ideal = rounds * chunk_s
    give_up = time.monotonic() + GIVE_UP_X * ideal
    sink = MemorySink()
    cpu0, model0, started = _cpu(), _thread_cpu(model), time.monotonic()
    try:
        report = run_chunks(config, chunks, sink=sink, worker_argv=("-m", "pipeline.worker", "x"), probe=None,
                            cleanup=None, progress=False, label=f"scale-{design}",
                            halt_check=lambda: time.monotonic() > give_up, **kw)  # fmt: skip
        seconds, done, failures = report.seconds, len(report.results), [f.kind for f in report.failures]
    except HaltRequested:  # the coordinator could not keep up: what it did in GIVE_UP_X times the ideal
        seconds, done, failures = time.monotonic() - started, len(sink.done), sink.failed
    cpu = (_cpu() - cpu0) - (_thread_cpu(model) - model0)
    stop.set()
    monitor.join()
    _settle(ssh, nodes, before_threads - 2)
    return {
        "bench": "scale",
        "design": design,
        "slots": len(report.slots_used),
        "nodes": len(config.nodes),
        "chunks": len(chunks),
        "done": done,
        "chunk_s": chunk_s,
        "latency_ms": round(latency_s * 1000, 3),
        "cost_us": round(cost_s * 1e6, 1),
        "finished": done == len(chunks),
        "failed_attempts": {kind: failures.count(kind) for kind in sorted(set(failures))},
        "makespan_s": round(seconds, 2),
        "makespan_over_ideal": round(seconds / ideal, 3) if done == len(chunks) else None,
        "coordinator_cpu_ms": round(cpu / max(done, 1) * 1000, 3),
        "cpu_share": round(cpu / seconds, 3),
        "threads": peak[0] - before_threads,
        "cpus": os.cpu_count(),
    }


def _settle(ssh: SSHLink, nodes: Nodes, threads: int) -> None:
    """Let the run's threads end (sessions close a latency after their stdin), so the next row starts clean."""
    deadline = time.monotonic() + 10
    while len(os.listdir("/proc/self/task")) > threads + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    ssh.close()
    nodes.close()
    while len(os.listdir("/proc/self/task")) > threads and time.monotonic() < deadline:
        time.sleep(0.05)


def calibrate(rounds: int = 3000) -> dict[str, Any]:
    """What one SSH line and one Ray call cost the coordinator's process, measured on loopback."""
    out: dict[str, Any] = {"bench": "scale-calibrate", "round_trips": rounds}
    with tempfile.TemporaryDirectory(prefix="scale-cal-") as tmp, ExitStack() as stack:
        import fakerig

        from cluster.transport import executor_for

        if fakerig.available() is None:
            factory = fakerig.RigFactory(Path(tmp) / "rigs")
            stack.callback(factory.stop_all)
            config = fakerig.cluster_config(factory.make(1, gpus=1))
            executor = executor_for(config.nodes[0], config.timeouts)
            stack.callback(executor.close)
            session = executor.start(["cat"], timeout=600)
            cpu0 = _cpu()
            for i in range(rounds):
                session.write(f'{{"seq": {i}, "job": {{"value": {i}}}}}\n'.encode())
                while (event := session.read(10)) is not None and event[0] != "out":
                    pass
            out["ssh_msg_cpu_us"] = round((_cpu() - cpu0) / (2 * rounds) * 1e6, 1)
            session.close_stdin()
        out["ray"] = _calibrate_ray(Path(tmp) / "r", rounds)
    return out


def _calibrate_ray(base: Path, rounds: int) -> dict[str, Any]:
    from raycluster import LocalRay

    threads0 = len(os.listdir("/proc/self/task"))
    cluster_ = LocalRay(base, ["a"]).start()
    try:
        import ray

        from cluster.scheduler.ray_slots import backend as ray_backend

        ray_backend.connect(cluster_.address)
        echo = ray.remote(num_cpus=0)(_Echo).remote()
        ray.get(echo.f.remote(0))
        cpu0 = _cpu()
        for i in range(rounds):
            ray.get(echo.f.remote(i))
        per_call = (_cpu() - cpu0) / (2 * rounds)
        return {
            "call_cpu_us": round(per_call * 1e6, 1),
            "driver_threads": len(os.listdir("/proc/self/task")) - threads0,
        }
    finally:
        cluster_.stop()


class _Echo:
    def f(self, value: int) -> int:
        return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON line per row")
    parser.add_argument("--slots", default="24,240,2400")
    parser.add_argument("--chunk-s", type=float, default=5.0)
    parser.add_argument("--latency-ms", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3, help="chunks per slot")
    parser.add_argument("--msg-cpu-us", type=float, default=MSG_CPU_US, help="coordinator CPU per SSH line")
    parser.add_argument("--call-cpu-us", type=float, default=CALL_CPU_US, help="coordinator CPU per Ray call")
    parser.add_argument("--designs", default="ssh,ray")
    parser.add_argument("--calibrate", action="store_true", help="measure the two costs here, then exit")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    if args.calibrate:
        print(json.dumps(calibrate()), flush=True)
        return 0
    for slots in (int(s) for s in args.slots.split(",")):
        for design in args.designs.split(","):
            cost = (args.msg_cpu_us if design == "ssh" else args.call_cpu_us) / 1e6
            row = measure(design, slots, args.chunk_s, args.latency_ms / 1000, args.rounds, cost)
            print(json.dumps(row) if args.json else _line(row), flush=True)
    return 0


def _line(row: dict[str, Any]) -> str:
    size = f"{row['slots']:>5} slots ({row['nodes']} nodes)"
    head = f"{row['design']:>3} {size}, {row['chunks']} chunks x {row['chunk_s']} s"
    cpu = f"coordinator CPU {row['coordinator_cpu_ms']:.2f} ms/chunk ({row['cpu_share']:.2f} cores)"
    if row["finished"]:
        span = f"makespan/ideal {row['makespan_over_ideal']:.3f}"
    else:
        span = f"NOT FINISHED: {row['done']} of {row['chunks']} chunks in {GIVE_UP_X}x the ideal"
    failed = ", ".join(f"{n} {kind}" for kind, n in row["failed_attempts"].items())
    return f"{head}: {span}, {cpu}, threads {row['threads']}" + (f", FAILED ATTEMPTS: {failed}" if failed else "")


if __name__ == "__main__":
    sys.exit(main())
