"""The `watcher` command line: one sub-command per module under agents/commands, listed explicitly."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from agents.logging_setup import console_main
from cluster.errors import EXIT_USAGE, WatcherError
from cluster.text import printable

# (sub-command, module): each module has `add_parser(subparsers)` and `run(args) -> int`.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("run", "agents.commands.run"),
    ("status", "agents.commands.status"),
    ("history", "agents.commands.history"),
    ("gpus", "agents.commands.gpus"),
    ("halt", "agents.commands.halt"),
    ("report", "agents.commands.report"),
    ("metrics", "agents.commands.metrics"),
    ("dashboard", "agents.commands.dashboard"),
    ("cron", "agents.commands.cron"),
    ("validate-config", "agents.commands.validate"),
    ("verify", "agents.commands.verify"),
    ("deploy", "agents.commands.deploy"),
)


def _load(module: str) -> ModuleType | None:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name == module:
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watcher",
        description="Supervise a numbered GPU pipeline across SSH rigs: preflight, advise, run, decide.",
    )
    parser.add_argument("--state-dir", default=".watcher", help="run store, logs and lock (default: .watcher)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for _name, module in COMMANDS:
        mod = _load(module)
        if mod is not None:
            mod.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return console_main(_main, argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except WatcherError as err:
        print(f"watcher: {printable(err)}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("watcher: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

__all__ = ["EXIT_USAGE", "build_parser", "main"]
