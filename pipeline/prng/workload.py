"""The reference workload as the engine sees it: the data section parsed into a DataSpec, the history it
names loaded and split, and what the scheduler needs to know about the worker jobs in pipeline.prng.jobs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import ValidationError

from cluster.config import format_validation_error
from cluster.errors import ConfigError
from cluster.files import sha256_file
from pipeline.prng import answers, canary
from pipeline.prng.data import DataSpec, History, load_history, split
from pipeline.workload import Workload


@dataclass
class PrngWorkload(Workload):
    data: DataSpec
    history: History
    train: list[int]
    holdout: list[int]
    history_path: Path = Path()  # the file data.history names, resolved against pipeline.yaml's folder
    _planted: dict[int, canary.Planted] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    jobs_module: ClassVar[str] = "pipeline.prng.jobs"
    progress_key: ClassVar[str | None] = "seeds_tested"
    progress_unit: ClassVar[str] = "seeds"
    fetch_keys: ClassVar[tuple[str, ...]] = ("survivors_file",)

    @classmethod
    def parse_data(cls, data: Mapping[str, Any], source: str) -> DataSpec:
        try:
            return DataSpec.model_validate(dict(data))
        except ValidationError as err:
            raise ConfigError(format_validation_error(source, err)) from None

    @classmethod
    def load(cls, data: Mapping[str, Any], *, source: str, base: Path | None = None) -> Self:
        spec = cls.parse_data(data, source)
        # data.history as written (it is part of the data section's hash), read relative to pipeline.yaml's folder
        path = (base or Path.cwd()) / spec.history
        # a bad session or a draw outside [draw_low, draw_low + modulus) fails here, at load
        history = load_history(path, spec.modulus, spec.session, spec.draw_low)
        train, holdout = split(history, spec.holdout_fraction)
        return cls(spec, history, train, holdout, history_path=path)

    def prepare(self, say: Callable[[str], None]) -> None:
        """Compile the CPU kernels once here (said when it happens); the workers load them from the cache."""
        from pipeline.prng.warm import warm_kernels

        seconds = warm_kernels(self.data, self.train, say)
        if seconds is not None:
            say(f"kernels compiled in {seconds:.1f} s; later runs and every worker load them from the cache")

    def input_hashes(self) -> dict[str, str]:
        """The history file and the data section: either changing makes every output stale."""
        return {"history": sha256_file(self.history_path), "data": self.data.model_dump_json()}

    def study_key(self) -> str:
        return f"{self.data.generator}-{self.history.fingerprint()}"

    def seal(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Plant a canary (pipeline/prng/canary.py) and remember it, keyed by the sealed payload."""
        sealed, planted = canary.plant(payload)
        if planted is not None:
            with self._lock:
                self._planted[canary.digest(sealed)] = planted
        return sealed

    def check_answer(self, payload: dict[str, Any], answer: dict[str, Any]) -> None:
        """Schema, recomputation and canary (pipeline/prng/answers.py); the answer becomes what was checked."""
        super().check_answer(payload, answer)
        with self._lock:
            planted = self._planted.get(canary.digest(payload))
        checked = answers.check(payload, answer, self.history, planted)
        answer.clear()
        answer.update(checked)
