"""`watcher deploy`: the coordinator's exact build on every SSH rig, in one command.

One wheel of the build this coordinator runs (the same bytes for every rig, its sha256 shown, reused from
<state-dir>/deploy when unchanged), then per node in parallel: connect (host keys as the transport checks
them), probe, create the venv if the config asks, check watcher's requirements against what the venv has,
upload, `pip install --no-deps` (the rig's torch and CuPy are never touched), read the build back. Nodes
already at the build are skipped. Exit 0 when every node ends at the build, 69 when one does not (each
failure is one line: node, step, fix), 78 for a bad config.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from cluster.config import ClusterConfig, NodeConfig, default_config_path, load_config
from cluster.errors import EXIT_OK, EXIT_PREFLIGHT, UsageError
from cluster.text import printable

if TYPE_CHECKING:
    from cluster.deploy import Outcome

STYLE = {"installed": "green", "up to date": "green", "skipped": "dim", "out of date": "yellow", "failed": "bold red"}


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "deploy", help="install the coordinator's build on every SSH rig (exit 0 all at the build, 69 not)"
    )
    p.add_argument("--config", default=None, help="distributed_config.json (default: ./ or the embedded one)")
    p.add_argument("--nodes", default=None, help="comma-separated node names (default: every node)")
    p.add_argument("--dry-run", action="store_true", help="print each command it would run; connect to nothing")
    p.add_argument("--check", action="store_true", help="only report which nodes are not at this build")
    p.add_argument("--parallel", type=int, default=4, help="nodes deployed at once (default 4)")
    p.set_defaults(handler=run)


def selected(config: ClusterConfig, names: str | None) -> list[NodeConfig]:
    if not names:
        return list(config.nodes)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    if not wanted:
        raise UsageError("--nodes: no node named; fix: --nodes rig01,rig02")
    # each node once; an unknown name is a ConfigError naming the known ones
    return [config.node(name) for name in dict.fromkeys(wanted)]


def run(args: argparse.Namespace) -> int:
    # here, not at the top: every `watcher` command builds this parser, and fabric costs ~0.3 s to import
    from cluster.deploy import Plan, build_wheel, deploy_all, dry_run, runtime_requirements, shipped_files

    if args.parallel < 1:
        raise UsageError(f"--parallel must be at least 1, got {args.parallel}")
    config = load_config(args.config or default_config_path())
    nodes = selected(config, args.nodes)
    state_dir = Path(args.state_dir)
    wheel = build_wheel(None if args.dry_run else state_dir / "deploy")
    where = f", {wheel.path}" if wheel.path else ""
    how = "reused" if wheel.reused else ("built" if wheel.path else "not written: dry run")
    size = f"{wheel.size / 1024:.0f} KiB"
    print(f"wheel {wheel.name}: build {wheel.identity}, sha256 {wheel.sha256}, {size} ({how}{where})", flush=True)
    files, notes = shipped_files(config)
    for note in notes:
        print(f"note: {note}")
    plan = Plan(wheel, runtime_requirements(), files, config.timeouts, check=args.check)
    if args.dry_run:
        for node in nodes:
            print(f"{node.name}:")
            for step, command in dry_run(node, plan):
                print(f"  {step:<8} {printable(command)}")
        return EXIT_OK
    outcomes = deploy_all(nodes, plan, _printer(), parallel=args.parallel)
    render(outcomes, wheel.identity)
    for outcome in outcomes:
        if not outcome.ok:
            print(f"FAIL {printable(outcome.line(), keep_lines=False)}", file=sys.stderr, flush=True)
    return EXIT_OK if all(o.ok for o in outcomes) else EXIT_PREFLIGHT


def _printer():  # type: ignore[no-untyped-def]
    """Progress lines from the node threads, one at a time, node text made printable."""
    lock = threading.Lock()

    def say(node: str, step: str, text: str) -> None:
        with lock:
            print(f"{node}: {step}: {printable(text, keep_lines=False)}", flush=True)

    return say


def render(outcomes: list[Outcome], identity: str) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"deploy of build {identity}")
    for column in ("node", "before", "after", "torch (GPU backend)", "seconds", "result"):
        table.add_column(column)
    for o in outcomes:
        cells = (o.node, o.before or "-", o.after or "-", o.gpu_stack or "-", f"{o.seconds:.1f}")
        result = o.result if o.ok or o.result == "out of date" else f"failed at {o.step}"
        table.add_row(*(Text(printable(c)) for c in cells), Text(result, style=STYLE.get(o.result, "")))
    Console(highlight=False, width=160).print(table)
