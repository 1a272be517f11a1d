"""Runs commands on a rig over SSH (paramiko), with the guarantees a long unattended run needs.

- Connections are reused (a small pool per node: sshd's default MaxSessions is 10, a rig has 12 GPUs).
- TCP_NODELAY is set on our own socket: without it paramiko adds ~45 ms of Nagle delay per command.
- Host keys are verified against known_hosts; an unknown or changed key is refused with its fingerprint
  and the command that trusts it. Trust-on-first-use exists but must be switched on per node.
- Every remote command runs under coreutils `timeout`, so a client-side timeout also ends the remote
  process instead of leaving it to burn a GPU.
- paramiko's exceptions never escape the transport (this module, ssh_connect.py, which opens a connection,
  and ssh_session.py): they become our TransportError subclasses with the node named and the real cause kept
  (paramiko's own messages are often misleading).
- Files are copied through `cat` (no SFTP subsystem needed), streamed both ways: a file fetched from a node
  goes to disk as it arrives, never through the output cap a command's stdout has nor whole into memory.
"""

from __future__ import annotations

import logging
import os
import select
import shlex
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import paramiko

from cluster.config import NodeConfig, Timeouts
from cluster.errors import (
    CommandTimeoutError,
    FileTooLargeError,
    TransportError,
)
from cluster.files import atomic_file
from cluster.transport.base import (
    CappedBytes,
    Command,
    CommandResult,
    Executor,
    FileSink,
    Session,
    capped_stderr,
    capped_stdout,
    render_command,
)
from cluster.transport.ssh_connect import Connection, open_connection
from cluster.transport.ssh_session import SSHSession

Sink = CappedBytes | FileSink  # where a command's stdout goes: kept capped, or written to a file

# paramiko logs handshake failures with tracebacks from its own threads; we report them ourselves.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

SESSIONS_PER_CONNECTION = 8  # below sshd's default MaxSessions (10)
TIMEOUT_EXIT = 124  # coreutils timeout's exit status when it had to stop the command
KILL_GRACE_S = 2  # `timeout -k`: SIGKILL this long after SIGTERM


