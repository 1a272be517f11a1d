"""Pydantic models of `distributed_config.json` and the loader that turns every mistake into one line.

The config is passed explicitly to whatever needs it (never a global), so tests can build clusters of
fake rigs by rewriting hosts and ports of a loaded model.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator, model_validator

from cluster.errors import ConfigError
from cluster.loads import json_unique

GpuKind = Literal["rocm", "cuda", "cpu"]
NODE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
# A PCI address as rocm-smi and the kernel print it: domain:bus:device.function; the domain may be left out.
PCI_PATTERN = r"^(?:[0-9A-Fa-f]{4}:)?[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]$"


def normalise_pci(pci: str) -> str:
    """`22:00.0` and `0000:22:00.0` name the same card: lower case, with the domain."""
    pci = pci.strip().lower()
    return pci if pci.count(":") == 2 else f"0000:{pci}"


ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


DEFAULT_PYTHON = "python3"


class _Strict(BaseModel):
    # strict: a bool is no int and "5" no number (pydantic's lax mode would take `gpu_count: true` as 1)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ExcludedGpu(_Strict):
    """A GPU an operator took out of service on purpose (e.g. SMU faults); it never gets work."""

    index: Annotated[int, Field(ge=0)]
    reason: Annotated[str, Field(min_length=1)]
    # The card's PCI address when known: indices move after a reseat, the address does not.
    pci: Annotated[str, Field(pattern=PCI_PATTERN)] | None = None

    @field_validator("pci")
    @classmethod
    def _pci_normalised(cls, pci: str | None) -> str | None:
        return normalise_pci(pci) if pci else None


class NodeDeploy(_Strict):
    """How `watcher deploy` treats the virtualenv the node's `python` lives in (it installs only into one)."""

    # Create the venv when `python` does not exist yet (with `base_python -m venv`).
    create_venv: bool = False
    # Create it with --system-site-packages: the venv then sees a GPU build of torch installed system-wide.
    system_site_packages: bool = False
    base_python: Annotated[str, Field(min_length=1)] = DEFAULT_PYTHON


class NodeConfig(_Strict):
    """One machine that runs jobs: the coordinator itself (`transport: local`) or an SSH rig."""

    name: Annotated[str, Field(pattern=NODE_NAME_PATTERN)]
    transport: Literal["local", "ssh"] = "ssh"
    host: str = "127.0.0.1"
    port: Annotated[StrictInt, Field(ge=1, le=65535)] = 22
    user: str | None = None
    key_file: str | None = None
    known_hosts: str | None = None
    trust_on_first_use: bool = False
    python: str = DEFAULT_PYTHON
    workdir: str = "."
    ramdisk_path: str = "/dev/shm/watcher"
    gpu_kind: GpuKind = "cpu"
    # None on a cpu node means one slot per core of that machine.
    gpu_count: Annotated[int, Field(ge=0, le=64)] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    excluded_gpus: list[ExcludedGpu] = Field(default_factory=list)
    max_concurrent_jobs: Annotated[int, Field(ge=1)] | None = None
    # Where the node's amdgpu sysfs is read from (a fake tree on test rigs).
    sysfs_root: Annotated[str, Field(pattern=r"^/[^\s;'\"`$]*$")] = "/sys"
    deploy: NodeDeploy = Field(default_factory=NodeDeploy)

    @field_validator("host")
    @classmethod
    def _host_is_one_token(cls, host: str) -> str:
        if not host or any(c.isspace() for c in host) or host.startswith("-"):
            raise ValueError("must be a hostname or IP address without spaces or a leading '-'")
        return host

    @field_validator("env")
    @classmethod
    def _env_names_are_identifiers(cls, env: dict[str, str]) -> dict[str, str]:
        for key in env:
            if not re.fullmatch(ENV_NAME_PATTERN.strip("^$"), key):  # whole name: "A\n" is not a name
                raise ValueError(f"environment variable name {key!r} is not a valid identifier")
        return env

    @model_validator(mode="after")
    def _check_gpus(self) -> NodeConfig:
        if self.gpu_kind != "cpu" and self.gpu_count is None:
            raise ValueError(f"gpu_count is required for gpu_kind {self.gpu_kind!r}")
        seen: set[int] = set()
        seen_pci: set[str] = set()
        for pos, gpu in enumerate(self.excluded_gpus):
            if gpu.index in seen:
                raise ValueError(f"excluded_gpus[{pos}].index {gpu.index} is listed twice")
            if gpu.pci and gpu.pci in seen_pci:
                raise ValueError(f"excluded_gpus[{pos}].pci {gpu.pci} is listed twice")
            seen.add(gpu.index)
            seen_pci.add(gpu.pci or "")
            if self.gpu_count is not None and gpu.index >= self.gpu_count:
                raise ValueError(
                    f"excluded_gpus[{pos}].index {gpu.index} is out of range: "
                    f"the node has gpu_count {self.gpu_count} (indices 0-{self.gpu_count - 1})"
                )
        if self.deploy.create_venv and not re.search(r"(^|/)bin/python[0-9.]*$", self.python):
            raise ValueError(
                f"deploy.create_venv needs python to be a virtualenv's interpreter (DIR/bin/python), "
                f"not {self.python!r}"
            )
        if self.transport == "ssh" and self.gpu_kind == "cpu" and self.gpu_count is None:
            raise ValueError("an ssh node with gpu_kind 'cpu' needs gpu_count (its number of CPU slots)")
        slots = self.slot_count
        for pos, gpu in enumerate(self.excluded_gpus):
            if gpu.index >= slots:
                raise ValueError(
                    f"excluded_gpus[{pos}].index {gpu.index} is out of range: the node has {slots} slot(s) "
                    f"(indices 0-{slots - 1})"
                )
        return self

    @property
    def slot_count(self) -> int:
        """Number of device slots: GPUs, or CPU slots (cores) on a GPU-less local node."""
        if self.gpu_count is not None:
            return self.gpu_count
        return os.cpu_count() or 1

    @property
    def excluded_indices(self) -> frozenset[int]:
        return frozenset(g.index for g in self.excluded_gpus)

    def interpreter(self) -> str:
        """The Python that runs watcher on this node. A local node left at the default `python3` uses the
        coordinator's own interpreter (its virtualenv): `python3` on PATH may be a system one without watcher."""
        if self.transport == "local" and self.python == DEFAULT_PYTHON:
            return sys.executable
        return self.python

    def path_on_node(self, path: str) -> str:
        """A node path as commands and file copies see it: relative paths are under the node's workdir."""
        if path.startswith(("/", "~")):
            return path
        return f"{self.workdir.rstrip('/')}/{path}"

    @property
    def address(self) -> str:
        """How operators reach the node, for messages: `user@host:port`."""
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.host}:{self.port}" if self.transport == "ssh" else "local"


