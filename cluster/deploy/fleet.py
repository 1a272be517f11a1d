"""`watcher deploy` across the cluster: the plan every node gets, nodes in parallel (bounded), a dry run.

Nodes run in a bounded thread pool, each over its own fabric `Connection` (`link.NodeLink`), rather than a
fabric `ThreadingGroup`: every node runs its own commands (its python, its workdir), fails on its own
(one line, never stopping the others), and a 30-rig cluster must not open 30 uploads at once.
Local nodes are skipped: they run the coordinator's own install.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

from cluster.config import ClusterConfig, NodeConfig
from cluster.deploy import steps
from cluster.deploy.node import Outcome, Plan, Say, deploy_node
from cluster.files import PACKAGE, package_files


def runtime_requirements() -> list[str]:
    """watcher's own requirements (no extras), for the nodes to check against what they have."""
    try:
        found = metadata.requires(PACKAGE) or []
    except metadata.PackageNotFoundError:
        return []
    return [r for r in found if "extra ==" not in r.replace('"', "").replace("'", "")]


def shipped_files(config: ClusterConfig) -> tuple[dict[str, Path], list[str]]:
    """Files a node needs in its workdir beside the wheel (the batch cleanup script, a path relative to the
    workdir), found next to the coordinator's packages or in its working directory; and notes for the
    operator about those it cannot ship."""
    policy = config.scheduler
    if not policy.run_cleanup or policy.cleanup_script.startswith(("/", "~")):
        return {}, []
    files = package_files("cluster")
    roots = [Path(files[0][1]).parents[1]] if files else []
    for root in [*roots, Path.cwd()]:
        candidate = root / policy.cleanup_script
        if candidate.is_file():
            return {posixpath.normpath(policy.cleanup_script): candidate}, []
    return {}, [f"scheduler.cleanup_script {policy.cleanup_script} not found on the coordinator: not shipped"]


def deploy_all(nodes: Sequence[NodeConfig], plan: Plan, say: Say, parallel: int = 4) -> list[Outcome]:
    """One outcome per node, in the order given; at most `parallel` nodes at a time."""
    remote = [n for n in nodes if n.transport == "ssh"]
    done: dict[str, Outcome] = {}
    for node in nodes:
        if node.transport != "ssh":
            done[node.name] = Outcome(node.name, "skipped", reason="local node: runs the coordinator's own install")
            say(node.name, "skip", "local node: runs the coordinator's own install")
    if remote:
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(remote))), thread_name_prefix="deploy") as pool:
            for outcome in pool.map(lambda n: deploy_node(n, plan, say), remote):
                done[outcome.node] = outcome
    return [done[n.name] for n in nodes]


def dry_run(node: NodeConfig, plan: Plan) -> list[tuple[str, str]]:
    """(step, command) of everything deploy would run on `node` (paths as configured; the probe decides at
    run time which of the later steps are needed)."""
    if node.transport != "ssh":
        return [("skip", "local node: runs the coordinator's own install")]
    workdir, python, wheel = node.workdir, node.python, plan.wheel
    login = f"{node.user}@{node.host}" if node.user else node.host
    out = [("connect", f"ssh -p {node.port} {login} (known_hosts {node.known_hosts or '~/.ssh/known_hosts'})")]
    out.append(("probe", f"(in {workdir}) {python} -c <probe: build identity, torch, requirements, file hashes>"))
    if node.deploy.create_venv:
        out.append(("venv", steps.create_venv(node).shown + "   # only if it is missing"))
    if plan.check:
        return out
    out.append(("upload", steps.make_stage(workdir).shown))
    uploads = [(posixpath.join(steps.STAGE, wheel.name), wheel.name, False)]
    uploads += [(rel, str(path), bool(path.stat().st_mode & 0o111)) for rel, path in plan.files.items()]
    for rel, local, executable in uploads:
        if posixpath.dirname(rel) != steps.STAGE:
            out.append(("upload", steps.upload_dir(workdir, rel).shown))
        out.append(("upload", f"sftp put {local} {posixpath.join(workdir, rel)}.part"))
        out.append(("upload", steps.place(workdir, rel, executable).shown))
    out.append(("install", steps.pip_install(python, workdir, wheel.name).shown))
    out.append(("install", steps.clear_tmp(workdir).shown))
    out.append(("verify", f"(in {workdir}) {python} -c <probe>   # build must be {wheel.identity}"))
    return out
