"""`watcher gpus`: the health ledger (excluded and quarantined GPUs); `watcher gpus release NODE:GPU`."""

from __future__ import annotations

import argparse
import getpass
import time
from pathlib import Path

from cluster.config import default_config_path, load_config
from cluster.errors import UsageError
from cluster.text import printable
from pipeline.store import RunStore


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("gpus", help="GPU health ledger; `gpus release NODE:GPU` ends a quarantine")
    p.add_argument("action", nargs="?", choices=["list", "release"], default="list")
    p.add_argument("target", nargs="?", help="NODE:GPU for release")
    p.add_argument("--config", default=None)
    p.set_defaults(handler=run)


def parse_target(target: str | None) -> tuple[str, int]:
    node, _, gpu = (target or "").rpartition(":")
    if not node or not gpu.isdigit():
        raise UsageError(f"expected NODE:GPU, e.g. rig-6600b:7; got {target!r}")
    return node, int(gpu)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config or default_config_path())
    store = RunStore(Path(args.state_dir) / "watcher.db")
    try:
        if args.action == "release":
            node, gpu = parse_target(args.target)
            config.node(node)
            if not store.release(node, gpu, f"{getpass.getuser()} by hand"):
                print(f"{node}:{gpu} was not quarantined")
                return 1
            print(f"{node}:{gpu} released; it gets work again from the next step")
            return 0
        entries = store.entries()
        for node in config.nodes:
            for gpu in node.excluded_gpus:
                print(f"{node.name}:{gpu.index}  excluded by config: {gpu.reason}")
        for e in entries:
            since = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.since))
            reason = printable(e.reason, keep_lines=False)
            print(f"{e.node}:{e.gpu}  quarantined since {since} by {e.source}: {reason}; clean checks {e.ok_streak}")
            for ev in e.evidence[:3]:
                print(f"    evidence: {printable(ev, keep_lines=False)}")
        if not entries and not any(n.excluded_gpus for n in config.nodes):
            print("all GPUs in service")
        return 0
    finally:
        store.close()