def remote_path(path: str) -> str:
    """Quote a path for the remote shell, keeping a leading `~/` meaning the login user's home."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def build_remote_command(
    cmd: Command, node: NodeConfig, env: Mapping[str, str] | None, timeout: float | None, cwd: str | None
) -> str:
    """`cd DIR && export K=V.. && exec timeout -k G T CMD`: every piece quoted; nothing runs as shell
    except `cmd` itself when it is given as a string (then under `sh -c`)."""
    # An argv needs no second shell (one exec less per command); a string is shell by contract.
    inner = render_command(cmd) if not isinstance(cmd, str) else f"sh -c {shlex.quote(cmd)}"
    merged = {**node.env, **(env or {})}
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in merged.items())
    limit = f"timeout -k {KILL_GRACE_S} {max(timeout, 0.001):.3f} " if timeout else ""
    exports = f"export {assignments} && " if assignments else ""  # the shell's own export: no `env` exec
    return f"cd {remote_path(cwd or node.workdir)} && {exports}exec {limit}{inner}"


class SSHExecutor(Executor):
    def __init__(self, node: NodeConfig, timeouts: Timeouts | None = None) -> None:
        super().__init__(node)
        self.timeouts = timeouts or Timeouts()
        self._pool: list[Connection] = []
        self._lock = threading.Lock()
        self.known_hosts = Path(os.path.expanduser(node.known_hosts or "~/.ssh/known_hosts"))

    # -- connections -------------------------------------------------------------------------------
    def _open(self) -> Connection:
        return open_connection(self.node, self.timeouts, self.known_hosts)

    def _acquire(self) -> Connection:
        with self._lock:
            self._pool = [c for c in self._pool if c.alive() or c.active]
            for conn in self._pool:
                if conn.alive() and conn.active < SESSIONS_PER_CONNECTION:
                    conn.active += 1
                    return conn
        conn = self._open()  # outside the lock: a slow node must not block other threads' commands
        with self._lock:
            conn.active += 1
            self._pool.append(conn)
        return conn

    def _release(self, conn: Connection) -> None:
        with self._lock:
            conn.active -= 1

    def connect(self) -> None:
        """Open (or check) a connection now: preflight uses it to test reachability and auth."""
        conn = self._acquire()
        self._release(conn)

    # -- commands ----------------------------------------------------------------------------------
    def _exec(
        self, line: str, stdin: bytes | Path | None, timeout: float | None, shown: str, out: Sink | None = None
    ) -> tuple[int, bytes, bytes, float]:
        """Run `line` over a new channel: (exit code, stdout, stderr, seconds). stdin: bytes, or a local file
        streamed in; out: where stdout goes (default: kept capped and returned; a file sink gets it all and
        b"" is returned)."""
        conn = self._acquire()
        started = time.monotonic()
        # Our own deadline sits after the remote `timeout` and its kill grace, so normally the remote
        # side reports first; ours only fires when the rig or the link stops answering.
        deadline = started + timeout + KILL_GRACE_S + 3 if timeout else None
        try:
            transport = conn.transport
            if transport is None:
                raise TransportError(self.name, "connection closed")
            try:
                chan = transport.open_session(timeout=self.timeouts.connect)
            except paramiko.ChannelException as err:
                raise TransportError(self.name, f"sshd refused a new session: {err}", cause=err) from None
            try:
                chan.exec_command(line)
                writer = self._start_writer(chan, stdin)
                sink = out if out is not None else capped_stdout()
                err = self._collect(chan, transport, deadline, shown, timeout, sink)
                kept = sink.value() if isinstance(sink, CappedBytes) and out is None else b""
                if writer is not None:
                    writer.join(timeout=1)
                code = chan.recv_exit_status()
                if code == -1:  # paramiko's value when the channel closed without an exit status
                    raise TransportError(self.name, "connection lost while the command was running")
            finally:
                chan.close()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            with self._lock:
                if not conn.alive():
                    conn.client.close()
            raise TransportError(self.name, f"connection lost: {exc or type(exc).__name__}", cause=exc) from None
        finally:
            self._release(conn)
        return code, kept, err, time.monotonic() - started

    @staticmethod
    def _start_writer(chan: paramiko.Channel, data: bytes | Path | None) -> threading.Thread | None:
        if not data:
            chan.shutdown_write()
            return None

        def write() -> None:
            try:
                if isinstance(data, Path):
                    with open(data, "rb") as fh:
                        for block in iter(lambda: fh.read(1 << 20), b""):
                            chan.sendall(block)
                else:
                    chan.sendall(data)
                chan.shutdown_write()
            except (OSError, EOFError, paramiko.SSHException):
                pass  # the reader sees the closed channel and reports it

        thread = threading.Thread(target=write, daemon=True, name="ssh-stdin")
        thread.start()
        return thread

    def _collect(
        self,
        chan: paramiko.Channel,
        transport: paramiko.Transport,
        deadline: float | None,
        shown: str,
        timeout: float | None,
        out: Sink,
    ) -> bytes:
        """Read stdout (into `out`) and stderr together, so neither pipe fills and deadlocks, until exit; what
        is kept of stderr is capped (a node is not trusted to be brief), and stdout too unless `out` is a file.
        Returns stderr."""
        err = capped_stderr()
        while True:
            busy = False
            while chan.recv_ready():
                out.feed(chan.recv(1 << 20))
                busy = True
            while chan.recv_stderr_ready():
                err.feed(chan.recv_stderr(1 << 20))
                busy = True
            if busy:
                continue
            if chan.exit_status_ready() and chan.eof_received:
                return err.value()
            if chan.closed or not transport.is_active():
                if chan.exit_status_ready():
                    return err.value()
                raise TransportError(self.name, "connection lost while the command was running")
            wait = 0.5
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    raise CommandTimeoutError(self.name, shown, timeout or 0.0)
            if chan.eof_received:
                wait = min(wait, 0.01)  # output done; the exit status follows right away
            select.select([chan], [], [], wait)

    def run(
        self,
        cmd: Command,
        *,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        cwd: str | None = None,
    ) -> CommandResult:
        shown = render_command(cmd)
        limit = timeout if timeout is not None else self.timeouts.command
        line = build_remote_command(cmd, self.node, env, limit, cwd)
        data = stdin.encode() if isinstance(stdin, str) else stdin
        code, out, err, duration = self._exec(line, data, limit, shown)
        if code == TIMEOUT_EXIT and duration >= limit * 0.98:
            raise CommandTimeoutError(self.name, shown, limit)
        return CommandResult(
            node=self.name,
            command=shown,
            exit_code=code,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
            duration_s=duration,
        )

    def start(
        self,
        cmd: Command,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        cwd: str | None = None,
    ) -> Session:
        shown = render_command(cmd)
        line = build_remote_command(cmd, self.node, env, timeout, cwd)
        conn = self._acquire()
        released = threading.Event()

        def release() -> None:
            if not released.is_set():
                released.set()
                self._release(conn)

        try:
            transport = conn.transport
            if transport is None:
                raise TransportError(self.name, "connection closed")
            try:
                chan = transport.open_session(timeout=self.timeouts.connect)
            except paramiko.ChannelException as err:
                raise TransportError(self.name, f"sshd refused a new session: {err}", cause=err) from None
            chan.exec_command(line)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            release()
            with self._lock:
                if not conn.alive():
                    conn.client.close()
            raise TransportError(self.name, f"connection lost: {exc or type(exc).__name__}", cause=exc) from None
        except BaseException:
            release()
            raise
        return SSHSession(self.name, shown, chan, release)

    # -- files -------------------------------------------------------------------------------------
    def put(self, local: Path, remote: str) -> None:
        """Stream the file through `cat` into a temp name, then `mv`: no SFTP subsystem needed, and a
        reader never sees a half-written file."""
        data = Path(local)
        if not data.is_file():
            raise TransportError(self.name, f"cannot put {local}: not a readable file")
        target = remote_path(remote)
        tmp = remote_path(f"{remote}.tmp-{os.getpid()}-{threading.get_ident()}")
        line = f'mkdir -p "$(dirname {target})" && cat > {tmp} && mv -f {tmp} {target}'
        code, _out, err, _ = self._exec(line, data, self.timeouts.command, f"put {remote}")
        if code != 0:
            raise TransportError(self.name, f"cannot write {remote}: {err.decode(errors='replace').strip()}")

    def get(self, remote: str, local: Path, *, max_bytes: int | None = None) -> None:
        """`cat` the file into a local temp file as it arrives (never through the output cap a command's
        stdout has, never whole in memory), then rename; a file over `max_bytes` is refused, by its size
        before the copy and by the bytes counted during it."""
        path = remote_path(remote)
        line = f"cat {path}" if max_bytes is None else (
            f'size=$(wc -c < {path}) || exit 1; [ "$size" -le {int(max_bytes)} ] || {{ echo "too large: $size" >&2; '
            f"exit 3; }}; exec cat {path}"
        )  # fmt: skip
        with atomic_file(local) as fh:
            sink = FileSink(fh, self.name, remote, max_bytes)
            code, _out, err, _ = self._exec(line, None, self.timeouts.command, f"get {remote}", sink)
            said = err.decode(errors="replace").strip()
            if code == 3 and said.startswith("too large: ") and said.split()[-1].isdigit() and max_bytes is not None:
                raise FileTooLargeError(self.name, remote, int(said.split()[-1]), max_bytes)
            if code != 0:
                raise TransportError(self.name, f"cannot read {remote}: {said}")

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, []
        for conn in pool:
            conn.client.close()
