"""`watcher history [--decisions]`: per-run, per-step metrics, and the audit trail of decisions."""

from __future__ import annotations

import argparse
import json
from typing import Any

from agents.commands.common import open_store
from cluster.text import printable


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("history", help="step metrics of recent runs; --decisions for the audit trail")
    p.add_argument("--decisions", action="store_true", help="show every decision with its inputs and advisor")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, default=50, help="at most this many step attempts (default 50)")
    p.set_defaults(handler=run)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    store = open_store(args.state_dir)
    assert store is not None
    steps = store.step_history(limit=args.limit)
    console = Console(highlight=False, markup=False)  # reasons and answers come from nodes and an LLM
    if args.decisions:
        rows = [d for r in {s.run_id for s in steps} for d in store.decisions(r)]
        rows.sort(key=lambda d: d["id"])
        if args.json:
            print(json.dumps(rows, indent=1, default=str))
            return 0
        for d in rows:
            console.print(
                f"run {d['run_id']} step {d['step']:g} attempt {d['attempt']}: {d['decision']} "
                f"by {d['advisor']}" + (f" (fallback: {printable(d['fallback'])})" if d.get("fallback") else "")
            )
            console.print(f"  why: {printable(d['reason'])}")
            console.print(f"  inputs: {json.dumps(d.get('inputs'), default=str)}")
            console.print(f"  advisor answered: {printable(d.get('raw_answer'))}")
            if d.get("clamped"):
                console.print(f"  clamped: {json.dumps(d['clamped'], default=str)}")
            console.print(f"  applied next: {json.dumps(d.get('applied'), default=str)}")
            if d.get("next_run"):
                console.print(f"  next run starts from: {json.dumps(d['next_run'], default=str)}")
        return 0
    if args.json:
        print(json.dumps([s.__dict__ for s in steps], indent=1, default=str))
        return 0
    table = Table(title="step history (oldest first)")
    for col in (
        "run",
        "step",
        "att",
        "status",
        "survivors",
        "chance",
        "coverage",
        "trials ok/pruned",
        "seeds tested",
        "duration s",
        "failures",
    ):
        table.add_column(col)
    for s in steps:
        m = s.metrics or {}
        table.add_row(
            str(s.run_id),
            f"{s.number:g}",
            str(s.attempt),
            s.status,
            _fmt(m.get("survivors")),
            _fmt(m.get("expected_chance_survivors")),
            f"{m['coverage']:.1%}" if isinstance(m.get("coverage"), int | float) else "-",
            f"{_fmt(m.get('completed_trials'))}/{_fmt(m.get('pruned_trials'))}",
            _fmt(m.get("seeds_tested")),
            _fmt(m.get("duration_s")),
            _fmt(m.get("chunk_failures", 0))
            + (f" {printable(s.error, keep_lines=False, limit=60)}" if s.error else ""),
        )
    console.print(table)
    return 0
