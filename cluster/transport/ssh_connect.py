"""Opening one SSH connection to a rig (paramiko): TCP with TCP_NODELAY, host keys checked against
known_hosts (ssh_keys.py), key files readable by others refused, and every paramiko failure turned into our
TransportError subclasses with the node named and the real cause kept (paramiko's own messages are often
misleading). ssh.py pools these connections and runs commands over them.
"""

from __future__ import annotations

import os
import shlex
import socket
import time
from pathlib import Path

import paramiko

from cluster.config import NodeConfig, Timeouts
from cluster.errors import AuthenticationError, HostKeyError, NodeUnreachableError
from cluster.transport.ssh_keys import HostKeyPolicy, fingerprint, known_hosts_name


class Connection:
    """One authenticated paramiko transport and how many sessions run on it right now."""

    def __init__(self, client: paramiko.SSHClient) -> None:
        self.client = client
        self.active = 0

    @property
    def transport(self) -> paramiko.Transport | None:
        return self.client.get_transport()

    def alive(self) -> bool:
        transport = self.transport
        return transport is not None and transport.is_active()


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


def open_connection(node: NodeConfig, timeouts: Timeouts, known_hosts: Path) -> Connection:
    limit = timeouts.connect
    check_key_file(node)
    deadline = time.monotonic() + limit
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
    client = paramiko.SSHClient()
    if known_hosts.exists():
        try:
            client.load_host_keys(str(known_hosts))
        except (OSError, paramiko.SSHException) as err:
            sock.close()
            raise HostKeyError(node.name, f"cannot read {known_hosts}: {err}", cause=err) from None
    client.set_missing_host_key_policy(HostKeyPolicy(node, known_hosts))
    remaining = max(deadline - time.monotonic(), 0.05)
    try:
        client.connect(
            hostname=node.host,
            port=node.port,
            username=node.user,
            key_filename=os.path.expanduser(node.key_file) if node.key_file else None,
            sock=sock,
            # start_client() returns silently when *its* timeout passes first, and paramiko then
            # reports "No existing session"; give it a second more so the banner error surfaces.
            timeout=remaining + 1.0,
            banner_timeout=remaining,
            auth_timeout=remaining,
            allow_agent=False,
            look_for_keys=node.key_file is None,
        )
    except HostKeyError:
        sock.close()
        raise
    except paramiko.BadHostKeyException as err:
        sock.close()
        raise HostKeyError(
            node.name,
            f"host key CHANGED: got {err.key.get_name()} {fingerprint(err.key)}, known_hosts has "
            f"{fingerprint(err.expected_key)}; if the rig was reinstalled, remove the old entry: "
            f"ssh-keygen -R '{known_hosts_name(node.host, node.port)}' -f {known_hosts}",
            cause=err,
        ) from None
    except paramiko.AuthenticationException as err:
        sock.close()
        who = f"{node.user or '(current user)'}@{node.host}"
        raise AuthenticationError(
            node.name, f"authentication failed for {who}: {err}; check key_file {node.key_file}", cause=err
        ) from None
    except (paramiko.SSHException, EOFError, OSError) as err:
        sock.close()
        text = str(err)
        if "banner" in text.lower() or isinstance(err, TimeoutError):
            login = f"{node.user}@{node.host}" if node.user else node.host
            message = f"no SSH banner within {limit:g} s: is the rig up? try: ssh -p {node.port} {login} true"
        else:
            message = f"SSH handshake failed: {text or type(err).__name__}"
        raise NodeUnreachableError(node.name, message, cause=err) from None
    transport = client.get_transport()
    if transport is not None and timeouts.keepalive:
        transport.set_keepalive(int(timeouts.keepalive))
    return Connection(client)
