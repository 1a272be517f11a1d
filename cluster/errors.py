"""The one exception hierarchy of watcher, and the process exit codes it maps to.

Every layer raises these (never a bare third-party exception past its boundary), so the CLIs can
turn any failure into one clear line and the documented exit code. It lives in the bottom layer
because every layer above may raise or catch it.
"""

from __future__ import annotations

# Exit codes (sysexits.h where one fits): documented in the README, relied on by cron wrappers.
EXIT_OK = 0
EXIT_FAILED = 1  # a step failed or the run escalated
EXIT_USAGE = 2  # bad command-line arguments
EXIT_PREFLIGHT = 69  # EX_UNAVAILABLE: a preflight check failed
EXIT_LOCKED = 75  # EX_TEMPFAIL: another run holds the state directory
EXIT_CONFIG = 78  # EX_CONFIG: a configuration file is invalid


class WatcherError(Exception):
    """Base of every error watcher raises on purpose; `str()` is the one-line message for operators."""

    exit_code: int = EXIT_FAILED


class ConfigError(WatcherError):
    """A config, pipeline spec or input file is invalid; the message names the file, field and fix."""

    exit_code = EXIT_CONFIG


class UsageError(WatcherError):
    """Command-line arguments that cannot be acted on."""

    exit_code = EXIT_USAGE


class TransportError(WatcherError):
    """A command could not be run on a node; keeps the node name and the underlying cause."""

    def __init__(self, node: str, message: str, *, cause: BaseException | None = None) -> None:
        super().__init__(f"{node}: {message}")
        self.node = node
        self.reason = message
        self.cause = cause


class NodeUnreachableError(TransportError):
    """TCP connect refused or timed out, or no SSH banner: the node is down, hung or firewalled."""


class AuthenticationError(TransportError):
    """The node answered but refused our credentials."""


class HostKeyError(TransportError):
    """The node's host key is unknown or changed; refused unless explicitly trusted."""


class CommandTimeoutError(TransportError):
    """A command ran past its timeout; the remote process was ended too."""

    def __init__(self, node: str, command: str, timeout: float, *, cause: BaseException | None = None) -> None:
        super().__init__(node, f"command timed out after {timeout:g} s: {command}", cause=cause)
        self.command = command
        self.timeout = timeout


class FileTooLargeError(TransportError):
    """A file fetched from a node is larger than the caller allows (`Executor.get(max_bytes=...)`); nothing
    is written locally."""

    def __init__(self, node: str, path: str, size: int, limit: int) -> None:
        super().__init__(
            node, f"{path} is {size} bytes or more, over the limit of {limit} bytes; nothing was copied (raise the "
            "caller's limit, e.g. scheduler.fetch_max_bytes, or have the job write a smaller result)",
        )  # fmt: skip
        self.path = path
        self.size = size
        self.limit = limit


class StoreError(WatcherError):
    """The run store is damaged, newer than this version, or otherwise unusable."""


class StoreNotCreatedError(StoreError):
    """The run store's file exists but holds no schema yet: a writer is creating it (or died doing so). A
    reader treats it as no store; the next writer creates the schema."""


class PreflightError(WatcherError):
    """A preflight check failed: the run must not start."""

    exit_code = EXIT_PREFLIGHT


class SchedulingError(WatcherError):
    """Work could not be completed on the cluster (chunk out of retries, too few usable slots)."""


class StepError(WatcherError):
    """A pipeline step failed or its outputs are missing, stale or invalid."""


class AdvisorError(WatcherError):
    """An advisor could not produce a usable answer (the caller falls back to the rules)."""


class LockHeldError(WatcherError):
    """Another watcher run holds the state directory's lock."""

    exit_code = EXIT_LOCKED


class HaltRequested(WatcherError):
    """The operator asked the run to stop (halt file present)."""
