"""pipeline.yaml: the workload, its data section, which steps run, in which order, with which default parameters.

An operator changes a budget or adds a step of their own here without touching code. Steps are named
by `module:Class`, imported only when the pipeline is loaded (no import-time registry).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from cluster.config import format_validation_error
from cluster.errors import ConfigError
from cluster.loads import yaml_unique
from pipeline.workload import Workload

DEFAULT_WORKLOAD = "pipeline.prng.workload:PrngWorkload"


class StepEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    number: float
    step_class: Annotated[str, Field(alias="class", pattern=r"^[\w.]+:\w+$")]
    params: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    workload: Annotated[str, Field(pattern=r"^[\w.]+:\w+$")] = DEFAULT_WORKLOAD
    data: dict[str, Any] = Field(default_factory=dict)  # parsed by the workload, not by the engine
    steps: Annotated[list[StepEntry], Field(min_length=1)]
    agent: dict[str, Any] = Field(default_factory=dict)
    # the directory of the pipeline.yaml this was read from: relative paths in `data:` are resolved against it
    # (None for a spec built in code: the current directory)
    _base_dir: Path | None = PrivateAttr(default=None)

    @property
    def base_dir(self) -> Path:
        return self._base_dir if self._base_dir is not None else Path.cwd()

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
    """pipeline.yaml, validated (a repeated key is an error naming it); relative paths in it (data.history)
    are resolved against the file's own directory, never the current one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; fix: pass --pipeline PATH") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    raw = yaml_unique(text, str(path))
    try:
        spec = PipelineSpec.model_validate(raw or {})
    except ValidationError as err:
        raise ConfigError(format_validation_error(str(path), err)) from None
    spec._base_dir = path.resolve().parent
    workload_class(spec).parse_data(spec.data, f"{path}: data")  # a bad data section fails here, at load
    return spec


def _import(target: str, what: str) -> Any:
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, class_name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"pipeline.yaml: {what}: cannot load {target}: {err}") from None


def step_class(entry: StepEntry) -> type:
    return _import(entry.step_class, f"step {entry.number:g}")  # type: ignore[no-any-return]


def workload_class(spec: PipelineSpec) -> type[Workload]:
    cls = _import(spec.workload, "workload")
    if not (isinstance(cls, type) and issubclass(cls, Workload)):
        raise ConfigError(f"pipeline.yaml: workload: {spec.workload} is not a pipeline Workload")
    return cls


def load_workload(spec: PipelineSpec) -> Workload:
    """The workload with its data loaded (files read and validated): ConfigError naming what is wrong."""
    return workload_class(spec).load(spec.data, source="pipeline.yaml: data", base=spec.base_dir)


def default_pipeline_path() -> Path:
    local = Path.cwd() / "pipeline.yaml"
    return local if local.exists() else Path(__file__).resolve().parents[1] / "pipeline.yaml"
