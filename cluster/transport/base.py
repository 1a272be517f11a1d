"""The one transport interface: run a command on a node, copy files to and from it.

Results are values (like fabric/invoke's Result): a non-zero exit code is data, not an exception.
Exceptions are only for "could not run it at all" (unreachable, auth, host key) and timeouts, and are
always our own `TransportError` subclasses naming the node.
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cluster.config import NodeConfig

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
        """Copy a local file to `remote` atomically (temp name, then rename), creating parent dirs."""

    @abstractmethod
    def get(self, remote: str, local: Path) -> None:
        """Copy a remote file to `local` atomically."""

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
