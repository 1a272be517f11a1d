"""Which transport a node gets, from its config: local subprocesses or SSH (paramiko imported only then)."""

from __future__ import annotations

from cluster.config import NodeConfig, Timeouts
from cluster.transport.base import Executor
from cluster.transport.local import LocalExecutor


def executor_for(node: NodeConfig, timeouts: Timeouts | None = None) -> Executor:
    if node.transport == "local":
        return LocalExecutor(node)
    from cluster.transport.ssh import SSHExecutor  # paramiko is only imported when a rig needs it

    return SSHExecutor(node, timeouts)


def executors_for(nodes: list[NodeConfig], timeouts: Timeouts | None = None) -> dict[str, Executor]:
    return {node.name: executor_for(node, timeouts) for node in nodes}
