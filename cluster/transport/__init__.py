"""Transports: how a command reaches a node. base (the Executor interface and CommandResult), local,
ssh (with ssh_login: how every SSH client of ours logs in), fanout (one call on many nodes), select
(`executor_for` picks one from the node's config)."""

from cluster.transport.base import CommandResult, Executor, render_command
from cluster.transport.local import LocalExecutor
from cluster.transport.select import executor_for, executors_for

__all__ = ["CommandResult", "Executor", "LocalExecutor", "executor_for", "executors_for", "render_command"]
