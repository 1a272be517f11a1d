"""The step contract: what a pipeline step declares, what it gets while it runs, and what it returns.

A step is a class with a number (1, 2, 2.5 ... sorted as numbers), a name, the output files of earlier
steps it reads, the files it writes (`outputs`: enveloped and checked complete; `data_files`: plain
copies for nodes, such as a history split), the files nodes need on their ramdisk, and a pydantic model
of its tunable parameters (unknown parameters are an error, so nothing an operator or advisor sets is
ever silently dropped). `Step[P]` is generic over that model, so `ctx.params` has the step's own type.
The context and the contract live in one module: each names the other.

A step's `run` runs inside `ctx.slot_workers()` (Step wraps every subclass's `run`): a step that runs jobs in
rounds (one `run_jobs` per Optuna batch) keeps its slot workers up from one round to the next instead of
paying their start (interpreter, imports, GPU context) every round, and they are all stopped, and the
nodes' GPUs cleaned, when the step ends, however it ends.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from cluster.config import ClusterConfig, NodeConfig, format_validation_error
from cluster.errors import ConfigError, StepError
from cluster.gpu.ledger import HealthLedger
from cluster.scheduler import ChunkSpec, WorkerPool, run_chunks
from cluster.transport.base import Executor
from pipeline.spec import PipelineSpec
from pipeline.store import RunStore
from pipeline.workload import Workload


class StepParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


P = TypeVar("P", bound=StepParams)


@dataclass
class StepResult:
    """metrics: what the step measured; outputs: name -> path; applied: params the step actually used
    where it had to cut what it was given (e.g. a budget capped to the search space), with `caps` saying why."""

    metrics: dict[str, Any]
    outputs: dict[str, Path] = field(default_factory=dict)
    applied: dict[str, Any] | None = None
    caps: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Tunable:
    """A parameter an advisor may change, with the step's own limits (from its Params model)."""

    name: str
    low: float | None
    high: float | None
    integer: bool

    def contains(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def clamp(self, value: float) -> float:
        if self.low is not None:
            value = max(value, self.low)
        if self.high is not None:
            value = min(value, self.high)
        return value


def _limits(info: FieldInfo) -> tuple[float | None, float | None]:
    low = high = None
    for meta in info.metadata:
        if isinstance(meta, Ge | Gt):
            low = float(getattr(meta, "ge", getattr(meta, "gt", 0)))
        elif isinstance(meta, Le | Lt):
            high = float(getattr(meta, "le", getattr(meta, "lt", 0)))
    return low, high


@dataclass
class StepContext(Generic[P]):
    """What a running step gets: its parameters, the workload (with its data), the cluster, one way to run jobs."""

    run_id: int
    number: float
    attempt: int
    params: P
    spec: PipelineSpec
    config: ClusterConfig
    store: RunStore
    executors: Mapping[str, Executor]
    state_dir: Path
    workload: Workload
    halt_check: Callable[[], bool] | None = None
    progress: bool | None = None
    ledger: HealthLedger | None = None
    jobs_run: int = field(default=0, init=False)
    _pool: WorkerPool | None = field(default=None, init=False, repr=False, compare=False)

    @contextmanager
    def slot_workers(self) -> Iterator[None]:
        """Keep slot workers up across the `run_jobs` calls made inside: the first call starts them, later
        ones reuse those still up; on leaving (normally, on an error, on Ctrl-C) every one is stopped and the
        GPU cleanup the calls owe runs (not after Ctrl-C). Re-entrant: an inner use joins the outer one."""
        if self._pool is not None:
            yield
            return
        with WorkerPool() as pool:
            self._pool = pool
            try:
                yield
            finally:
                self._pool = None

    @property
    def output_dir(self) -> Path:
        """Latest complete outputs of every step: a later run starting at step N reads them here."""
        return self.state_dir / "outputs"

    @property
    def step_dir(self) -> Path:
        path = self.state_dir / "runs" / str(self.run_id) / f"step_{self.number:g}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def input_hashes(self) -> dict[str, str]:
        return self.workload.input_hashes()

    def ramdisk_path(self, node: NodeConfig, name: str) -> str:
        executor = self.executors.get(node.name)
        base = executor.node_path(node.ramdisk_path) if executor else node.path_on_node(node.ramdisk_path)
        return f"{base.rstrip('/')}/{name}"

    def run_jobs(self, payloads: list[dict[str, Any]], *, label: str) -> list[dict[str, Any]]:
        """Run worker jobs over every usable slot; results in payload order, each stored as it arrives
        (a resumed run reuses them), or SchedulingError: never a partial answer."""
        if not payloads:
            return []
        work = self.workload
        chunks = [ChunkSpec.of(work.seal(p)) for p in payloads]
        report = run_chunks(
            self.config,
            chunks,
            sink=self.store.chunk_sink(self.run_id, self.number, self.attempt),
            executors=self.executors,
            worker_argv=work.worker_argv(),
            verify=work.check_answer,
            ledger=self.ledger,
            halt_check=self.halt_check,
            progress=self.progress,
            label=f"step {self.number:g} {label}",
            fetch_dir=self.step_dir / "fetched",
            fetch_keys=work.fetch_keys,
            progress_key=work.progress_key,
            progress_unit=work.progress_unit,
            pool=self._pool,
        )
        self.jobs_run += report.executed
        missing = [c.chunk_id for c in chunks if c.chunk_id not in report.results]
        if missing:
            raise StepError(f"step {self.number:g}: {len(missing)} job(s) returned no result")
        return [report.results[c.chunk_id] for c in chunks]


class Step(ABC, Generic[P]):
    number: ClassVar[float]
    name: ClassVar[str]
    Params: ClassVar[type[StepParams]] = StepParams
    inputs: ClassVar[tuple[str, ...]] = ()  # output files of earlier steps (in the outputs directory)
    outputs: ClassVar[tuple[str, ...]] = ()  # enveloped outputs, checked complete after the step
    data_files: ClassVar[tuple[str, ...]] = ()  # plain files the step writes for later steps and nodes
    ramdisk_files: ClassVar[tuple[str, ...]] = ()  # files from the outputs directory each node needs
    # Which params an advisor may tune (their limits come from Params); the guardrail keeps to these.
    advisor_params: ClassVar[tuple[str, ...]] = ()
    # "sampled": the step looks at part of the search space, so finding nothing is no evidence;
    # "exhaustive": it covers all of it, so finding nothing is the answer; None: no search at all.
    search: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Wrap the subclass's own `run` in `ctx.slot_workers()`, so the workers' lifetime is the step's
        without each step (or its caller) having to remember it; an inner wrapped `run` (super().run) joins
        the outer one's pool."""
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if run is None or getattr(run, "__isabstractmethod__", False) or getattr(run, "_slot_workers", False):
            return

        @functools.wraps(run)
        def run_keeping_workers(self: Step[Any], ctx: StepContext[Any]) -> StepResult:
            with ctx.slot_workers():
                return run(self, ctx)  # type: ignore[no-any-return]

        run_keeping_workers._slot_workers = True  # type: ignore[attr-defined]
        cls.run = run_keeping_workers  # type: ignore[method-assign]

    @classmethod
    def tunables(cls) -> dict[str, Tunable]:
        out = {}
        for name in cls.advisor_params:
            info = cls.Params.model_fields[name]
            low, high = _limits(info)
            out[name] = Tunable(name, low, high, info.annotation is int)
        return out

    @classmethod
    def parse_params(cls, params: dict[str, Any], source: str) -> StepParams:
        try:
            return cls.Params.model_validate(params)
        except ValidationError as err:
            raise ConfigError(format_validation_error(source, err)) from None

    @abstractmethod
    def run(self, ctx: StepContext[P]) -> StepResult:
        """Do the step's work through ctx (jobs on the cluster, outputs written atomically)."""
