"""A fabric `Connection` to one node for `watcher deploy`, logged in exactly as the SSH transport logs in.

fabric's defaults would quietly differ from the transport: it reads ~/.ssh/config (which may change the
host, port or user) and auto-adds unknown host keys. Here its config is empty, and its paramiko client
trusts only the node's known_hosts and refuses unknown keys with the `ssh-keyscan` fix (`ssh_login`), after
the key-file check and over our own socket. Every command runs under coreutils `timeout` and `cd`s to the
home directory first (`build_remote_command`), so a client-side timeout also ends the remote process; the
file copy goes over SFTP (`Connection.put`). paramiko's and invoke's exceptions become ours here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import paramiko
from fabric import Config, Connection
from invoke.exceptions import CommandTimedOut

from cluster.config import NodeConfig, Timeouts
from cluster.errors import CommandTimeoutError, HostKeyError, TransportError
from cluster.transport.base import CommandResult
from cluster.transport.ssh import KILL_GRACE_S, TIMEOUT_EXIT, build_remote_command
from cluster.transport.ssh_login import (
    check_key_file,
    connect_error,
    known_hosts_path,
    login_kwargs,
    open_socket,
    trust_known_hosts,
)


class NodeLink:
    """Open with `open()` (or `with`); `run` a shell snippet, `put` a file; `close` when done."""

    def __init__(self, node: NodeConfig, timeouts: Timeouts) -> None:
        self.node = node
        self.timeouts = timeouts
        self.known_hosts = known_hosts_path(node)
        self.conn: Connection | None = None

    def open(self) -> None:
        node, limit = self.node, self.timeouts.connect
        check_key_file(node)
        sock = open_socket(node, limit)
        conn = Connection(
            node.host,
            user=node.user,
            port=node.port,
            config=Config(lazy=True, ssh_config=paramiko.SSHConfig()),  # no ~/.ssh/config, no fabric.yaml
            connect_timeout=int(limit) + 1,  # paramiko's start_client wait; the banner and auth get `limit`
            connect_kwargs=login_kwargs(node, sock, limit),
        )
        try:
            trust_known_hosts(conn.client, node, self.known_hosts)
            conn.open()
        except HostKeyError:
            sock.close()
            raise
        except (paramiko.SSHException, EOFError, OSError) as err:
            sock.close()
            raise connect_error(node, err, self.known_hosts, limit) from None
        self.conn = conn

    def _connection(self) -> Connection:
        if self.conn is None:
            raise TransportError(self.node.name, "not connected")
        return self.conn

    def run(self, body: str, *, timeout: float, shown: str, env: Mapping[str, str] | None = None) -> CommandResult:
        """Run shell `body` from the login directory, with the node's env and `env`; a non-zero exit is data."""
        line = build_remote_command(body, self.node, env, timeout, "~")
        started = time.monotonic()
        try:
            result = self._connection().run(
                line, hide=True, warn=True, in_stream=False, pty=False, timeout=timeout + KILL_GRACE_S + 3
            )
        except CommandTimedOut as err:
            raise CommandTimeoutError(self.node.name, shown, timeout, cause=err) from None
        except (paramiko.SSHException, EOFError, OSError) as err:
            raise TransportError(self.node.name, f"connection lost: {err or type(err).__name__}", cause=err) from None
        duration = time.monotonic() - started
        if result.exited == TIMEOUT_EXIT and duration >= timeout * 0.98:
            raise CommandTimeoutError(self.node.name, shown, timeout)
        return CommandResult(self.node.name, shown, int(result.exited), result.stdout, result.stderr, duration)

    def put(self, local: Path, remote: str) -> None:
        """Copy `local` to the absolute path `remote` over SFTP (the caller renames it into place)."""
        try:
            self._connection().put(str(local), remote=remote, preserve_mode=False)
        except (OSError, paramiko.SSHException, EOFError) as err:
            why = getattr(err, "strerror", None) or str(err) or type(err).__name__
            raise TransportError(self.node.name, f"cannot write {remote}: {why}", cause=err) from None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self) -> NodeLink:
        self.open()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
