"""Wall time of the default `watcher run --from-step 1`, this checkout against another one, side by side.

    python bench/default_run.py --base /path/to/other/checkout [--reps 3] [--json]

Each tree runs once to warm its caches (compiled kernels), then the two alternate `--reps` times, each run with
a fresh state directory (so every run does the same work: no budget carried over from an earlier run). The
other checkout runs with this interpreter, from its own directory (its modules, its pipeline.yaml, its
workers). Prints each run's seconds, the medians and their ratio; on a shared machine only the ratio means much.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def one_run(tree: Path) -> float:
    with tempfile.TemporaryDirectory(prefix="watcher-bench-") as state:
        started = time.monotonic()
        res = subprocess.run([sys.executable, "-m", "agents.cli", "--state-dir", state, "run", "--from-step", "1"],
                             cwd=tree, capture_output=True, text=True, stdin=subprocess.DEVNULL)  # fmt: skip
        seconds = time.monotonic() - started
    if res.returncode != 0 or "seed 12345678 recovered" not in res.stdout:
        raise SystemExit(f"{tree}: the run failed (exit {res.returncode}):\n{res.stdout}\n{res.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, type=Path, help="the checkout to compare with")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    trees = {"base": args.base.resolve(), "this": HERE}
    for tree in trees.values():
        one_run(tree)  # warm-up: compiled kernels in each tree's cache
    times: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(args.reps):
        for name, tree in trees.items():
            times[name].append(round(one_run(tree), 1))
    medians = {name: statistics.median(values) for name, values in times.items()}
    out = {"runs_s": times, "median_s": medians, "this_over_base": round(medians["this"] / medians["base"], 3)}
    if args.json:
        print(json.dumps(out))
        return
    for name, values in times.items():
        print(f"{name:5} {trees[name]}: {values} s, median {medians[name]:.1f} s")
    print(f"this / base = {out['this_over_base']:.2f}")


if __name__ == "__main__":
    main()
