"""Everything `slot_mode: ray` asks of Ray, in one place: connect, find the nodes, place an actor, call it, wait,
kill, and say what went wrong. Only this module imports Ray (lazily: it is an optional extra), and RayRunner
talks to it through `Backend`, so the scale benchmark can put an in-process stand-in behind the same runner.

The coordinator joins the Ray cluster as a driver once per process (`connect`, address from `ray.address`);
slot actors are owned by it, so they die with it: nothing keeps running on a rig after the coordinator is gone.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from abc import ABC, abstractmethod
from typing import Any

from loguru import logger

from cluster.config import ClusterConfig
from cluster.errors import ConfigError, SchedulingError
from cluster.scheduler.ray_slots.actor import SlotActor
from cluster.scheduler.ray_slots.nodes import RayNode, match_nodes

INSTALL_HINT = "pip install 'rig-watcher[ray]'"
NAMESPACE = "watcher"


class Backend(ABC):
    """The Ray operations a slot runner uses (refs and actors are opaque to it)."""

    @abstractmethod
    def node_ids(self, config: ClusterConfig) -> dict[str, str]:
        """Configured node name -> its live Ray node's id (nodes.match_nodes; ConfigError for a stray node)."""

    @abstractmethod
    def alive(self, node_id: str) -> bool:
        """Whether the Ray node is still a live member of the cluster."""

    @abstractmethod
    def create(self, node_id: str, name: str, *args: Any) -> Any:
        """A slot actor placed on exactly that node (never elsewhere): `actor.SlotActor(*args)` there."""

    @abstractmethod
    def call(self, actor: Any, method: str, *args: Any) -> Any:
        """Start `actor.method(*args)`; returns its ref at once."""

    @abstractmethod
    def wait(self, refs: list[Any], timeout: float) -> list[Any]:
        """The refs among `refs` that are ready within `timeout` seconds (maybe none)."""

    @abstractmethod
    def get(self, ref: Any) -> Any:
        """A ready ref's value; raises what the call raised (see `describe`)."""

    @abstractmethod
    def kill(self, actor: Any) -> None:
        """End the actor's process now (a chunk in flight fails); never restarted."""

    @abstractmethod
    def describe(self, err: BaseException) -> tuple[str, str]:
        """(what happened, Ray's words): "died" (the actor's process), "node" (its node left the cluster),
        "memory" (Ray's memory monitor killed it), "unavailable", "unschedulable", "error" (a bug in the call)."""


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(f"scheduler.slot_mode 'ray' needs Ray, which is not installed here: {INSTALL_HINT}") from None
    return ray


class RayBackend(Backend):
    """The real thing: this process is a driver of the Ray cluster at `address`."""

    def __init__(self, address: str) -> None:
        self.ray = require_ray()
        self.address = address
        self._actor_class: Any = None

    def node_ids(self, config: ClusterConfig) -> dict[str, str]:
        local = self.ray.get_runtime_context().get_node_id()
        return match_nodes(config.nodes, [RayNode.from_ray(n) for n in self.ray.nodes()], local)

    def alive(self, node_id: str) -> bool:
        return any(n.get("NodeID") == node_id and n.get("Alive") for n in self.ray.nodes())

    def create(self, node_id: str, name: str, *args: Any) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if self._actor_class is None:
            self._actor_class = self.ray.remote(SlotActor)
        return self._actor_class.options(
            name=name,
            num_cpus=0,  # the slot count is watcher's: Ray reserves nothing and so never refuses a slot's actor
            num_gpus=0,  # Ray sets no HIP/CUDA_VISIBLE_DEVICES: the slot worker gets the slot's own
            max_concurrency=2,  # a chunk, and the pings or the stop that come while it runs
            max_restarts=0,  # a dead actor is a failed chunk, retried by the scheduler's policy, not by Ray
            max_task_retries=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        ).remote(*args)

    def call(self, actor: Any, method: str, *args: Any) -> Any:
        return getattr(actor, method).remote(*args)

    def wait(self, refs: list[Any], timeout: float) -> list[Any]:
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=max(timeout, 0.0))
        return list(ready)

    def get(self, ref: Any) -> Any:
        return self.ray.get(ref)

    def kill(self, actor: Any) -> None:
        with contextlib.suppress(Exception):  # already dead, or its node gone: nothing left to end
            self.ray.kill(actor, no_restart=True)

    def describe(self, err: BaseException) -> tuple[str, str]:
        exc = self.ray.exceptions
        text = str(err).strip() or type(err).__name__
        if isinstance(err, exc.OutOfMemoryError) or "memory monitor" in text:
            return "memory", text
        if isinstance(err, exc.ActorUnavailableError):
            return "unavailable", text
        if isinstance(err, exc.ActorUnschedulableError):
            return "unschedulable", text
        if isinstance(err, exc.RayActorError):
            return ("node" if "node has died" in text or "node was terminated" in text else "died"), text
        if isinstance(err, exc.NodeDiedError | exc.LocalRayletDiedError):
            return "node", text
        return "error", text


_lock = threading.Lock()
_backend: RayBackend | None = None


def connect(address: str) -> RayBackend:
    """This process's driver connection to the Ray cluster at `address` (made once; another address replaces it).
    Never starts a cluster of its own: `auto` must find one."""
    global _backend
    with _lock:
        if _backend is not None and _backend.address == address and _backend.ray.is_initialized():
            return _backend
        ray = require_ray()
        if ray.is_initialized():
            ray.shutdown()
        try:
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise SchedulingError(
                f"ray: cannot join the Ray cluster at ray.address {address!r}: {first}; fix: `ray start --head` on the "
                "coordinator and `ray start --address HEAD:6379` on each rig (from watcher's virtualenv), or set "
                "ray.address"
            ) from None
        _route_raylet_errors()
        _backend = RayBackend(address)
        return _backend


def _route_raylet_errors() -> None:
    """A driver prints what raylets report (a worker died, ...) straight to its stdout, escape codes and all; here
    it goes to the log instead (debug: the failure record the scheduler stores already carries Ray's words), where
    every line is made printable. Other driver output (log_to_driver is off) keeps Ray's own printer."""
    from ray._private import worker as ray_worker

    printer = getattr(ray_worker, "print_to_stdstream", None)
    if printer is None or getattr(printer, "_watcher", False):
        return

    def routed(data: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        if data.get("pid") == "raylet":
            logger.debug(f"ray (raylet): {' '.join(str(line) for line in data.get('lines') or [])[:2000]}")
        else:
            printer(data, *args, **kwargs)

    routed._watcher = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = routed


def joined(config: ClusterConfig) -> dict[str, str]:
    """Join the config's Ray cluster and match its nodes: what `watcher run` does at load, so that a raylet no
    configured node accounts for (or no cluster at ray.address) stops the run before anything starts."""
    return connect(config.ray.address).node_ids(config)


def disconnect() -> None:
    """Leave the Ray cluster (tests; a coordinator process simply exits)."""
    global _backend
    with _lock:
        _backend = None
        ray = require_ray()
        if ray.is_initialized():
            ray.shutdown()
