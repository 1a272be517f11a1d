"""In-process stand-ins for the far side of the two links, for bench/scale.py (not a test double: a model).

The coordinator side is the real code: `run_chunks`, its slot threads, and the real runner of each design
(`workers.WorkerRunner` for SSH workers, `ray_slots.runner.RayRunner` for Ray). Only what lives on the nodes and on the
wire is modelled, by one timer thread (`Nodes`) that delivers each reply `latency_s` (plus `chunk_s` for a chunk)
after the request; its CPU is not the coordinator's and is subtracted (bench/scale.py).

What each link costs the coordinator is kept as it is in the real thing:
- SSH workers (`SSHLink`): per node, one transport thread (paramiko's, which reads every packet of the node's
  channels) handing each line to the channel; per slot, one session reader thread that wakes for every line and
  every 0.5 s when idle (cluster/transport/ssh_session.py polls so); heartbeats every quarter of the heartbeat
  timeout from every live worker; `msg_cpu_s` of CPU for each line sent or received (paramiko's packet work,
  measured by `bench/scale.py --calibrate`);
- Ray (`RayLink`, a `ray_slots.backend.Backend`): no thread per node or per slot on the coordinator; `call_cpu_s` of
  CPU for each call submitted and each result taken (the Ray driver's work, measured the same way). Ray's own
  fixed driver threads are not modelled (`--calibrate` counts them).
"""

from __future__ import annotations

import heapq
import itertools
import json
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cluster.config import ClusterConfig, NodeConfig
from cluster.protocol import PROTOCOL, STDERR_MARK, Envelope, Frame, Heartbeat, Hello
from cluster.scheduler.ray_slots.backend import Backend
from cluster.transport.base import CommandResult, Executor, Session


def burn(seconds: float) -> None:
    """Spend `seconds` of this thread's CPU (holding the GIL, as Python-level packet and call work does)."""
    if seconds <= 0:
        return
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def answer(value: int, slot: str) -> dict[str, Any]:
    return {"ok": True, "value": value, "seeds_tested": 10, "slot": slot, "protocol": PROTOCOL}


