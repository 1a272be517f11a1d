"""`watcher deploy`'s machinery: wheel (one wheel of the coordinator's build), probe (what a node has),
steps (the shell commands), link (a fabric Connection logged in as the transport does), node (one node's
steps and its outcome), fleet (the plan, nodes in parallel, the dry run)."""

from cluster.deploy.fleet import deploy_all, dry_run, runtime_requirements, shipped_files
from cluster.deploy.node import Outcome, Plan
from cluster.deploy.wheel import Wheel, build_wheel

__all__ = [
    "Outcome",
    "Plan",
    "Wheel",
    "build_wheel",
    "deploy_all",
    "dry_run",
    "runtime_requirements",
    "shipped_files",
]
