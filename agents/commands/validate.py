"""`watcher validate-config`: check a distributed_config.json without touching any node."""

from __future__ import annotations

import argparse

from cluster.config import default_config_path, load_config


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("validate-config", help="validate a distributed_config.json (exit 78 if invalid)")
    p.add_argument("--config", default=None, help="path (default: ./distributed_config.json or the embedded one)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    path = args.config or default_config_path()
    cfg = load_config(path)
    slots = sum(n.slot_count - len(n.excluded_gpus) for n in cfg.nodes)
    print(f"{path}: ok: {len(cfg.nodes)} node(s), {slots} usable slot(s)")
    return 0