class Nodes:
    """The nodes and the wire: callbacks run at their due time, in one timer thread."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stop = False
        self.thread = threading.Thread(target=self._loop, name="fake-nodes", daemon=True)
        self.thread.start()

    def at(self, delay: float, fn: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), fn))
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                if self._stop:
                    return
                _, _, fn = heapq.heappop(self._heap)
            fn()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()


# --- SSH workers ----------------------------------------------------------------------------------------------
class _Transport:
    """paramiko's transport thread of one node: every line of the node's channels passes through it."""

    def __init__(self, node: str, msg_cpu_s: float) -> None:
        self.inbox: list[tuple[FakeSession, str, str]] = []
        self.cond = threading.Condition()
        self.msg_cpu_s = msg_cpu_s
        self.closed = False
        threading.Thread(target=self._loop, name=f"ssh-{node}", daemon=True).start()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()

    def deliver(self, session: FakeSession, kind: str, line: str) -> None:
        with self.cond:
            self.inbox.append((session, kind, line))
            self.cond.notify()

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.inbox and not self.closed:
                    self.cond.wait()
                if self.closed:
                    return
                batch, self.inbox = self.inbox, []
            for session, kind, line in batch:
                burn(self.msg_cpu_s)
                session.arrive(kind, line)


class FakeSession(Session):
    """One slot worker's channel: lines arrive through the node's transport, one reader thread per session."""

    def __init__(self, link: SSHLink, node: str, slot: str, env: Mapping[str, str]) -> None:
        super().__init__(node, "python -m pipeline.worker --serve")
        self.link, self.slot = link, slot
        self.transport = link.transports[node]
        self.buffer: list[tuple[str, str]] = []
        self.cond = threading.Condition()
        self.busy = False
        self.beat_every = float(env.get("WATCHER_HEARTBEAT_S", "7.5"))
        threading.Thread(target=self._pump, name=f"{node}-session", daemon=True).start()
        hello = Hello(version=env.get("WATCHER_COORDINATOR_VERSION", "0"), pid=1, pgid=1, protocol=PROTOCOL)
        link.nodes.at(link.latency_s / 2, lambda: self.transport.deliver(self, "out", hello.line().strip()))
        link.nodes.at(self.beat_every, self._beat)

    def arrive(self, kind: str, line: str) -> None:
        with self.cond:
            self.buffer.append((kind, line))
            self.cond.notify()

    def _pump(self) -> None:  # as SSHSession._pump: wake for data, or every 0.5 s when idle
        while not self.ended:
            with self.cond:
                if not self.buffer:
                    self.cond.wait(0.5)
                batch, self.buffer = self.buffer, []
            for kind, line in batch:
                self._push(kind, line)

    def _beat(self) -> None:
        if self.ended:
            return
        self.transport.deliver(self, "out", Heartbeat(busy=self.busy).line().strip())
        self.link.nodes.at(self.beat_every, self._beat)

    def write(self, data: bytes) -> None:
        burn(self.link.msg_cpu_s)
        self.busy = True

        def done() -> None:  # on the node: the worker read the envelope, ran the chunk, answered
            envelope = Envelope.model_validate_json(data)
            self.busy = False
            out = json.dumps(answer(int(envelope.job.get("value", 0)), self.slot)) + "\n"
            frame = Frame(done=envelope.seq, exit=0, stdout=out)
            self.transport.deliver(self, "err", f"{STDERR_MARK}{envelope.seq}")
            self.transport.deliver(self, "out", frame.line().strip())

        self.link.nodes.at(self.link.latency_s + self.link.chunk_s, done)

    def close_stdin(self) -> None:
        self.link.nodes.at(self.link.latency_s / 2, lambda: self._finish(0))

    def kill(self) -> None:
        self._finish(-9)


class FakeExecutor(Executor):
    def __init__(self, node: NodeConfig, link: SSHLink) -> None:
        super().__init__(node)
        self.link = link

    def run(self, cmd: Any, **kw: Any) -> CommandResult:
        return CommandResult(self.name, str(cmd), 0, "", "", 0.0)

    def put(self, local: Path, remote: str) -> None:
        pass

    def get(self, remote: str, local: Path, *, max_bytes: int | None = None) -> None:
        pass

    def close(self) -> None:
        pass

    def start(self, cmd: Any, *, env: Mapping[str, str] | None = None, **kw: Any) -> Session:
        env = dict(env or {})
        return FakeSession(self.link, self.name, env.get("WATCHER_SLOT", "?"), env)


class SSHLink:
    """The SSH side of every node (`executors`); `sessions=False`: executors only (health checks, which the bench
    does not run: the Ray design's executors)."""

    def __init__(
        self, nodes: Nodes, config: ClusterConfig, chunk_s: float, latency_s: float, msg_cpu_s: float,
        sessions: bool = True,
    ) -> None:  # fmt: skip
        self.nodes, self.chunk_s, self.latency_s, self.msg_cpu_s = nodes, chunk_s, latency_s, msg_cpu_s
        self.transports = {n.name: _Transport(n.name, msg_cpu_s) for n in config.nodes} if sessions else {}
        self.executors = {n.name: FakeExecutor(n, self) for n in config.nodes}

    def close(self) -> None:
        for transport in self.transports.values():
            transport.close()


# --- Ray --------------------------------------------------------------------------------------------------------
class _Ref:
    """A call's result; the threads waiting on it are woken when it is set, and only they (as in Ray, where a
    wait blocks on its own objects)."""

    def __init__(self) -> None:
        self.value: Any = None
        self.done = False
        self.lock = threading.Lock()
        self.waiters: list[threading.Event] = []

    def set(self, value: Any) -> None:
        with self.lock:
            self.value, self.done = value, True
            waiters = list(self.waiters)
        for event in waiters:
            event.set()


class RayLink(Backend):
    """What `RayRunner` asks of Ray, answered by the modelled nodes after the latency (and the chunk)."""

    def __init__(self, nodes: Nodes, config: ClusterConfig, chunk_s: float, latency_s: float, call_cpu_s: float):
        self.nodes, self.chunk_s, self.latency_s, self.call_cpu_s = nodes, chunk_s, latency_s, call_cpu_s
        self.ids = {n.name: f"fake-{n.name}" for n in config.nodes}

    def node_ids(self, config: ClusterConfig) -> dict[str, str]:
        return dict(self.ids)

    def alive(self, node_id: str) -> bool:
        return True

    def create(self, node_id: str, name: str, *args: Any) -> Any:
        node, gpu = args[0]["name"], args[1]
        return {"slot": f"{node}:{gpu}", "version": args[5]}

    def call(self, actor: Any, method: str, *args: Any) -> Any:
        burn(self.call_cpu_s)
        ref, took = _Ref(), self.latency_s
        if method == "hello":
            value: Any = {"version": actor["version"], "pid": 1, "started": 1}
        elif method == "ping":
            value = {"progress": 0, "live": True}
        elif method in ("start_worker", "stop_worker"):
            value = {"live": True, "hello": None, "memory": [0, 0]} if method == "start_worker" else True
        else:  # run
            took += self.chunk_s
            value = {"live": True, "hello": None, "memory": [0, 0], "stderr": "",
                     "answer": answer(int(args[2].get("value", 0)), actor["slot"])}  # fmt: skip

        self.nodes.at(took, lambda: ref.set(value))
        return ref

    def wait(self, refs: list[Any], timeout: float) -> list[Any]:
        event = threading.Event()
        for ref in refs:
            with ref.lock:
                ref.waiters.append(event)
        try:
            if not any(r.done for r in refs):
                event.wait(max(timeout, 0.0))
            return [r for r in refs if r.done]
        finally:
            for ref in refs:
                with ref.lock:
                    ref.waiters.remove(event)

    def get(self, ref: Any) -> Any:
        burn(self.call_cpu_s)
        return ref.value

    def kill(self, actor: Any) -> None:
        pass

    def describe(self, err: BaseException) -> tuple[str, str]:
        return "error", str(err)
