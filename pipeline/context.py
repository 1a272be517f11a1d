"""What a running step gets: its parameters, the data, the cluster, and one way to run jobs on it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.config import ClusterConfig, NodeConfig
from cluster.errors import StepError
from cluster.scheduler import run_chunks
from cluster.scheduler_types import ChunkSpec
from cluster.transport.base import Executor
from pipeline.history import History
from pipeline.outputs import sha256_file
from pipeline.spec import PipelineSpec
from pipeline.step import StepParams
from pipeline.store import RunStore


def node_path(node: NodeConfig, path: str) -> str:
    return node.path_on_node(path)


def _validate_result(result: dict[str, Any]) -> None:
    if result.get("ok") is not True:
        raise ValueError(f"worker answered ok={result.get('ok')!r}: {result.get('error', 'no error text')}")


@dataclass
class StepContext:
    run_id: int
    number: float
    attempt: int
    params: StepParams
    spec: PipelineSpec
    config: ClusterConfig
    store: RunStore
    executors: Mapping[str, Executor]
    state_dir: Path
    history: History
    train: list[int]
    holdout: list[int]
    halt_check: Callable[[], bool] | None = None
    progress: bool | None = None
    ledger: Any = None
    jobs_run: int = field(default=0, init=False)

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
        """What every output is made from: the history file and the data section of pipeline.yaml."""
        return {
            "history": sha256_file(self.spec.data.history),
            "data": self.spec.data.model_dump_json(),
        }

    def ramdisk_path(self, node: NodeConfig, name: str) -> str:
        return f"{node_path(node, node.ramdisk_path).rstrip('/')}/{name}"

    def run_jobs(self, payloads: list[dict[str, Any]], *, label: str) -> list[dict[str, Any]]:
        """Run worker jobs over every usable slot; results in payload order, each stored as it arrives
        (a resumed run reuses them), or SchedulingError: never a partial answer."""
        if not payloads:
            return []
        chunks = [ChunkSpec.of(p) for p in payloads]
        report = run_chunks(
            self.config,
            chunks,
            sink=self.store.chunk_sink(self.run_id, self.number, 1),
            executors=self.executors,
            validate=_validate_result,
            ledger=self.ledger,
            halt_check=self.halt_check,
            progress=self.progress,
            label=f"step {self.number:g} {label}",
            fetch_dir=self.step_dir / "fetched",
        )
        self.jobs_run += report.executed
        missing = [c.chunk_id for c in chunks if c.chunk_id not in report.results]
        if missing:
            raise StepError(f"step {self.number:g}: {len(missing)} job(s) returned no result")
        return [report.results[c.chunk_id] for c in chunks]
