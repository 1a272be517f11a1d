"""`watcher metrics`: Prometheus text format for node_exporter's textfile collector
(e.g. `watcher metrics > /var/lib/node_exporter/textfile/watcher.prom` from cron)."""

from __future__ import annotations

import argparse
from collections import Counter

from agents.commands.common import open_store, run_status


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("metrics", help="Prometheus text exposition of runs, steps, failures, quarantines")
    p.set_defaults(handler=run)


def _esc(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(store, state_dir: str = ".watcher") -> str:  # type: ignore[no-untyped-def]
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[dict[str, object], float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{label}}} {value:g}" if label else f"{name} {value:g}")

    runs = store.runs(limit=1000) if store else []
    by_status = Counter(run_status(r, state_dir) for r in runs)  # a killed run is "crashed", not "running"
    metric(
        "watcher_runs_total",
        "counter",
        "Runs recorded in the store, by status (running, crashed, or how it ended).",
        [({"status": s}, float(n)) for s, n in sorted(by_status.items())],
    )
    last = runs[0] if runs else None
    steps = store.step_history(run_id=last.id) if (store and last) else []
    crashed = last is not None and run_status(last, state_dir) == "crashed"

    def step_status(status: str) -> str:  # a crashed run's step is not running either
        return "crashed" if crashed and status == "running" else status

    metric(
        "watcher_step_duration_seconds",
        "gauge",
        "Duration of each step attempt of the latest run.",
        [
            (
                {"step": f"{s.number:g}", "attempt": s.attempt, "status": step_status(s.status)},
                float((s.metrics or {}).get("duration_s") or 0),
            )
            for s in steps
        ],
    )
    metric(
        "watcher_step_seeds_per_second",
        "gauge",
        "Seeds tested per second by each step attempt of the latest run.",
        [
            (
                {"step": f"{s.number:g}", "attempt": s.attempt},
                float((s.metrics or {}).get("seeds_tested") or 0)
                / max(float((s.metrics or {}).get("duration_s") or 0), 1e-9),
            )
            for s in steps
            if (s.metrics or {}).get("seeds_tested")
        ],
    )
    metric(
        "watcher_step_survivors",
        "gauge",
        "Survivors reported by each step attempt of the latest run.",
        [
            ({"step": f"{s.number:g}", "attempt": s.attempt}, float((s.metrics or {}).get("survivors") or 0))
            for s in steps
            if (s.metrics or {}).get("survivors") is not None
        ],
    )
    failures = store.chunk_failures(last.id) if (store and last) else []
    metric(
        "watcher_chunk_failures_total",
        "counter",
        "Failed chunk attempts in the latest run, by node.",
        [({"node": n}, float(c)) for n, c in sorted(Counter(f.get("node") for f in failures).items())],
    )
    entries = store.entries() if store else []
    metric(
        "watcher_quarantined_gpus",
        "gauge",
        "GPUs currently quarantined, by node.",
        [({"node": n}, float(c)) for n, c in sorted(Counter(e.node for e in entries).items())],
    )
    metric(
        "watcher_last_run_succeeded",
        "gauge",
        "1 if the latest run succeeded, else 0.",
        [({}, 1.0 if last and last.status == "succeeded" else 0.0)],
    )
    metric(
        "watcher_last_run_crashed",
        "gauge",
        "1 if the latest run is stored as running but its process is gone (resume it), else 0.",
        [({}, 1.0 if last and run_status(last, state_dir) == "crashed" else 0.0)],
    )
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    store = open_store(args.state_dir, must_exist=False)
    print(render(store, args.state_dir), end="")
    return 0
