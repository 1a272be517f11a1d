"""Scheduler efficiency: N chunks of equal fixed work over S slots, makespan against the ideal (not a test).

    python bench/scheduler.py [--json] [--quick] [--chunks 1000] [--work 0.05] [--mode auto|rigs|local]

Each chunk is one real worker process started through the real executor, with results written to a real
run store; the worker sleeps `--work` seconds: `--worker python` is tests/cluster/sched_worker.py under
`python -S` (~35 ms of CPU to start), `--worker sh` a shell one-liner (~2 ms), `both` (default) runs each.
  makespan_over_ideal   makespan / (chunks * work / slots): the number the design targets (<= 1.10)
  dispatch_overhead_ms  per chunk, slot time not spent in the fixed work: process start, transport,
                        store writes and queueing (makespan * slots - chunks * work) / chunks
  scheduler_gap_ms      per chunk, slot time outside any worker command: the scheduler's own share
  coordinator_cpu_ms    per chunk, CPU the coordinator process spent (threads, store, spawning)
mode rigs uses the fake-rig harness (2 sshd rigs x 12 GPUs) when tests/integration/fakerig.py exists;
mode local runs 2 local "nodes" x 12 slots through LocalExecutor.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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

from cluster.scheduler import run_chunks  # noqa: E402
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


def measure(n_chunks: int, work: float, per_node: int, mode: str, worker: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-sched-") as tmpdir, ExitStack() as stack:
        tmp = Path(tmpdir)
        cluster = rig_cluster(stack, tmp, per_node) if mode in ("auto", "rigs") else None
        if cluster is None:
            if mode == "rigs":
                raise SystemExit("fake-rig harness not available (tests/integration/fakerig.py)")
            cluster = local_cluster(tmp, per_node)
        config, executors, where = cluster
        python, argv = worker_for(worker, work)
        if python is not None:
            data = config.model_dump()
            data["nodes"] = [{**n, "python": python} for n in data["nodes"]]
            config = type(config).model_validate(data)
            executors = {
                name: type(ex)(config.node(name)) if ex.node.transport == "local" else ex
                for name, ex in executors.items()
            }
        store = stack.enter_context(RunStore(tmp / "bench.db"))
        run = store.create_run(1)
        chunks = [ChunkSpec.of({"value": i, "sleep": work}) for i in range(n_chunks)]
        self_before = resource.getrusage(resource.RUSAGE_SELF)
        report = run_chunks(
            config, chunks, sink=store.chunk_sink(run, 1), executors=executors, worker_argv=argv,
            probe=None, cleanup=None, progress=False, label="bench",
        )  # fmt: skip
        self_after = resource.getrusage(resource.RUSAGE_SELF)
        assert len(report.results) == n_chunks and not report.failures
        coordinator_cpu = (self_after.ru_utime - self_before.ru_utime) + (self_after.ru_stime - self_before.ru_stime)
        slots = len(report.slots_used)
        makespan = report.seconds
        ideal = n_chunks * work / slots
        in_commands = sum(row["duration"] or 0.0 for row in store.chunk_rows(run, 1))
        return {
            "bench": "scheduler",
            "where": where,
            "worker": worker,
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
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    n_chunks = 240 if args.quick else args.chunks
    for worker in ("sh", "python") if args.worker == "both" else (args.worker,):
        started = time.monotonic()
        row = measure(n_chunks, args.work, args.per_node, args.mode, worker)
        row["bench_wall_s"] = round(time.monotonic() - started, 1)
        show(row, args.json)
    return 0


def show(row: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(row), flush=True)
    else:
        print(f"{row['chunks']} chunks x {row['work_s']} s, {row['worker']} worker, over {row['slots']} slots")
        print(f"  ({row['where']}, {row['cpus']} CPUs)")
        print(f"  makespan_over_ideal   {row['makespan_over_ideal']}  ({row['makespan_s']} s vs {row['ideal_s']} s)")
        print(f"  dispatch_overhead_ms  {row['dispatch_overhead_ms']:.2f}  per chunk (worker start, transport, store)")
        print(f"  scheduler_gap_ms      {row['scheduler_gap_ms']:.2f}  per chunk outside worker commands")
        print(f"  coordinator_cpu_ms    {row['coordinator_cpu_ms']:.2f}  per chunk of coordinator CPU (all threads)")


if __name__ == "__main__":
    sys.exit(main())
