"""A minimal coordinator for the kill -9 / resume tests: plans N chunks, runs them, prints a JSON summary.

    python sched_coordinator.py DB WORKDIR N LOG [--sleep S] [--config distributed_config.json] [--step]

It resumes the newest unfinished run in DB if there is one, like `watcher run --resume`; --step records a
step row for the chunks first, as `watcher run` does (so `watcher status` shows their counts).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sched_helpers import WORKER_ARGV, chunks, local_config

from cluster.config import load_config
from cluster.scheduler import run_chunks
from cluster.transport.base import Executor
from cluster.transport.local import LocalExecutor
from pipeline.store import RunStore


def executors_for(config) -> dict[str, Executor]:
    out: dict[str, Executor] = {}
    for node in config.nodes:
        if node.transport == "local":
            out[node.name] = LocalExecutor(node)
        else:
            from cluster.transport import executor_for  # the SSH transport's factory

            out[node.name] = executor_for(node, config.timeouts)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("workdir")
    parser.add_argument("n", type=int)
    parser.add_argument("log")
    parser.add_argument("--sleep", type=float, default=0.1)
    parser.add_argument("--config")
    parser.add_argument("--step", action="store_true")
    args = parser.parse_args()
    config = load_config(args.config) if args.config else local_config(Path(args.workdir), {"a": 2, "b": 2})
    store = RunStore(args.db)
    previous = store.find_resumable_run()
    if previous is not None:
        run_id = previous.id
        store.resume_run(run_id)
    else:
        run_id = store.create_run(1)
        if args.step:
            store.start_step(run_id, 1, "tests:Chunks", {"chunks": args.n})
    specs = chunks(args.n, sleep=args.sleep, log=args.log)
    report = run_chunks(
        config, specs, sink=store.chunk_sink(run_id, 1), executors=executors_for(config), worker_argv=WORKER_ARGV,
        probe=None, cleanup=None, progress=False, ledger=store,
    )  # fmt: skip
    store.finish_run(run_id, "succeeded")
    values = {str(r["value"]): r["survivors"] for r in report.results.values()}
    print(json.dumps({"run": run_id, "resumed": report.resumed, "executed": report.executed, "survivors": values}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
