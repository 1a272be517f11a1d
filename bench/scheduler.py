"""Scheduler efficiency: N chunks of equal fixed work over S slots, makespan against the ideal (not a test).

    python bench/scheduler.py [--json] [--quick] [--chunks 1000] [--work 0.05] [--mode auto|rigs|local]
                              [--slot-mode both|workers|per_chunk|ray|MODE,MODE] [--calls 1] [--no-pool] [--stale]

Each chunk is one real worker process started through the real executor, with results written to a real
run store; the worker sleeps `--work` seconds: `--worker python` is tests/cluster/sched_worker.py under
`python -S` (~35 ms of CPU to start), `--worker sh` a shell one-liner (~2 ms), `both` (default) runs each.
  makespan_over_ideal   makespan / (chunks * work / slots): the number the design targets (<= 1.10)
  dispatch_overhead_ms  per chunk, slot time not spent in the fixed work: process start, transport,
                        store writes and queueing (makespan * slots - chunks * work) / chunks
  scheduler_gap_ms      per chunk, slot time outside any worker command: the scheduler's own share
  coordinator_cpu_ms    per chunk, CPU the coordinator process spent (threads, store, spawning)
  median_dispatch_ms    median over chunks of (attempt duration - work): one chunk's own dispatch cost
  worker_processes      distinct processes that answered (workers mode: how many worker starts were paid)
  ray_cpu_ms            (ray) per chunk, CPU of the local Ray cluster's processes (GCS, raylets, actors): on
                        rigs the raylets and actors are the nodes', the GCS the head's (often the coordinator)
slot_mode: "workers" (long-lived slot workers, the default; python worker only: the sh one-liner does not
speak the serve protocol), "per_chunk" (a process per chunk) and "ray" (slot workers kept by Ray actors: a
local Ray cluster is started for the row, one raylet per node, labelled with its name; tests/cluster/
raycluster.py), side by side with --slot-mode both (workers and per_chunk) or a list (workers,ray).
--calls N: the chunks in N equal run_chunks calls, one after the other, as a step runs its Optuna batches;
the makespan is the wall time of all of them. In workers mode the calls share one WorkerPool (workers started
once), unless --no-pool (every call starts and stops its own workers, as before the pool).
--stale: time from SIGSTOPping one slot worker to the stale failure (heartbeat_timeout_s 2 s).
mode rigs uses the fake-rig harness (2 sshd rigs x 12 GPUs) when tests/integration/fakerig.py exists;
mode local runs 2 local "nodes" x 12 slots through LocalExecutor.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "cluster"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from loguru import logger  # noqa: E402

from cluster.scheduler import WorkerPool, run_chunks  # noqa: E402
from cluster.scheduler.types import ChunkSpec  # noqa: E402
from pipeline.store import RunStore  # noqa: E402

WORKER = ROOT / "tests" / "cluster" / "sched_worker.py"


def local_cluster(tmp: Path, per_node: int) -> tuple[Any, dict[str, Any], str]:
    from sched_helpers import local_config, local_executors

    config = local_config(tmp, {"rig-a": per_node, "rig-b": per_node}, run_cleanup=False)
    return config, local_executors(config), f"local: 2 nodes x {per_node} slots (LocalExecutor)"


def rig_cluster(stack: ExitStack, tmp: Path, per_node: int) -> tuple[Any, dict[str, Any], str] | None:
    try:
        import fakerig  # type: ignore[import-not-found]
    except ImportError:
        return None
    if fakerig.available() is not None:
        return None
    from cluster.transport import executor_for

    factory = fakerig.RigFactory(tmp / "rigs")
    stack.callback(factory.stop_all)
    rigs = factory.make(2, gpus=per_node)
    config = fakerig.cluster_config(rigs, scheduler={"run_cleanup": False})
    executors = {n.name: executor_for(n, config.timeouts) for n in config.nodes}
    for executor in executors.values():
        stack.callback(executor.close)
    return config, executors, f"fake rigs: 2 sshd rigs x {per_node} GPUs over SSH"


def worker_for(kind: str, work: float) -> tuple[str | None, tuple[str, ...]]:
    """(python override, argv): the Python test worker, or a shell one-liner that costs ~1 ms to start, so
    the scheduler's and transport's own overhead can be told apart from Python's start-up time."""
    if kind == "python":
        return None, ("-S", str(WORKER))
    answer = '{"ok": true, "seeds_tested": 1}'
    return "/bin/sh", ("-c", f"cat >/dev/null; sleep {work}; echo '{answer}'")


