"""pipeline.yaml: which steps run, in which order, with which default parameters and data.

An operator changes a budget or adds a step of their own here without touching code. Steps are named
by `module:Class`, imported only when the pipeline is loaded (no import-time registry).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cluster.config import format_validation_error
from cluster.errors import ConfigError


class StepEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    number: float
    step_class: Annotated[str, Field(alias="class", pattern=r"^[\w.]+:\w+$")]
    params: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True


class DataSpec(BaseModel):
    """The data set and the generator family the reference pipeline searches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    history: str = "data/history.json"
    generator: str = "java_lcg"
    modulus: Annotated[int, Field(ge=2)] = 1000
    holdout_fraction: Annotated[float, Field(gt=0, lt=0.9)] = 0.2
    seed_range: tuple[int, int] = (0, 1 << 24)
    offset_range: tuple[int, int] = (0, 15)
    skip_range: tuple[int, int] = (0, 3)

    @model_validator(mode="after")
    def _ranges(self) -> DataSpec:
        for name in ("seed_range", "offset_range", "skip_range"):
            lo, hi = getattr(self, name)
            if lo < 0 or hi < lo:
                raise ValueError(f"{name} must be [low, high] with 0 <= low <= high; got [{lo}, {hi}]")
        if self.seed_range[1] > 1 << 32 or self.seed_range[0] == self.seed_range[1]:
            raise ValueError("seed_range must be a non-empty [start, end) inside [0, 2**32]")
        return self


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data: DataSpec = DataSpec()
    steps: Annotated[list[StepEntry], Field(min_length=1)]
    agent: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_ordered(self) -> PipelineSpec:
        numbers = [s.number for s in self.steps]
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"step numbers must be unique; got {numbers}")
        if numbers != sorted(numbers):
            raise ValueError(f"steps must be listed in numeric order; got {numbers}")
        return self

    def entry(self, number: float) -> StepEntry:
        for entry in self.steps:
            if entry.number == number:
                return entry
        raise ConfigError(
            f"pipeline.yaml has no step {number:g}; steps: {', '.join(f'{s.number:g}' for s in self.steps)}"
        )


def load_pipeline(path: str | Path) -> PipelineSpec:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; fix: pass --pipeline PATH") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {getattr(err, 'problem', err)}") from None
    try:
        return PipelineSpec.model_validate(raw or {})
    except ValidationError as err:
        raise ConfigError(format_validation_error(str(path), err)) from None


def step_class(entry: StepEntry) -> type:
    module_name, _, class_name = entry.step_class.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, class_name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"pipeline.yaml: step {entry.number:g}: cannot load {entry.step_class}: {err}") from None


def default_pipeline_path() -> Path:
    local = Path.cwd() / "pipeline.yaml"
    return local if local.exists() else Path(__file__).resolve().parents[1] / "pipeline.yaml"
