"""`watcher report [RUN]`: a self-contained HTML report and stats.json for a run (default: the last)."""

from __future__ import annotations

import argparse
from pathlib import Path

from agents.commands.common import open_store
from cluster.errors import StoreError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("report", help="write an HTML report (plots inlined) and stats.json for a run")
    p.add_argument("run_id", nargs="?", type=int, help="run id (default: the latest)")
    p.add_argument("--out", default=None, help="HTML path (default: <state>/runs/<run>/report.html)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from agents.report import render_report

    store = open_store(args.state_dir)
    assert store is not None
    run_id = args.run_id
    if run_id is None:
        latest = store.latest_run()
        if latest is None:
            raise StoreError("no runs recorded yet")
        run_id = latest.id
    elif store.get_run(run_id) is None:
        raise StoreError(f"no run {run_id} in the store (see `watcher history`)")
    state = Path(args.state_dir)
    out = Path(args.out) if args.out else state / "runs" / str(run_id) / "report.html"
    html_path, stats_path = render_report(store, state, run_id, out)
    print(f"report: {html_path}\nstats:  {stats_path}")
    return 0
