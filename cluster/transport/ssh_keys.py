"""Host keys for the SSH transport: fingerprints as OpenSSH prints them, and the policy for keys not in
known_hosts (refused with the command that trusts them, or, opt-in, trusted on first use and recorded)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import paramiko

from cluster.config import NodeConfig
from cluster.errors import HostKeyError


def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown keys with an actionable message, or (opt-in) trust and record them."""

    def __init__(self, node: NodeConfig, known_hosts: Path) -> None:
        self.node = node
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if self.node.trust_on_first_use:
            client.get_host_keys().add(hostname, key.get_name(), key)
            self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            with self.known_hosts.open("a", encoding="utf-8") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
            return
        raise HostKeyError(
            self.node.name,
            f"unknown host key {key.get_name()} {fingerprint(key)} for {hostname}; if that is the rig, trust it: "
            f"ssh-keyscan -p {self.node.port} {self.node.host} >> {self.known_hosts}",
        )
