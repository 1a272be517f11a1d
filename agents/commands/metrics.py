"""`watcher metrics`: the run store as Prometheus metrics, in the text format node_exporter's textfile collector
reads: on stdout, or written atomically to a file with `--textfile PATH` (prometheus_client's
`write_to_textfile`: a temp file, then a rename, so the collector never reads half a file).

Counters are computed from the whole store, never from a window of it: a counter that can go down (as when
only the newest runs were counted) reads to Prometheus as a reset and its rate as nonsense. The formatting is
prometheus_client's, not ours.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from agents.commands.common import CRASHED, open_store, run_status

if TYPE_CHECKING:  # prometheus_client is imported when metrics are asked for: every CLI start loads this module
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("metrics", help="Prometheus text exposition of runs, steps, failures, quarantines")
    p.add_argument("--textfile", default=None, help="write to this file atomically (node_exporter's textfile "
                   "collector directory) instead of stdout")  # fmt: skip
    p.set_defaults(handler=run)


class StoreCollector:
    """One scrape of the run store (None: no store yet, every counter 0)."""

    def __init__(self, store: Any, state_dir: str = ".watcher") -> None:
        self.store, self.state_dir = store, state_dir

    def run_counts(self, last: Any) -> dict[str, int]:
        """Every run by status, a run stored as running but whose process is gone counted as "crashed"
        (agents.runstate): only the newest run can still hold the state directory's lock."""
        counts = dict(self.store.run_counts()) if self.store else {}
        stored_running = counts.pop("running", 0)
        live = 1 if stored_running and last is not None and run_status(last, self.state_dir) == "running" else 0
        for status, count in (("running", live), (CRASHED, stored_running - live)):
            if count:
                counts[status] = counts.get(status, 0) + count
        return counts

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        store = self.store
        last = store.latest_run() if store else None
        runs = CounterMetricFamily("watcher_runs_total", "Runs recorded in the store, by status (running, crashed, "
                                   "or how it ended).", labels=["status"])  # fmt: skip
        for status, count in sorted(self.run_counts(last).items()):
            runs.add_metric([status], count)
        yield runs
        failures = CounterMetricFamily(
            "watcher_chunk_failures_total", "Failed chunk attempts of every run, by node.", labels=["node"]
        )
        for node, count in (store.chunk_failure_counts() if store else {}).items():
            failures.add_metric([node], count)
        yield failures
        yield from self._latest_run(last)
        quarantined = GaugeMetricFamily("watcher_quarantined_gpus", "GPUs quarantined now, by node.", labels=["node"])
        for node, count in sorted(Counter(e.node for e in (store.entries() if store else [])).items()):
            quarantined.add_metric([node], count)
        yield quarantined
        succeeded = GaugeMetricFamily("watcher_last_run_succeeded", "1 if the latest run succeeded, else 0.")
        succeeded.add_metric([], 1.0 if last is not None and last.status == "succeeded" else 0.0)
        yield succeeded
        crashed = GaugeMetricFamily("watcher_last_run_crashed", "1 if the latest run is stored as running but its "
                                    "process is gone (resume it), else 0.")  # fmt: skip
        crashed.add_metric([], 1.0 if self._crashed(last) else 0.0)
        yield crashed

    def _crashed(self, last: Any) -> bool:
        return last is not None and run_status(last, self.state_dir) == CRASHED

    def _latest_run(self, last: Any) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        steps = self.store.step_history(run_id=last.id) if last is not None else []
        duration = GaugeMetricFamily("watcher_step_duration_seconds", "Duration of each step attempt of the latest "
                                     "run.", labels=["step", "attempt", "status"])  # fmt: skip
        rate = GaugeMetricFamily("watcher_step_seeds_per_second", "Seeds tested per second by each step attempt of "
                                 "the latest run.", labels=["step", "attempt"])  # fmt: skip
        survivors = GaugeMetricFamily("watcher_step_survivors", "Survivors reported by each step attempt of the "
                                      "latest run.", labels=["step", "attempt"])  # fmt: skip
        crashed = self._crashed(last)  # a crashed run's step is not running either
        for step in steps:
            metrics, labels = step.metrics or {}, [f"{step.number:g}", str(step.attempt)]
            seconds = float(metrics.get("duration_s") or 0)
            status = CRASHED if crashed and step.status == "running" else step.status
            duration.add_metric([*labels, status], seconds)
            if metrics.get("seeds_tested"):
                rate.add_metric(labels, float(metrics["seeds_tested"]) / max(seconds, 1e-9))
            if metrics.get("survivors") is not None:
                survivors.add_metric(labels, float(metrics["survivors"]))
        yield from (duration, rate, survivors)


def registry_for(store: Any, state_dir: str = ".watcher") -> CollectorRegistry:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, state_dir))
    return registry


def render(store: Any, state_dir: str = ".watcher") -> str:
    """The exposition text of the store (None: no store yet)."""
    from prometheus_client import generate_latest

    return generate_latest(registry_for(store, state_dir)).decode()


def run(args: argparse.Namespace) -> int:
    store = open_store(args.state_dir, must_exist=False)
    try:
        if args.textfile:
            from prometheus_client import write_to_textfile

            write_to_textfile(args.textfile, registry_for(store, args.state_dir))
        else:
            print(render(store, args.state_dir), end="")
    finally:
        if store is not None:
            store.close()
    return 0