class WatchedGpu(_Strict):
    """A GPU whose health is checked and logged on every preflight, even when healthy."""

    node: Annotated[str, Field(pattern=NODE_NAME_PATTERN)]
    gpu: Annotated[int, Field(ge=0)]
    note: str = ""
    pci: Annotated[str, Field(pattern=PCI_PATTERN)] | None = None

    @field_validator("pci")
    @classmethod
    def _pci_normalised(cls, pci: str | None) -> str | None:
        return normalise_pci(pci) if pci else None


class Timeouts(_Strict):
    """Seconds. `connect` bounds TCP connect plus the SSH banner and auth; a hung node costs at most this."""

    connect: Annotated[float, Field(gt=0, le=300)] = 5.0
    command: Annotated[float, Field(gt=0)] = 60.0
    job: Annotated[float, Field(gt=0)] = 3600.0
    preflight: Annotated[float, Field(gt=0)] = 30.0
    keepalive: Annotated[float, Field(ge=0)] = 15.0


class HealthPolicy(_Strict):
    """Thresholds for GPU health and quarantine."""

    min_healthy_gpus: Annotated[int, Field(ge=0)] = 1
    probation_checks: Annotated[int, Field(ge=1)] = 3
    max_temp_c: float = 95.0
    max_memory_use_pct: float = 95.0
    min_free_disk_gb: float = 1.0
    min_free_memory_gb: float = 0.5
    # Off only for clusters that are meant to run on CPU torch (e.g. test rigs); on real rigs a CPU-only
    # torch makes every job ~50x slower, so preflight fails on it.
    check_torch_devices: bool = True
    # Nothing polls a node's GPUs (rocm-smi, sysfs) more often than this, whoever asks (preflight, the
    # scheduler's failure probes, its batch cleanups, other processes): frequent SMU queries crashed a rig.
    min_probe_interval_s: Annotated[float, Field(ge=0, le=3600)] = 10.0
    # Seconds the sysfs reads of one GPU (and one rocm-smi call) may take before the GPU is suspected hung.
    probe_deadline_s: Annotated[float, Field(gt=0, le=120)] = 8.0
    # true: any unreachable node stops `watcher run`; false: the run goes on while min_healthy_gpus remain.
    require_all_nodes: bool = False


