"""Ramdisk preload: the files a step's jobs read are copied to every node's ramdisk and verified by
hash before the step starts; the ready marker is written only after every file verified, so preflight
(and an operator) can trust it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from cluster.config import NodeConfig
from cluster.errors import StepError
from cluster.files import sha256_file
from cluster.transport.base import Executor
from cluster.transport.fanout import fan_out_call

READY_MARKER = ".watcher-ready.json"


def _preload_node(ex: Executor, node: NodeConfig, files: Mapping[str, Path], hashes: Mapping[str, str]) -> None:
    base = ex.node_path(node.ramdisk_path).rstrip("/")
    for name, local in files.items():
        ex.put(local, f"{base}/{name}")
    # hashed from inside the directory, by bare name, so a path with spaces cannot split a line
    script = 'cd "$1" && shift && sha256sum -- "$@"'
    result = ex.run(["sh", "-c", script, "sh", base, *files], timeout=60)
    if not result.ok:
        raise StepError(f"{node.name}: cannot hash ramdisk files: {result.tail()}")
    seen = {}
    for line in result.stdout.splitlines():
        digest, _, name = line.partition("  ")
        seen[name.strip()] = digest.strip()
    bad = [name for name in files if seen.get(name) != hashes[name]]
    if bad:
        raise StepError(f"{node.name}: ramdisk copy of {', '.join(bad)} does not match the coordinator's")
    marker = json.dumps({"files": dict(hashes)})
    ready = ex.run(["sh", "-c", f'cat > "$1/{READY_MARKER}"', "sh", base], stdin=marker, timeout=30)
    if not ready.ok:
        raise StepError(f"{node.name}: cannot write the ramdisk ready marker: {ready.tail()}")


def preload(executors: Mapping[str, Executor], nodes: list[NodeConfig], files: Mapping[str, Path]) -> dict[str, str]:
    """Copy and verify on all nodes in parallel; StepError naming every node that failed."""
    if not files:
        return {}
    hashes = {name: sha256_file(path) for name, path in files.items()}
    by_name = {n.name: n for n in nodes}
    targets = {name: ex for name, ex in executors.items() if name in by_name}
    _, errors = fan_out_call(targets, lambda ex: _preload_node(ex, by_name[ex.name], files, hashes))
    if errors:
        detail = "; ".join(f"{name}: {err}" for name, err in sorted(errors.items()))
        raise StepError(f"ramdisk preload failed: {detail}")
    return hashes
