"""Gather: the facts preflight judges, read from every node in parallel under one deadline.

Only I/O lives here (NHC's gather half): one GPU probe per node (cluster.gpu.probe), one small Python
facts script (build identity, disk, memory, whether CuPy imports, torch's view of the GPUs), and the sha256 of the
ramdisk copies.
What the facts mean is decided by the pure functions of preflight/evaluate.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cluster.config import ClusterConfig, NodeConfig
from cluster.files import PACKAGE, PACKAGES, identity_script
from cluster.gpu.ledger import HealthLedger
from cluster.gpu.probe import NodeProbe, probe_node_full
from cluster.transport.base import Executor
from cluster.transport.fanout import fan_out_call

NodeFacts = tuple[NodeProbe, dict[str, Any], dict[str, str | None]]

_FACTS = rf"""
import json, os, shutil, sys
out = {{}}
try:
    out["version"] = source_identity({PACKAGE!r}, {PACKAGES!r})
except Exception as e:
    out["version"] = None
out["free_disk_gb"] = shutil.disk_usage(".").free / 1e9
try:
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            out["free_memory_gb"] = int(line.split()[1]) / 1e6
except OSError:
    pass
if sys.argv[1] != "cpu":
    # CuPy before torch: on ROCm importing torch first breaks CuPy's compiler (pipeline.worker keeps this order)
    import importlib.util
    out["cupy"] = None
    if importlib.util.find_spec("cupy") is not None:
        try:
            import cupy
            out["cupy"] = cupy.__version__
        except Exception as e:
            out["cupy_error"] = f"{{type(e).__name__}}: {{e}}"[:300]
    try:
        import torch
        out["device_count"] = torch.cuda.device_count()
        out["hip"] = getattr(torch.version, "hip", None)
    except Exception as e:
        out["torch_error"] = f"{{type(e).__name__}}: {{e}}"
print(json.dumps(out))
"""
# The node's build identity is computed by the coordinator's own code (sent along), from the node's files.
FACTS_SCRIPT = identity_script() + _FACTS


def gather_node(
    ex: Executor, node: NodeConfig, config: ClusterConfig, ramdisk: Mapping[str, str],
    ledger: HealthLedger | None = None,
) -> NodeFacts:  # fmt: skip
    """ledger: where the GPU probe reads and moves the node's kernel cursor and keeps its reading."""
    ex.connect()
    gpus = probe_node_full(ex, node, config.health, ledger)
    python = node.interpreter()
    want_torch = node.gpu_kind if config.health.check_torch_devices else "cpu"  # importing torch costs ~2 s
    res = ex.run([python, "-c", FACTS_SCRIPT, want_torch], timeout=config.timeouts.command)
    try:
        facts = json.loads(res.stdout.strip().splitlines()[-1]) if res.stdout.strip() else {}
    except json.JSONDecodeError:
        facts = {}
    if not facts:
        facts = {"version": None, "torch_error": f"python on the node failed: {res.tail(lines=3)}"}
    remote: dict[str, str | None] = {}
    if ramdisk:
        base = node.path_on_node(node.ramdisk_path).rstrip("/")
        script = 'd=$1; shift; cd "$d" 2>/dev/null && sha256sum -- "$@" 2>/dev/null; true'
        listing = ex.run(["sh", "-c", script, "sh", base, *ramdisk])
        for line in listing.stdout.splitlines():
            digest, _, name = line.partition("  ")
            remote[name.strip()] = digest
    return gpus, facts, remote


def gather_all(
    executors: Mapping[str, Executor],
    nodes: Mapping[str, NodeConfig],
    config: ClusterConfig,
    ramdisk: Mapping[str, str],
    deadline: float,
    ledger: HealthLedger | None = None,
) -> tuple[dict[str, NodeFacts], dict[str, BaseException]]:
    """(facts per node that answered, error per node that did not), all nodes in parallel."""
    return fan_out_call(
        executors, lambda ex: gather_node(ex, nodes[ex.name], config, ramdisk, ledger), deadline=deadline
    )
