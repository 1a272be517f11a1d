"""What a runner keeps of a worker's stderr while a chunk runs, the same for every runner.

A per-chunk process's stderr is all its chunk's; a slot worker's runs on from chunk to chunk, and the worker
ends each chunk's share with a marker line (`cluster.protocol.STDERR_MARK` + seq). Either way a failure
carries the last `STDERR_TAIL_LINES` lines, and what is kept is bounded in bytes (a node is not trusted to be
brief: `capped_stderr`'s head and tail, lines cut at the transport's `MAX_LINE_BYTES`).
"""

from __future__ import annotations

import time
from collections import deque

from loguru import logger

from cluster.protocol import STDERR_MARK, Heartbeat, Malformed, read_message
from cluster.scheduler.attempt import STDERR_TAIL_LINES
from cluster.transport.base import CappedBytes, Session, capped_stderr

STDERR_KEEP = 400  # lines of one chunk's stderr a slot worker's runner keeps


class ChunkStderr:
    """One chunk's stderr lines. `begin(seq)` starts a chunk; `feed` keeps a line, and tells the marker
    that ends chunk `seq` (a marker of an earlier chunk, come late, drops what came before it)."""

    def __init__(self, keep: int = STDERR_KEEP) -> None:
        self.lines: deque[str] = deque(maxlen=keep)
        self.seq = 0
        self.marked = 0  # the last chunk whose end marker has come

    def begin(self, seq: int) -> None:
        self.seq = seq
        self.lines.clear()

    def clear(self) -> None:
        self.lines.clear()

    def feed(self, line: str) -> bool:
        """Keep a line; True for a marker line (never kept)."""
        if line.startswith(STDERR_MARK):
            if line[len(STDERR_MARK) :].strip() == str(self.seq):
                self.marked = self.seq
            else:
                self.lines.clear()  # the end of an earlier chunk's stderr, come late: not this chunk's
            return True
        self.lines.append(line)
        return False

    def ended(self, seq: int) -> bool:
        return self.marked >= seq

    def tail(self) -> str:
        return "\n".join(list(self.lines)[-STDERR_TAIL_LINES:])


def tail_until(session: Session, stderr: ChunkStderr, seq: int, wait: float) -> str:
    """Chunk `seq`'s stderr tail, once its end marker has come (bounded wait: stderr and stdout are two
    streams, so the marker may arrive just after the answer). An exit read meanwhile is put back."""
    deadline = time.monotonic() + wait
    while not stderr.ended(seq):
        event = session.read(deadline - time.monotonic())
        if event is None:
            break
        kind, value = event
        if kind == "err":
            stderr.feed(value)
        elif kind == "exit":
            session.push_back(event)  # keep it for the next chunk to see
            break
    return stderr.tail()


def drain(session: Session, stderr: ChunkStderr) -> None:
    """Keep the stderr lines already read back (after the worker ended)."""
    while (event := session.read(0)) is not None:
        if event[0] == "err":
            stderr.feed(event[1])


def drain_idle(session: Session, stderr: ChunkStderr, who: str) -> bool:
    """Before a chunk: drop what a slot worker said while it had none (heartbeats of an idle worker kept
    between calls, the tail of an earlier chunk's stderr), so the chunk's record holds only its own. False
    when it wrote a line outside the protocol meanwhile (it is not trusted with the chunk). An exit read here
    stays in the session's state (`ended`): the caller starts a new worker."""
    clean = True
    while (event := session.read(0)) is not None:
        kind, value = event
        if kind == "exit":
            break
        if kind == "out" and clean and not _is_heartbeat(value):
            logger.warning(f"slot worker {who} wrote {value[:200]!r} while idle: replaced")
            clean = False
    stderr.clear()
    return clean


def _is_heartbeat(line: str) -> bool:
    try:
        return isinstance(read_message(line), Heartbeat)
    except Malformed:
        return False


class ProcessOutput:
    """All of a per-chunk process's output, capped like a command's (`CommandResult`): stdout's head and tail
    (the answer is the last line) and stderr's."""

    def __init__(self, stdout: CappedBytes) -> None:
        self.out = stdout
        self.err = capped_stderr()

    def feed(self, kind: str, line: str) -> None:
        (self.out if kind == "out" else self.err).feed(line.encode("utf-8", "replace") + b"\n")

    def stdout(self) -> str:
        return self.out.value().decode("utf-8", "replace")

    def stderr_tail(self) -> str:
        text = self.err.value().decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-STDERR_TAIL_LINES:])