def _cpu_nodes(config: Any) -> Any:
    """The bench's nodes are CPU slots: no stagger between worker starts (the issue's setting)."""
    data = config.model_dump()
    data["scheduler"] = {**data["scheduler"], "worker_start_stagger_s": 0}
    return type(config).model_validate(data)


def measure(
    n_chunks: int,
    work: float,
    per_node: int,
    mode: str,
    worker: str,
    slot_mode: str = "per_chunk",
    calls: int = 1,
    use_pool: bool = True,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-sched-") as tmpdir, ExitStack() as stack:
        tmp = Path(tmpdir)
        cluster = rig_cluster(stack, tmp, per_node) if mode in ("auto", "rigs") else None
        if cluster is None:
            if mode == "rigs":
                raise SystemExit("fake-rig harness not available (tests/integration/fakerig.py)")
            cluster = local_cluster(tmp, per_node)
        config, executors, where = cluster
        config = _cpu_nodes(config)
        python, argv = worker_for(worker, work)
        if python is not None:
            data = config.model_dump()
            data["nodes"] = [{**n, "python": python} for n in data["nodes"]]
            config = type(config).model_validate(data)
            executors = {
                name: type(ex)(config.node(name)) if ex.node.transport == "local" else ex
                for name, ex in executors.items()
            }
        ray_base = tmp / "r" if slot_mode == "ray" else None
        if ray_base is not None:
            config = _on_ray(stack, config, ray_base)
            where += "; chunks through a local Ray cluster, one raylet per node"
        store = stack.enter_context(RunStore(tmp / "bench.db"))
        run = store.create_run(1)
        chunks = [ChunkSpec.of({"value": i, "sleep": work}) for i in range(n_chunks)]
        rounds = [chunks[i * n_chunks // calls : (i + 1) * n_chunks // calls] for i in range(calls)]
        pool = stack.enter_context(WorkerPool()) if use_pool and slot_mode != "per_chunk" and calls > 1 else None
        ray_before = _ray_cpu(ray_base)
        self_before = resource.getrusage(resource.RUSAGE_SELF)
        results: dict[str, dict[str, Any]] = {}
        makespan = 0.0
        for part in rounds:
            report = run_chunks(
                config, part, sink=store.chunk_sink(run, 1), executors=executors, worker_argv=argv,
                probe=None, cleanup=None, progress=False, label="bench", slot_mode=slot_mode, pool=pool,
            )  # fmt: skip
            assert len(report.results) == len(part) and not report.failures
            results.update(report.results)
            makespan += report.seconds
        self_after = resource.getrusage(resource.RUSAGE_SELF)
        coordinator_cpu = (self_after.ru_utime - self_before.ru_utime) + (self_after.ru_stime - self_before.ru_stime)
        ray_cpu = _ray_cpu(ray_base) - ray_before
        slots = len(report.slots_used)
        ideal = n_chunks * work / slots
        durations = [row["duration"] or 0.0 for row in store.chunk_rows(run, 1)]
        in_commands = sum(durations)
        return {
            "bench": "scheduler",
            "where": where,
            "worker": worker,
            "slot_mode": slot_mode,
            "calls": calls,
            "pool": pool is not None,
            "chunks": n_chunks,
            "slots": slots,
            "work_s": work,
            "cpus": os.cpu_count(),
            "makespan_s": round(makespan, 3),
            "ideal_s": round(ideal, 3),
            "makespan_over_ideal": round(makespan / ideal, 3) if ideal else None,
            "dispatch_overhead_ms": round((makespan * slots - n_chunks * work) / n_chunks * 1000, 2),
            "command_ms": round(in_commands / n_chunks * 1000, 2),
            "scheduler_gap_ms": round((makespan * slots - in_commands) / n_chunks * 1000, 2),
            "coordinator_cpu_ms": round(coordinator_cpu / n_chunks * 1000, 2),
            "median_dispatch_ms": round((statistics.median(durations) - work) * 1000, 2),
            "worker_processes": len({r.get("pid") for r in results.values()}) if worker == "python" else None,
            "ray_cpu_ms": round(ray_cpu / n_chunks * 1000, 2) if ray_base is not None else None,
        }


def _on_ray(stack: ExitStack, config: Any, base: Path) -> Any:
    """The config with slot_mode ray, over a local Ray cluster of the config's nodes (stopped with the stack)."""
    from raycluster import LocalRay

    cluster = LocalRay(base, [n.name for n in config.nodes])
    stack.callback(cluster.stop)
    cluster.start()
    data = config.model_dump()
    data["scheduler"] = {**data["scheduler"], "slot_mode": "ray"}
    data["ray"] = {"address": cluster.address}
    return type(config).model_validate(data)


def _ray_cpu(base: Path | None) -> float:
    """CPU seconds used so far by the local Ray cluster's live processes (0 without one)."""
    if base is None:
        return 0.0
    from raycluster import ray_processes

    ticks = 0
    for pid, _ in ray_processes(base):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def measure_stale(per_node: int, mode: str, timeout_s: float = 2.0) -> dict[str, Any]:
    """SIGSTOP one slot worker mid-chunk; how long until the scheduler records the stale failure."""
    import signal
    import threading

    with tempfile.TemporaryDirectory(prefix="bench-stale-") as tmpdir, ExitStack() as stack:
        tmp = Path(tmpdir)
        cluster = rig_cluster(stack, tmp, per_node) if mode in ("auto", "rigs") else None
        config, executors, where = cluster or local_cluster(tmp, per_node)
        data = _cpu_nodes(config).model_dump()
        data["scheduler"] = {**data["scheduler"], "heartbeat_timeout_s": timeout_s, "breaker_min_failures": 50}
        config = type(config).model_validate(data)
        store = stack.enter_context(RunStore(tmp / "bench.db"))
        run = store.create_run(1)
        stopped: dict[str, float] = {}

        def stop_one() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not stopped:
                for entry in Path("/proc").iterdir():
                    try:
                        env = (entry / "environ").read_bytes().split(b"\0") if entry.name.isdigit() else []
                        cmd = (entry / "cmdline").read_bytes() if env else b""
                    except OSError:
                        continue
                    # only our own rigs' worker (never another process of this machine), not its `timeout`
                    ours = f"RIG_DIR={tmp}".encode()
                    if b"--serve" in cmd and not cmd.startswith(b"timeout") and any(e.startswith(ours) for e in env):
                        time.sleep(0.5)  # mid-chunk
                        os.kill(int(entry.name), signal.SIGSTOP)
                        stopped["at"] = time.time()
                        return
                time.sleep(0.05)

        threading.Thread(target=stop_one, daemon=True).start()
        chunks = [ChunkSpec.of({"value": i, "sleep": 0.3}) for i in range(12 * per_node * 2)]
        report = run_chunks(
            config, chunks, sink=store.chunk_sink(run, 1), executors=executors, worker_argv=worker_for("python", 0)[1],
            probe=None, cleanup=None, progress=False, label="bench-stale",
        )  # fmt: skip
        stale = [f for f in report.failures if f.kind == "stale"]
        noticed = stale[0].time - stopped["at"] if stale and stopped else None
        return {
            "bench": "scheduler-stale",
            "where": where,
            "heartbeat_timeout_s": timeout_s,
            "noticed_after_s": round(noticed, 3) if noticed is not None else None,
            "over_timeout_s": round(noticed - timeout_s, 3) if noticed is not None else None,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line per measurement")
    parser.add_argument("--quick", action="store_true", help="240 chunks (under a minute)")
    parser.add_argument("--chunks", type=int, default=1000)
    parser.add_argument("--work", type=float, default=0.05, help="seconds of fixed work per chunk")
    parser.add_argument("--per-node", type=int, default=12, help="slots per node (2 nodes)")
    parser.add_argument("--mode", choices=("auto", "rigs", "local"), default="auto")
    parser.add_argument("--worker", choices=("python", "sh", "both"), default="both")
    parser.add_argument("--slot-mode", default="both", help="workers, per_chunk, ray, both (workers,per_chunk), "
                        "or a comma list")  # fmt: skip
    parser.add_argument("--calls", type=int, default=1, help="run the chunks as this many run_chunks calls")
    parser.add_argument("--no-pool", action="store_true", help="with --calls: no WorkerPool between the calls")
    parser.add_argument("--stale", action="store_true", help="also measure the time to notice a stopped worker")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    n_chunks = 240 if args.quick else args.chunks
    modes = ("workers", "per_chunk") if args.slot_mode == "both" else tuple(args.slot_mode.split(","))
    if not set(modes) <= {"workers", "per_chunk", "ray"}:
        parser.error(f"--slot-mode {args.slot_mode}: use workers, per_chunk, ray, both or a comma list of them")
    for worker in ("sh", "python") if args.worker == "both" else (args.worker,):
        for slot_mode in modes:
            if worker == "sh" and slot_mode != "per_chunk":
                continue  # a shell one-liner cannot serve chunk after chunk
            started = time.monotonic()
            pool = not args.no_pool
            row = measure(n_chunks, args.work, args.per_node, args.mode, worker, slot_mode, args.calls, pool)
            row["bench_wall_s"] = round(time.monotonic() - started, 1)
            show(row, args.json)
    if args.stale:
        row = measure_stale(args.per_node, args.mode)
        print(json.dumps(row) if args.json else row, flush=True)
    return 0


def show(row: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(row), flush=True)
    else:
        calls = f", {row['calls']} calls{' in one pool' if row['pool'] else ''}" if row["calls"] > 1 else ""
        print(
            f"{row['chunks']} chunks x {row['work_s']} s, {row['worker']} worker ({row['slot_mode']}{calls}), "
            f"over {row['slots']} slots"
        )
        print(f"  ({row['where']}, {row['cpus']} CPUs)")
        print(f"  makespan_over_ideal   {row['makespan_over_ideal']}  ({row['makespan_s']} s vs {row['ideal_s']} s)")
        print(f"  dispatch_overhead_ms  {row['dispatch_overhead_ms']:.2f}  per chunk (worker start, transport, store)")
        print(f"  scheduler_gap_ms      {row['scheduler_gap_ms']:.2f}  per chunk outside worker commands")
        print(f"  coordinator_cpu_ms    {row['coordinator_cpu_ms']:.2f}  per chunk of coordinator CPU (all threads)")
        print(f"  median_dispatch_ms    {row['median_dispatch_ms']:.2f}  per chunk, its own attempt minus the work")
        if row["worker_processes"] is not None:
            print(f"  worker_processes      {row['worker_processes']}  distinct processes that answered")
        if row["ray_cpu_ms"] is not None:
            print(f"  ray_cpu_ms            {row['ray_cpu_ms']:.2f}  per chunk of the local Ray processes' CPU")


if __name__ == "__main__":
    sys.exit(main())
