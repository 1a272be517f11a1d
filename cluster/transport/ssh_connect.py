"""Opening one SSH connection to a rig (paramiko) for the transport: the login itself is `ssh_login.py`'s,
shared with `watcher deploy` (TCP_NODELAY, host keys from known_hosts only, key files readable by others
refused, paramiko's failures as our TransportError subclasses naming the node); ssh.py pools these
connections and runs commands over them.
"""

from __future__ import annotations

import time
from pathlib import Path

import paramiko

from cluster.config import NodeConfig, Timeouts
from cluster.errors import HostKeyError
from cluster.transport.ssh_login import check_key_file, connect_error, login_kwargs, open_socket, trust_known_hosts


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


def open_connection(node: NodeConfig, timeouts: Timeouts, known_hosts: Path) -> Connection:
    limit = timeouts.connect
    check_key_file(node)
    deadline = time.monotonic() + limit
    sock = open_socket(node, limit)
    client = paramiko.SSHClient()
    try:
        trust_known_hosts(client, node, known_hosts)
        remaining = max(deadline - time.monotonic(), 0.05)
        # start_client() returns silently when *its* timeout passes first, and paramiko then reports
        # "No existing session"; give it a second more so the banner error surfaces.
        client.connect(
            hostname=node.host, port=node.port, username=node.user, timeout=remaining + 1.0,
            **login_kwargs(node, sock, remaining),
        )  # fmt: skip
    except HostKeyError:
        sock.close()
        raise
    except (paramiko.SSHException, EOFError, OSError) as err:
        sock.close()
        raise connect_error(node, err, known_hosts, limit) from None
    transport = client.get_transport()
    if transport is not None and timeouts.keepalive:
        transport.set_keepalive(int(timeouts.keepalive))
    return Connection(client)
