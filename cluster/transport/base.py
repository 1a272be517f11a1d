"""The one transport interface: run a command on a node, copy files to and from it.

Results are values (like fabric/invoke's Result): a non-zero exit code is data, not an exception.
Exceptions are only for "could not run it at all" (unreachable, auth, host key) and timeouts, and are
always our own `TransportError` subclasses naming the node.
"""

from __future__ import annotations

import queue
import shlex
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cluster.config import NodeConfig
from cluster.errors import FileTooLargeError, TransportError

Command = str | Sequence[str]


def render_command(cmd: Command) -> str:
    """A shell command line: a sequence is quoted argument by argument, a string is taken as shell."""
    if isinstance(cmd, str):
        return cmd
    return shlex.join([str(arg) for arg in cmd])


@dataclass(frozen=True)
class CommandResult:
    node: str
    command: str
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def tail(self, stream: str = "stderr", lines: int = 20) -> str:
        text = self.stderr if stream == "stderr" else self.stdout
        return "\n".join(text.splitlines()[-lines:])


class Session(ABC):
    """A command started with `Executor.start` and left running: its stdin stays open for more input, and its
    output comes back as events, one per line, as it arrives (the long-lived slot workers use this).

    Events, read with `read(timeout)`: ("out", line) and ("err", line) without the newline, then exactly one
    ("exit", code) once the process has ended and its output is drained; code is None when the connection
    was lost, negative (-signal) for a local process ended by a signal. Implementations push events from
    their own reader threads; `write` raises TransportError when the process or the link is gone.
    """

    def __init__(self, node: str, command: str) -> None:
        self.node = node
        self.command = command
        self.exit_code: int | None = None
        self.timed_out = False  # the session's own deadline (its `timeout` argument) ended it
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._ended = threading.Event()

    def read(self, timeout: float | None) -> tuple[str, Any] | None:
        """The next event, or None if none came within `timeout` seconds."""
        try:
            return self._events.get(timeout=None if timeout is None else max(timeout, 0.0))
        except queue.Empty:
            return None

    def push_back(self, event: tuple[str, Any]) -> None:
        """Return an event read too early; the next `read` sees it again (after any already queued)."""
        self._events.put(event)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the process to end (without consuming events); True once it has."""
        return self._ended.wait(timeout)

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def _push(self, kind: str, value: Any) -> None:
        self._events.put((kind, value))

    def _finish(self, code: int | None) -> None:
        if not self._ended.is_set():
            self.exit_code = code
            self._ended.set()
            self._events.put(("exit", code))

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Send bytes to the process's stdin."""

    @abstractmethod
    def close_stdin(self) -> None:
        """End of input: a well-behaved worker exits when it reads EOF."""

    @abstractmethod
    def kill(self) -> None:
        """End the process now (locally its whole process group; remotely its channel); idempotent."""


# What the coordinator keeps of a node's output: a node is not trusted to be brief. A command's stdout keeps
# its head and tail (the answer is the last line), stderr likewise, a session's line its head; what is cut
# is said in place, so the evidence stays readable and the coordinator's memory stays bounded.
STDOUT_HEAD, STDOUT_TAIL = 1 << 20, 15 << 20
STDERR_HEAD, STDERR_TAIL = 64 << 10, 192 << 10
MAX_LINE_BYTES = 8 << 20


class CappedBytes:
    """A byte stream kept as its first `head` and last `tail` bytes, with the count of what fell between."""

    def __init__(self, head: int, tail: int) -> None:
        self.head_limit, self.tail_limit = head, tail
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_limit - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if data:
            self._tail += data
            if len(self._tail) > 2 * self.tail_limit:  # trim in batches, not on every read
                del self._tail[: len(self._tail) - self.tail_limit]

    @property
    def cut(self) -> int:
        return max(0, self.total - len(self._head) - min(len(self._tail), self.tail_limit))

    def value(self) -> bytes:
        tail = bytes(self._tail[-self.tail_limit :]) if self.tail_limit else b""
        if not self.cut:
            return bytes(self._head) + tail
        return bytes(self._head) + f"\n[... {self.cut} bytes cut by watcher ...]\n".encode() + tail


def capped_stdout() -> CappedBytes:
    return CappedBytes(STDOUT_HEAD, STDOUT_TAIL)


def capped_stderr() -> CappedBytes:
    return CappedBytes(STDERR_HEAD, STDERR_TAIL)


