"""The worker protocol, in one module both ends import: `pipeline.worker` (the worker side, on a node) and
`cluster.scheduler` (the coordinator side). It lives in cluster/ because cluster/ cannot import pipeline/.

One-shot mode (a process per chunk): the job is one JSON object on stdin, the answer one JSON line on stdout
(`Reply` fields at least), exit `EXIT_OK`, `EXIT_BAD_JOB` (the job is invalid: not retried) or
`EXIT_UNEXPECTED`. Serve mode (`SERVE_FLAG`, one worker per slot): the worker says `Hello` first, then reads
one `Envelope` per line and answers each with one `Frame` whose `stdout` is what one-shot mode would have
printed, so both modes are judged by the same code; `Heartbeat`s come every `ENV_HEARTBEAT` seconds from a
background thread. A marker line on stderr (`STDERR_MARK` + seq) ends one job's share of stderr.

Both sides check identity the same way: the coordinator refuses a worker whose `protocol` differs from
`PROTOCOL` or whose version is older than its own (`refusal`), at the hello in serve mode and on the answer
in one-shot mode. The version a worker reports comes from `cluster.files.installed_version`, one function
for both ends.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

PROTOCOL = 1
SERVE_FLAG = "--serve"
STDERR_MARK = "\x1fwatcher-done "
EXIT_OK, EXIT_UNEXPECTED, EXIT_BAD_JOB = 0, 1, 2

# What the coordinator tells a worker through its environment.
ENV_SLOT = "WATCHER_SLOT"  # "node:gpu"
ENV_CHUNK_ID = "WATCHER_CHUNK_ID"
ENV_ATTEMPT = "WATCHER_ATTEMPT"
ENV_HEARTBEAT = "WATCHER_HEARTBEAT_S"  # serve mode: seconds between heartbeats
ENV_COORDINATOR_VERSION = "WATCHER_COORDINATOR_VERSION"


def count(value: Any) -> int:
    """A count a node reports (progress, bytes): anything but a non-negative int reads as 0 (a node's word
    is not trusted, and a bad count must not fail the chunk)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    def line(self) -> str:
        """The message as one protocol line (newline included)."""
        return self.model_dump_json() + "\n"


class Hello(_Message):
    hello: Literal[True] = True
    version: str
    pid: int
    pgid: int
    mem_total: int = 0
    protocol: int | None = None  # None: a worker from before the number was said; refused

    _count = field_validator("mem_total", mode="before")(classmethod(lambda cls, v: count(v)))


class Heartbeat(_Message):
    heartbeat: Literal[True] = True
    progress: int = 0
    elapsed: float = 0.0
    busy: bool = False

    _count = field_validator("progress", mode="before")(classmethod(lambda cls, v: count(v)))

    @field_validator("elapsed", mode="before")
    @classmethod
    def _elapsed(cls, value: Any) -> float:
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0

    @field_validator("busy", mode="before")
    @classmethod
    def _busy(cls, value: Any) -> bool:
        return value is True


class Envelope(_Message):
    seq: int
    chunk_id: str = ""
    attempt: int = 0
    job: Any


class Frame(_Message):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)
    done: int
    exit: int
    stdout: str
    rss: int = 0

    _count = field_validator("rss", mode="before")(classmethod(lambda cls, v: count(v)))


class Reply(_Message):
    """The fields every one-shot answer carries (a workload's handler adds its own on success)."""

    ok: bool
    error: str | None = None
    worker_version: str | None = None
    protocol: int | None = None


class Malformed(ValueError):
    """A line that is JSON and names a message, but breaks its schema (e.g. a frame without an exit code)."""


Message = Hello | Heartbeat | Frame


def read_message(line: str) -> Message | dict[str, Any] | None:
    """One line from a serve-mode worker: a `Hello`, `Heartbeat` or `Frame`; any other JSON object as a dict
    (a stray line the coordinator may ignore); None for a line outside the protocol (not a JSON object).
    Raises Malformed for a message that breaks its schema."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    for key, model in (("done", Frame), ("heartbeat", Heartbeat), ("hello", Hello)):
        if value.get(key) is not None and value.get(key) is not False:
            try:
                return model.model_validate(value)
            except ValidationError as err:
                raise Malformed(f"{key} message breaks the protocol: {json.dumps(value)[:200]}") from err
    return value


def version_older(worker: str, coordinator: str) -> bool:
    """Whether the worker's version is older than the coordinator's (PEP 440 order; versions that do not parse
    compare as older only when they are not the same string)."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(worker) < Version(coordinator)
    except InvalidVersion:
        return worker != coordinator


def refusal(protocol: Any, version: Any, coordinator: str, where: str, node: str) -> str | None:
    """Why the coordinator must not use a worker that reports `protocol` and `version` (None: it may). A
    one-shot answer without them (an error raised before the worker knew its version) is not refused."""
    if protocol is not None and protocol != PROTOCOL:
        return (
            f"the worker on {where} speaks worker protocol {protocol!r}, the coordinator {PROTOCOL} (watcher "
            f"{coordinator}): install watcher {coordinator} on {node}"
        )
    if version is not None and version_older(str(version), coordinator):
        return (
            f"the worker on {where} runs watcher {version}, older than the coordinator's {coordinator}: "
            f"install watcher {coordinator} on {node}"
        )
    return None
