"""Preflight benchmark over fake rigs (real sshd, fake rocm-smi): wall time for 3, 10 and 30 rigs of
12 GPUs. Nodes are checked in parallel, so the time should track the slowest node, not the count.

    python bench/preflight.py [--json] [--sizes 3,10,30]
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

import fakerig

from preflight import run_preflight


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sizes", default="3,10,30")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    reason = fakerig.available()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 1
    sizes = [int(s) for s in args.sizes.split(",")]
    factory = fakerig.RigFactory(Path(tempfile.mkdtemp(prefix="bench-preflight-")))
    try:
        rigs = factory.make(max(sizes), gpus=12)
        single = None
        for n in sizes:
            config = fakerig.cluster_config(rigs[:n], health={"check_torch_devices": False, "min_healthy_gpus": 1})
            times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                report = run_preflight(config)
                times.append(time.perf_counter() - started)
                assert report.ok, report.failure_lines()
            median = statistics.median(times)
            single = single or median / 1
            row = {
                "rigs": n,
                "gpus": 12 * n,
                "median_s": round(median, 3),
                "min_s": round(min(times), 3),
                "ratio_vs_smallest": round(median / single, 2),
                "target_s": 2.0 if n == 30 else None,
            }
            print(
                json.dumps(row)
                if args.json
                else f"{n:>3} rigs x 12 GPUs: median {median:.2f} s (min {min(times):.2f} s), "
                f"x{row['ratio_vs_smallest']} vs {sizes[0]} rigs"
            )
    finally:
        factory.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
