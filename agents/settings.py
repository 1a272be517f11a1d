"""Settings of the WATCHER agent: which advisor, its hard bounds, and the run's limits.

They live under `agent:` in pipeline.yaml. Unknown keys are errors (a misspelt bound would otherwise be
silently ignored and the default used, which is exactly the silent failure watcher exists to prevent).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cluster.config import format_validation_error
from cluster.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AdvisorConfig(_Strict):
    kind: Literal["auto", "rules", "claude"] = "auto"  # auto: claude when ANTHROPIC_API_KEY is set
    model: str = "claude-sonnet-4-6"
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    max_retries: Annotated[int, Field(ge=0, le=10)] = 2
    max_tokens: Annotated[int, Field(ge=64, le=8192)] = 1024


class Range(_Strict):
    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self

    def clamp(self, value: float) -> float:
        return min(max(value, self.min), self.max)


class Bounds(_Strict):
    """Hard limits no advisor can cross (the LLM's answers are clamped to these)."""

    trials: Range = Range(min=10, max=500)
    max_seeds: Range = Range(min=10_000, max=10_000_000)
    threshold: Range = Range(min=0.05, max=1.0)
    window_size: Range = Range(min=4, max=64)

    def for_field(self, name: str) -> Range | None:
        return getattr(self, name, None) if name in type(self).model_fields else None


class Limits(_Strict):
    retries_per_step: Annotated[int, Field(ge=0, le=20)] = 2
    total_retries: Annotated[int, Field(ge=0, le=100)] = 5
    wall_clock_s: Annotated[float, Field(gt=0)] = 86_400.0
    halt_file: str = "HALT"  # relative to the state directory


class AgentSettings(_Strict):
    advisor: AdvisorConfig = AdvisorConfig()
    bounds: Bounds = Bounds()
    limits: Limits = Limits()
    webhook_url: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, source: str = "pipeline.yaml: agent") -> AgentSettings:
        try:
            return cls.model_validate(dict(data or {}))
        except ValidationError as err:
            raise ConfigError(format_validation_error(source, err)) from None
