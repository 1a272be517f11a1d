"""`preflight check`: the same gate `watcher run` uses, by hand or from cron. Exit 0 ok, 69 a check
failed, 78 bad config. The console script lives with the agents because it reads the pipeline (for
--step) and the run store (the health ledger), both above preflight."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from agents.commands.run import validate_plan
from agents.logging_setup import console_main
from agents.settings import AgentSettings
from cluster.config import default_config_path, load_config
from cluster.errors import WatcherError
from cluster.text import printable
from pipeline.gate import check_step
from pipeline.spec import default_pipeline_path, load_pipeline
from pipeline.store import RunStore
from preflight import PreflightReport, run_preflight

STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="preflight", description="Check nodes, GPUs and inputs before a run.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    check = sub.add_parser("check", help="run every check (exit 0 ok, 69 failure, 78 bad config)")
    check.add_argument("--step", type=float, default=None, help="also check that step's inputs and ramdisk files")
    check.add_argument("--config", default=None, help="distributed_config.json (default: ./ or the embedded one)")
    check.add_argument("--pipeline", default=None, help="pipeline.yaml (for --step)")
    check.add_argument("--state-dir", default=".watcher", help="run store with the health ledger")
    check.add_argument("--node", default=None, help="check only this node")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def render(report: PreflightReport) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    table = Table(title=f"preflight ({report.seconds:.2f} s)")
    for column in ("node", "check", "target", "status", "message"):
        table.add_column(column)
    for r in report.results:  # node text (rocm-smi keys, kernel lines) as Text: never markup, never escapes
        msg = r.message + (f"\n-> {r.remedy}" if r.remedy and r.status != "ok" else "")
        cells = (r.node, r.check, r.target, r.status, msg)
        table.add_row(*(Text(printable(c)) for c in cells[:3]), Text(r.status, style=STYLE[r.status]),
                      Text(printable(msg)))  # fmt: skip
    console.print(table)
    console.print(
        "[green]all checks passed[/]" if report.ok else f"[bold red]{len(report.failures)} check(s) failed[/]"
    )


def main(argv: Sequence[str] | None = None) -> int:
    return console_main(_main, argv)


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config or default_config_path())
        store_path = Path(args.state_dir) / "watcher.db"
        ledger = RunStore(store_path) if store_path.exists() else None
        if args.step is not None:
            spec = load_pipeline(args.pipeline or default_pipeline_path())
            # the same checks `watcher run` and `--dry-run` make (data, history, params, bounds), in the same loader
            validate_plan(spec, AgentSettings.from_mapping(spec.agent), {})
            entry = spec.entry(args.step)
            report = check_step(entry, config=config, state_dir=Path(args.state_dir), ledger=ledger, node=args.node)
        else:
            report = run_preflight(config, ledger=ledger, node=args.node)
        if ledger is not None:
            ledger.record_preflight(report.to_json(), step=args.step, ok=report.ok)
    except WatcherError as err:
        print(f"preflight: {printable(err)}", file=sys.stderr)
        return err.exit_code
    if args.json:
        print(report.dumps())
    else:
        render(report)
        for line in report.failure_lines():
            print(f"FAIL {printable(line, keep_lines=False)}", file=sys.stderr)
    return report.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