class SchedulerPolicy(_Strict):
    """Retry, circuit-breaker and cleanup settings of the chunk scheduler."""

    max_attempts: Annotated[int, Field(ge=1)] = 3
    backoff_s: Annotated[float, Field(ge=0)] = 0.5
    backoff_max_s: Annotated[float, Field(ge=0)] = 30.0
    breaker_window: Annotated[int, Field(ge=1)] = 10
    breaker_threshold: Annotated[float, Field(gt=0, le=1)] = 0.5
    breaker_min_failures: Annotated[int, Field(ge=1)] = 3
    cleanup_batch_size: Annotated[int, Field(ge=1)] = 50
    cleanup_script: str = "scripts/cleanup_gpus.sh"
    run_cleanup: bool = True
    # How chunks reach a slot: "workers" keeps one worker process per slot up and feeds it chunk after
    # chunk (heartbeats, restarts); "per_chunk" starts a fresh worker for every chunk; "ray" runs each slot
    # as a Ray actor pinned to its node and GPU (the `ray` section; needs the `ray` extra).
    slot_mode: Literal["workers", "per_chunk", "ray"] = "workers"
    # A slot worker silent this long while it has a chunk is declared stale: killed, its chunk retried.
    heartbeat_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    # Seconds between two worker starts on one GPU node (simultaneous HIP initialisation on many GPUs has
    # hung rigs); not applied on cpu nodes.
    worker_start_stagger_s: Annotated[float, Field(ge=0, le=60)] = 1.0
    # Share of a node's memory its slot workers may use together; with the resident size a worker reports
    # after its first chunk this caps how many stay up on the node.
    worker_memory_fraction: Annotated[float, Field(gt=0, le=1)] = 0.8
    # The largest result file a chunk may leave on its node for the coordinator to fetch (bytes); a larger
    # one fails the attempt as invalid, with nothing copied.
    fetch_max_bytes: Annotated[int, Field(ge=1)] = 2 << 30

    @model_validator(mode="before")
    @classmethod
    def _replaced(cls, data: Any) -> Any:
        if isinstance(data, dict) and "rocm_smi_min_interval_s" in data:
            raise ValueError(
                "rocm_smi_min_interval_s was replaced by health.min_probe_interval_s, the one pacing of every "
                "rocm-smi call (probes, failure probes, batch cleanups); fix: move its value there"
            )
        return data

    @field_validator("slot_mode")
    @classmethod
    def _ray_installed(cls, mode: str) -> str:
        """Said at load, not at the first chunk: a run configured for Ray on a machine without it cannot start."""
        if mode == "ray" and importlib.util.find_spec("ray") is None:
            raise ValueError(
                "'ray' needs Ray, which is not installed here: pip install 'rig-watcher[ray]' "
                "(or set scheduler.slot_mode to workers)"
            )
        return mode


class RayConfig(_Strict):
    """Where the Ray cluster of `scheduler.slot_mode: ray` is. `address` is what `ray.init` takes: "auto" finds
    the cluster this machine belongs to (`ray start` ran here), "HOST:PORT" names its head (GCS)."""

    address: Annotated[str, Field(min_length=1, pattern=r"^(auto|[A-Za-z0-9._-]+:[0-9]{1,5})$")] = "auto"


class ClusterConfig(_Strict):
    """The whole of distributed_config.json."""

    nodes: Annotated[list[NodeConfig], Field(min_length=1)]
    watchlist: list[WatchedGpu] = Field(default_factory=list)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    health: HealthPolicy = Field(default_factory=HealthPolicy)
    scheduler: SchedulerPolicy = Field(default_factory=SchedulerPolicy)
    ray: RayConfig = Field(default_factory=RayConfig)

    @model_validator(mode="after")
    def _check_names(self) -> ClusterConfig:
        names: dict[str, int] = {}
        for pos, node in enumerate(self.nodes):
            if node.name in names:
                raise ValueError(
                    f"nodes[{pos}].name {node.name!r} duplicates nodes[{names[node.name]}]: names must be unique"
                )
            names[node.name] = pos
        for pos, watched in enumerate(self.watchlist):
            node = next((n for n in self.nodes if n.name == watched.node), None)
            if node is None:
                raise ValueError(f"watchlist[{pos}].node {watched.node!r} is not a configured node")
            if node.gpu_count is not None and watched.gpu >= node.gpu_count:
                raise ValueError(
                    f"watchlist[{pos}].gpu {watched.gpu} is out of range for {node.name} (gpu_count {node.gpu_count})"
                )
        return self

    def node(self, name: str) -> NodeConfig:
        for node in self.nodes:
            if node.name == name:
                return node
        raise ConfigError(f"unknown node {name!r}: configured nodes are {', '.join(self.node_names)}")

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]


def _location(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not str(part).startswith(("function-", "function")):
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def format_validation_error(source: str, err: ValidationError) -> str:
    """One line naming the first bad field and what to do about it (pydantic's text spans many lines)."""
    first = err.errors()[0]
    where = _location(tuple(first["loc"]))
    kind = first["type"]
    msg = str(first["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return f"{source}: {where}: unknown key; fix: remove it or check its spelling"
    if kind == "missing":
        return f"{source}: {where}: required field is missing; fix: add it"
    extra = f" (and {err.error_count() - 1} more problem(s))" if err.error_count() > 1 else ""
    got = first.get("input")
    shown = "" if isinstance(got, dict | list) else f"; got {got!r}"
    return f"{source}: {where}: {msg}{shown}{extra}"


def parse_config(data: Any, source: str = "distributed_config.json") -> ClusterConfig:
    try:
        return ClusterConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(source, err)) from None


def load_json_file(path: Path) -> Any:
    """Read JSON, reporting unreadable files and syntax errors with line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; fix: pass --config PATH or create it") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    return json_unique(text, str(path))


def load_config(path: str | Path) -> ClusterConfig:
    path = Path(path)
    return parse_config(load_json_file(path), str(path))


DEFAULT_CONFIG_NAME = "distributed_config.json"


def default_config_path() -> Path:
    """The config used when none is named: ./distributed_config.json, else the embedded default."""
    local = Path.cwd() / DEFAULT_CONFIG_NAME
    if local.exists():
        return local
    return Path(__file__).resolve().parents[1] / DEFAULT_CONFIG_NAME
