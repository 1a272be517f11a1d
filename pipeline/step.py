"""The step contract: what a pipeline step declares and returns.

A step is a class with a number (1, 2, 2.5 ... sorted as numbers), a name, the output files of earlier
steps it reads, the files it writes, the files nodes need on their ramdisk, and a pydantic model of its
tunable parameters (unknown parameters are an error, so nothing an operator or advisor sets is ever
silently dropped).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from cluster.config import format_validation_error
from cluster.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.context import StepContext


class StepParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class StepResult:
    metrics: dict[str, Any]
    outputs: dict[str, Path] = field(default_factory=dict)


class Step(ABC):
    number: ClassVar[float]
    name: ClassVar[str]
    Params: ClassVar[type[StepParams]] = StepParams
    inputs: ClassVar[tuple[str, ...]] = ()  # output files of earlier steps (in the outputs directory)
    outputs: ClassVar[tuple[str, ...]] = ()
    ramdisk_files: ClassVar[tuple[str, ...]] = ()  # files from the outputs directory each node needs

    @classmethod
    def parse_params(cls, params: dict[str, Any], source: str) -> StepParams:
        try:
            return cls.Params.model_validate(params)
        except ValidationError as err:
            raise ConfigError(format_validation_error(source, err)) from None

    @abstractmethod
    def run(self, ctx: StepContext) -> StepResult:
        """Do the step's work through ctx (jobs on the cluster, outputs written atomically)."""
