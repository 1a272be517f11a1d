"""Logging in to a node over SSH, as every SSH client of ours does it: the transport (`ssh.py`) and
`watcher deploy` (fabric) open their paramiko clients through these, so a rig is refused or reached for
the same reasons, with the same one-line messages and fixes.

- the key file is refused when others can read it (as OpenSSH does), with the `chmod` that fixes it;
- the TCP connection is ours (TCP_NODELAY: without it paramiko adds ~45 ms of Nagle delay per command);
- host keys come from the node's known_hosts only, unknown keys are refused (`ssh_keys.HostKeyPolicy`);
- paramiko's exceptions become our TransportError subclasses naming the node (`connect_error`).
"""

from __future__ import annotations

import os
import shlex
import socket
from pathlib import Path
from typing import Any

import paramiko

from cluster.config import NodeConfig
from cluster.errors import AuthenticationError, HostKeyError, NodeUnreachableError, TransportError
from cluster.transport.ssh_keys import HostKeyPolicy, fingerprint, known_hosts_name


def known_hosts_path(node: NodeConfig) -> Path:
    return Path(os.path.expanduser(node.known_hosts or "~/.ssh/known_hosts"))


def check_key_file(node: NodeConfig) -> None:
    """Refuse a private key others can read, as OpenSSH does, with the command that fixes it."""
    if not node.key_file:
        return
    path = os.path.expanduser(node.key_file)
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError as err:
        raise AuthenticationError(node.name, f"cannot read key_file {path}: {err.strerror}", cause=err) from None
    if mode & 0o077:
        raise AuthenticationError(
            node.name,
            f"key_file {path} is readable by group or others (mode {mode:o}); fix: chmod 600 {shlex.quote(path)}",
        )


def open_socket(node: NodeConfig, limit: float) -> socket.socket:
    """The TCP connection to the node's sshd, within `limit` seconds, with Nagle off."""
    try:
        sock = socket.create_connection((node.host, node.port), timeout=limit)
    except TimeoutError as err:
        raise NodeUnreachableError(node.name, f"TCP connect timed out after {limit:g} s", cause=err) from None
    except ConnectionRefusedError as err:
        raise NodeUnreachableError(
            node.name, f"connection refused on port {node.port} (is sshd running?)", cause=err
        ) from None
    except OSError as err:
        raise NodeUnreachableError(node.name, f"cannot connect: {err.strerror or err}", cause=err) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def trust_known_hosts(client: paramiko.SSHClient, node: NodeConfig, known_hosts: Path) -> None:
    """Only the node's known_hosts is trusted (never ~/.ssh/config or an auto-add policy, fabric's default)."""
    if known_hosts.exists():
        try:
            client.load_host_keys(str(known_hosts))
        except (OSError, paramiko.SSHException) as err:
            raise HostKeyError(node.name, f"cannot read {known_hosts}: {err}", cause=err) from None
    client.set_missing_host_key_policy(HostKeyPolicy(node, known_hosts))


def login_kwargs(node: NodeConfig, sock: socket.socket, remaining: float) -> dict[str, Any]:
    """`SSHClient.connect` arguments besides host, port, user and timeout: our socket, the node's key only."""
    return {
        "key_filename": os.path.expanduser(node.key_file) if node.key_file else None,
        "sock": sock,
        "banner_timeout": remaining,
        "auth_timeout": remaining,
        "allow_agent": False,
        "look_for_keys": node.key_file is None,
    }


def connect_error(node: NodeConfig, err: BaseException, known_hosts: Path, limit: float) -> TransportError:
    """What a failed `SSHClient.connect` means, as one of our errors with the fix in its message."""
    if isinstance(err, paramiko.BadHostKeyException):
        return HostKeyError(
            node.name,
            f"host key CHANGED: got {err.key.get_name()} {fingerprint(err.key)}, known_hosts has "
            f"{fingerprint(err.expected_key)}; if the rig was reinstalled, remove the old entry: "
            f"ssh-keygen -R '{known_hosts_name(node.host, node.port)}' -f {known_hosts}",
            cause=err,
        )
    if isinstance(err, paramiko.AuthenticationException):
        who = f"{node.user or '(current user)'}@{node.host}"
        return AuthenticationError(
            node.name, f"authentication failed for {who}: {err}; check key_file {node.key_file}", cause=err
        )
    text = str(err)
    if "banner" in text.lower() or isinstance(err, TimeoutError):
        login = f"{node.user}@{node.host}" if node.user else node.host
        message = f"no SSH banner within {limit:g} s: is the rig up? try: ssh -p {node.port} {login} true"
    else:
        message = f"SSH handshake failed: {text or type(err).__name__}"
    return NodeUnreachableError(node.name, message, cause=err)
