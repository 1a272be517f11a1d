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
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agents.commands.common import open_store


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("metrics", help="Prometheus text exposition of runs, steps, failures, quarantines")
    p.add_argument("--textfile", default=None, help="write to this file atomically (node_exporter's textfile "
                   "collector directory) instead of stdout")  # fmt: skip
    p.set_defaults(handler=run)


class StoreCollector:
    """One scrape of the run store (None: no store yet, every counter 0)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        store = self.store
        runs = CounterMetricFamily("watcher_runs_total", "Runs recorded in the store, by status.", labels=["status"])
        for status, count in sorted((store.run_counts() if store else {}).items()):
            runs.add_metric([status], count)
        yield runs
        failures = CounterMetricFamily(
            "watcher_chunk_failures_total", "Failed chunk attempts of every run, by node.", labels=["node"]
        )
        for node, count in (store.chunk_failure_counts() if store else {}).items():
            failures.add_metric([node], count)
        yield failures
        last = store.latest_run() if store else None
        yield from self._latest_run(last)
        quarantined = GaugeMetricFamily("watcher_quarantined_gpus", "GPUs quarantined now, by node.", labels=["node"])
        for node, count in sorted(Counter(e.node for e in (store.entries() if store else [])).items()):
            quarantined.add_metric([node], count)
        yield quarantined
        succeeded = GaugeMetricFamily("watcher_last_run_succeeded", "1 if the latest run succeeded, else 0.")
        succeeded.add_metric([], 1.0 if last is not None and last.status == "succeeded" else 0.0)
        yield succeeded

    def _latest_run(self, last: Any) -> Iterator[Metric]:
        steps = self.store.step_history(run_id=last.id) if last is not None else []
        duration = GaugeMetricFamily("watcher_step_duration_seconds", "Duration of each step attempt of the latest "
                                     "run.", labels=["step", "attempt", "status"])  # fmt: skip
        rate = GaugeMetricFamily("watcher_step_seeds_per_second", "Seeds tested per second by each step attempt of "
                                 "the latest run.", labels=["step", "attempt"])  # fmt: skip
        survivors = GaugeMetricFamily("watcher_step_survivors", "Survivors reported by each step attempt of the "
                                      "latest run.", labels=["step", "attempt"])  # fmt: skip
        for step in steps:
            metrics, labels = step.metrics or {}, [f"{step.number:g}", str(step.attempt)]
            seconds = float(metrics.get("duration_s") or 0)
            duration.add_metric([*labels, step.status], seconds)
            if metrics.get("seeds_tested"):
                rate.add_metric(labels, float(metrics["seeds_tested"]) / max(seconds, 1e-9))
            if metrics.get("survivors") is not None:
                survivors.add_metric(labels, float(metrics["survivors"]))
        yield from (duration, rate, survivors)


def registry_for(store: Any) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    return registry


def render(store: Any) -> str:
    """The exposition text of the store (None: no store yet)."""
    return generate_latest(registry_for(store)).decode()


def run(args: argparse.Namespace) -> int:
    store = open_store(args.state_dir, must_exist=False)
    try:
        if args.textfile:
            write_to_textfile(args.textfile, registry_for(store))
        else:
            print(render(store), end="")
    finally:
        if store is not None:
            store.close()
    return 0
