"""Transport benchmark on loopback fake rigs (real sshd). Prints numbers; never part of the tests.

    python bench/transport.py [--json] [--rigs 20]

Figures: median latency of one command on a reused connection; connect-and-run on N rigs in parallel;
how fast a dead port and a hung node are reported (the latter bounded by the connect timeout).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

import contextlib

import fakerig

from cluster.errors import NodeUnreachableError
from cluster.transport import executor_for
from cluster.transport.fanout import fan_out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--rigs", type=int, default=20)
    parser.add_argument("--commands", type=int, default=200)
    args = parser.parse_args()
    reason = fakerig.available()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 1
    factory = fakerig.RigFactory(Path(tempfile.mkdtemp(prefix="bench-transport-")))
    rows: list[dict[str, object]] = []
    try:
        rigs = factory.make(args.rigs, gpus=1, switches=False)
        config = fakerig.cluster_config(rigs)
        timeouts = config.timeouts

        ex = executor_for(config.nodes[0], timeouts)
        ex.run("true")
        samples = []
        for _ in range(args.commands):
            t = time.perf_counter()
            ex.run(["true"])
            samples.append(time.perf_counter() - t)
        ex.close()
        rows.append(
            {"metric": "reused_connection_command_ms", "median": statistics.median(samples) * 1e3,
             "p95": sorted(samples)[int(0.95 * len(samples))] * 1e3, "target": 5.0}
        )  # fmt: skip

        executors = {n.name: executor_for(n, timeouts) for n in config.nodes}
        t = time.perf_counter()
        result = fan_out(executors, "true", timeout=10)
        rows.append({"metric": f"connect_and_run_{args.rigs}_rigs_s", "value": time.perf_counter() - t,
                     "ok_nodes": len(result.succeeded), "target": 0.5})  # fmt: skip
        for e in executors.values():
            e.close()

        dead, hung = rigs[-2], rigs[-1]
        dead.down()
        t = time.perf_counter()
        with contextlib.suppress(NodeUnreachableError):
            executor_for(dead.node_config(), timeouts).run("true")
        rows.append({"metric": "dead_port_reported_s", "value": time.perf_counter() - t, "target": 0.2})
        hung.hang()
        t = time.perf_counter()
        with contextlib.suppress(NodeUnreachableError):
            executor_for(hung.node_config(), timeouts).run("true")
        rows.append({"metric": "hung_node_reported_s", "value": time.perf_counter() - t,
                     "connect_timeout": timeouts.connect, "target": timeouts.connect + 0.5})  # fmt: skip
    finally:
        factory.stop_all()
    for row in rows:
        if args.json:
            print(json.dumps(row))
        else:
            value = row.get("median", row.get("value"))
            print(f"{row['metric']:<34} {value:9.3f}   (target {row['target']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
