"""What the engine asks of a workload: the contract between the generic step engine and the work it runs.

The engine (runner, gate, scheduler calls, outputs, studies) knows nothing of what a workload computes.
A workload tells it: how to read the `data:` section of pipeline.yaml, which inputs every output is made
from (so stale outputs are caught), which module holds its worker jobs, which result field counts as
progress and which result fields name files to fetch from the node. The reference workload is
`pipeline.prng.workload:PrngWorkload`; pipeline.yaml's `workload:` names another.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Self


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
    def load(cls, data: Mapping[str, Any], *, source: str) -> Self:
        """Parse the data section and load what it names; ConfigError naming what is wrong."""

    @abstractmethod
    def input_hashes(self) -> dict[str, str]:
        """What every output is made from; an output made from other inputs is stale."""

    @abstractmethod
    def study_key(self) -> str:
        """Names the data set in persistent study names, so a different data set starts a fresh study."""

    def worker_argv(self) -> tuple[str, ...]:
        return ("-m", "pipeline.worker", self.jobs_module)

    def validate_result(self, result: dict[str, Any]) -> None:
        """Raise if a worker's answer is unusable (the scheduler then retries the chunk elsewhere)."""
        if result.get("ok") is not True:
            raise ValueError(f"worker answered ok={result.get('ok')!r}: {result.get('error', 'no error text')}")