class FileSink:
    """A file copied from a node, written as it arrives (never held in memory) and refused past `limit`
    bytes: `feed` raises FileTooLargeError as soon as the copy grows past it."""

    def __init__(self, fh: IO[bytes], node: str, path: str, limit: int | None) -> None:
        self.fh, self.node, self.path, self.limit = fh, node, path, limit
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        if self.limit is not None and self.total > self.limit:
            raise FileTooLargeError(self.node, self.path, self.total, self.limit)
        self.fh.write(data)


class LineSplitter:
    """Turns chunks of bytes into complete lines for a session's events (a partial line waits for more).
    A line longer than `limit` bytes is cut to its head, marked, and the rest of it dropped as it arrives."""

    def __init__(self, push: Any, kind: str, limit: int = MAX_LINE_BYTES) -> None:
        self._push = push
        self._kind = kind
        self._buf = b""
        self._limit = limit
        self._dropped = 0  # bytes of the current over-long line thrown away so far

    def feed(self, data: bytes) -> None:
        while data:
            newline = data.find(b"\n")
            piece, data = (data, b"") if newline < 0 else (data[: newline + 1], data[newline + 1 :])
            if self._dropped:
                self._dropped += len(piece)
            else:
                self._buf += piece
                if len(self._buf) > self._limit:
                    self._dropped = len(self._buf) - self._limit
                    self._buf = self._buf[: self._limit]
            if newline >= 0:
                self._emit()

    def _emit(self) -> None:
        line = self._buf.rstrip(b"\n").decode("utf-8", "replace").rstrip("\r")
        if self._dropped:
            line += f" [... {self._dropped} bytes cut by watcher ...]"
        self._buf, self._dropped = b"", 0
        self._push(self._kind, line)

    def close(self) -> None:
        if self._buf or self._dropped:
            self._emit()


class Executor(ABC):
    """Runs commands on one node. Implementations must be safe to use from several threads at once."""

    def __init__(self, node: NodeConfig) -> None:
        self.node = node

    @property
    def name(self) -> str:
        return self.node.name

    @abstractmethod
    def run(
        self,
        cmd: Command,
        *,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        cwd: str | None = None,
    ) -> CommandResult:
        """Run `cmd`; `env` is added to the node's environment; on timeout the process (remote too)
        is ended and `CommandTimeoutError` raised."""

    @abstractmethod
    def put(self, local: Path, remote: str) -> None:
        """Copy a local file to `remote` atomically (temp name, then rename), creating parent dirs; streamed,
        never read into memory whole."""

    @abstractmethod
    def get(self, remote: str, local: Path, *, max_bytes: int | None = None) -> None:
        """Copy a remote file to `local` atomically, byte for byte and streamed to disk (the coordinator's
        memory stays bounded whatever the size); a file over `max_bytes` raises FileTooLargeError and leaves
        nothing at `local` (None: no limit)."""

    def start(
        self,
        cmd: Command,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        cwd: str | None = None,
    ) -> Session:
        """Start `cmd` and return at once with a `Session` (stdin open, output streamed as lines); `timeout`
        bounds the whole process's life (remotely through coreutils `timeout`, as `run` does)."""
        raise NotImplementedError(f"{type(self).__name__} cannot start long-lived sessions")

    def node_path(self, path: str) -> str:
        """A path as every command on the node must see it: relative paths under the node's workdir, and a
        leading `~` replaced by the node user's home, asked once (a quoted `~` is never expanded by a shell)."""
        path = self.node.path_on_node(path)
        if path == "~" or path.startswith("~/"):
            home = getattr(self, "_home", None)
            if home is None:
                home = self._home = self._ask_home()
            path = home.rstrip("/") + path[1:]
        return path

    def _ask_home(self) -> str:
        res = self.run(["sh", "-c", 'printf %s "$HOME"'], timeout=30)
        home = res.stdout.strip()
        if not res.ok or not home.startswith("/"):
            raise TransportError(self.name, f"cannot resolve ~ on the node (HOME={home!r}); fix: use an absolute path")
        return home

    def connect(self) -> None:  # noqa: B027 - optional hook, a no-op where nothing connects
        """Make sure the node can be reached and we are let in (preflight's reachability check).
        Transports without connections have nothing to check."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the executor may be used again afterwards (it reconnects)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
