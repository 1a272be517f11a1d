"""What the engine asks of a workload: the contract between the generic step engine and the work it runs.

The engine (runner, gate, scheduler calls, outputs, studies) knows nothing of what a workload computes.
A workload tells it: how to read the `data:` section of pipeline.yaml, which inputs every output is made
from (so stale outputs are caught), which module holds its worker jobs, which result field counts as
progress and which result fields name files to fetch from the node, and how to check what a node
answers (`seal` plants known answers in a payload, `check_answer` verifies an answer against it).
The reference workload is `pipeline.prng.workload:PrngWorkload`; pipeline.yaml's `workload:` names another.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

from cluster.scheduler.types import AnswerRejected


class Workload(ABC):
    jobs_module: ClassVar[str]  # the worker's handler table: `python -m pipeline.worker <jobs_module>`
    progress_key: ClassVar[str | None] = None  # result field summed for the progress rate
    progress_unit: ClassVar[str] = "items"
    fetch_keys: ClassVar[tuple[str, ...]] = ()  # result fields naming a file on the node to bring back

    @classmethod
    @abstractmethod
    def parse_data(cls, data: Mapping[str, Any], source: str) -> Any:
        """Validate the data section without reading files; ConfigError naming the field and a fix."""

    @classmethod
    @abstractmethod
    def load(cls, data: Mapping[str, Any], *, source: str, base: Path | None = None) -> Self:
        """Parse the data section and load what it names; ConfigError naming what is wrong. base: the directory
        of the pipeline.yaml the section came from, which relative paths in it are resolved against."""

    @abstractmethod
    def input_hashes(self) -> dict[str, str]:
        """What every output is made from; an output made from other inputs is stale."""

    @abstractmethod
    def study_key(self) -> str:
        """Names the data set in persistent study names, so a different data set starts a fresh study."""

    def prepare(self, say: Callable[[str], None]) -> None:
        """Once per run, before its first step: anything the workload does best once on the coordinator
        instead of in every worker (the reference workload compiles its CPU kernels into the shared cache)."""
        return None

    def worker_argv(self) -> tuple[str, ...]:
        return ("-m", "pipeline.worker", self.jobs_module)

    def seal(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The payload as it is sent: a workload may plant known answers in it (what it planted it keeps to
        itself, for `check_answer`). Must be deterministic, so a chunk keeps its id across runs."""
        return payload

    def check_answer(self, payload: dict[str, Any], answer: dict[str, Any]) -> None:
        """Believe nothing a node says unchecked: raise cluster.scheduler.types.AnswerRejected for an answer
        that breaks its schema ("invalid"), does not reproduce ("unverified") or misses a planted answer
        ("canary"); the scheduler fails the chunk with that evidence, retries it elsewhere, and quarantines
        a slot that answers wrongly. May rewrite `answer` in place to what was checked."""
        if answer.get("ok") is not True:
            raise AnswerRejected(f"worker answered ok={answer.get('ok')!r}: {answer.get('error', 'no error text')}")
