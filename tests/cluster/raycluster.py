"""A local multi-node Ray cluster for the tests and benches of `slot_mode: ray` (ray.cluster_utils.Cluster).

Each Ray node is one raylet on this machine, labelled `watcher-node=<name>` so that it stands for the configured
node of that name (several raylets share 127.0.0.1, so the address cannot tell them apart). The first node is
the head (GCS); the coordinator (this process) joins through `cluster.scheduler.ray_slots.backend.connect`, as
`watcher run` does. Loopback only: Ray otherwise swaps 127.0.0.1 for the machine's address
(`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` keeps it on loopback, in this process and in every process it starts).

Everything Ray writes, sockets and logs included, is under `base` (`RAY_TMPDIR`; keep it short: unix socket
paths are limited to 107 bytes), so the suite's leak check (tests/conftest.py) finds every Ray process by its
command line or its log files, even the ones that rename themselves (`ray::IDLE`, `ray::RuntimeEnvAgent`).
`stop` ends them all and waits until none is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
NODE_ARGS: dict[str, Any] = {
    "num_cpus": 1,  # slot actors ask for no CPU: one is enough for Ray's own tasks
    "object_store_memory": 80 * 1024 * 1024,
    "include_dashboard": False,
}


# A raylet that stops answering is declared dead after 3 missed checks 0.5 s apart (Ray's default is about 15 s):
# the tests that remove a node wait for that.
FAST = {"health_check_period_ms": 500, "health_check_failure_threshold": 3}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ray_processes(base: Path) -> list[tuple[int, str]]:
    """Processes of this cluster: its session directory on their command line, or a file open there (Ray's
    agents and workers rename themselves, `ray::IDLE`, but keep their logs open under it)."""
    marker = str(base / "ray")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        if marker in cmd or any(_under(fd, marker) for fd in fds):
            found.append((int(entry.name), cmd[:160]))
    return found


def _under(fd: Path, marker: str) -> bool:
    try:
        return os.readlink(fd).startswith(marker)
    except OSError:
        return False


class LocalRay:
    def __init__(self, base: Path, names: list[str]) -> None:
        self.base = base
        self.names = names
        self.nodes: dict[str, Any] = {}
        self.cluster: Any = None
        self._saved_env: dict[str, str | None] = {}

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def start(self) -> LocalRay:
        (self.base / "ray").mkdir(parents=True, exist_ok=True)
        for key, value in {**LOOPBACK_ENV, "RAY_TMPDIR": str(self.base)}.items():
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        import ray._private.ray_constants as constants
        from ray.cluster_utils import Cluster

        constants.ENABLE_RAY_CLUSTER = False  # what the variable says, for a Ray imported before it was set
        head, *rest = self.names
        self.cluster = Cluster(
            initialize_head=True,
            head_node_args={**NODE_ARGS, "labels": {"watcher-node": head}, "no_monitor": True,
                            "include_log_monitor": False, "dashboard_port": _free_port(), "_system_config": FAST},
        )  # fmt: skip
        self.nodes[head] = self.cluster.head_node
        for name in rest:
            self.add(name)
        return self

    def add(self, name: str) -> Any:
        self.nodes[name] = self.cluster.add_node(**NODE_ARGS, labels={"watcher-node": name})
        return self.nodes[name]

    def remove(self, name: str) -> None:
        """The node leaves the cluster the way a rig does when its raylet dies (its actors go with it)."""
        self.cluster.remove_node(self.nodes.pop(name), allow_graceful=False)

    def stop(self, wait: float = 20.0) -> list[tuple[int, str]]:
        """Every Ray process of this cluster ended; returns those that had to be killed (none, normally)."""
        from cluster.scheduler.ray_slots import backend as ray_backend

        try:
            ray_backend.disconnect()
            if self.cluster is not None:
                self.cluster.shutdown()
        finally:
            for key, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        deadline = time.monotonic() + wait
        while (left := ray_processes(self.base)) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid, _ in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        return left


@contextmanager
def local_ray(base: Path, names: list[str]) -> Iterator[LocalRay]:
    """A started cluster, stopped (every process gone) on the way out, even on failure."""
    cluster = LocalRay(base, names)
    try:
        yield cluster.start()
    finally:
        left = cluster.stop()
        assert not left, f"Ray processes left after the cluster stopped: {left}"
