"""Which Ray node is which configured node: pure rules over what Ray reports, so they are tested without Ray.

In `slot_mode: ray` chunks travel over Ray, but health (preflight, rocm-smi, kernel lines, cleanup) still goes
over SSH to the configured nodes, so every Ray node that could run a slot's actor must be a configured node:
- a Ray node labelled `watcher-node=<name>` (`ray start --labels '{"watcher-node": "rig-a"}'`) is that node;
- an unlabelled one is matched by address: the configured `host` (resolved) equal to the Ray node's address, or,
  for the `transport: local` node, the Ray node the coordinator itself is attached to;
- a live Ray node that matches no configured node is refused (ConfigError, one line): work could land where
  no health check reaches. Several raylets on one address (or several configured nodes on one host) need the
  label, since an address cannot tell them apart.
A configured node with no live Ray node simply has no actors: its slots refuse work (see ray_slots/runner.py).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cluster.config import NodeConfig
from cluster.errors import ConfigError

NODE_LABEL = "watcher-node"
LABEL_FIX = f'ray start --labels \'{{"{NODE_LABEL}": "NAME"}}\''


@dataclass(frozen=True)
class RayNode:
    """One entry of `ray.nodes()`, reduced to what matching needs."""

    node_id: str
    address: str
    alive: bool
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_ray(cls, entry: dict) -> RayNode:  # type: ignore[type-arg]
        return cls(
            node_id=str(entry.get("NodeID", "")),
            address=str(entry.get("NodeManagerAddress", "")),
            alive=bool(entry.get("Alive")),
            labels={str(k): str(v) for k, v in (entry.get("Labels") or {}).items()},
        )

    def __str__(self) -> str:
        return f"Ray node {self.node_id[:8]} at {self.address}"


def resolve_host(host: str) -> set[str]:
    """The IPv4/IPv6 addresses a configured host name stands for (the name itself when it does not resolve)."""
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(host, None)} | {host}
    except OSError:
        return {host}


def match_nodes(
    nodes: Sequence[NodeConfig],
    ray_nodes: Iterable[RayNode],
    local_node_id: str | None,
    resolve: Callable[[str], set[str]] = resolve_host,
) -> dict[str, str]:
    """Configured node name -> the id of its live Ray node; raises ConfigError for a Ray node no configured
    node accounts for, or one that two could be."""
    names = {n.name for n in nodes}
    addresses = {n.name: resolve(n.host) for n in nodes if n.transport == "ssh"}
    found: dict[str, str] = {}
    for ray_node in (r for r in ray_nodes if r.alive):
        name = _which(ray_node, nodes, names, addresses, local_node_id)
        if name in found:
            raise ConfigError(
                f"ray: {ray_node} and Ray node {found[name][:8]} both stand for node {name!r}; fix: label each "
                f"raylet with its own {NODE_LABEL} ({LABEL_FIX})"
            )
        found[name] = ray_node.node_id
    return found


def _which(
    ray_node: RayNode,
    nodes: Sequence[NodeConfig],
    names: set[str],
    addresses: dict[str, set[str]],
    local_node_id: str | None,
) -> str:
    labelled = ray_node.labels.get(NODE_LABEL)
    if labelled is not None:
        if labelled not in names:
            raise ConfigError(
                f"ray: {ray_node} is labelled {NODE_LABEL}={labelled!r}, which is no node of distributed_config.json; "
                f"fix: use one of {', '.join(sorted(names))}, or add the node with its SSH details"
            )
        return labelled
    candidates = [name for name, addrs in addresses.items() if ray_node.address in addrs]
    if ray_node.node_id == local_node_id:
        candidates += [n.name for n in nodes if n.transport == "local"]
    if not candidates:
        raise ConfigError(
            f"ray: {ray_node} has no entry in distributed_config.json (no node's host is {ray_node.address}); "
            "fix: add it with its SSH details (health checks and cleanup go over SSH) or take it out of the Ray cluster"
        )
    if len(candidates) > 1:
        raise ConfigError(
            f"ray: {ray_node} could be any of {', '.join(sorted(candidates))} (same address); fix: label its raylet "
            f"with {NODE_LABEL} ({LABEL_FIX})"
        )
    return candidates[0]
