"""Settings of the WATCHER agent: which advisor, its hard bounds, and the run's limits.

They live under `agent:` in pipeline.yaml. Unknown keys are errors (a misspelt bound would otherwise be
silently ignored and the default used, which is exactly the silent failure watcher exists to prevent).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from cluster.config import format_validation_error
from cluster.errors import ConfigError


class _Strict(BaseModel):
    # strict: a bool is no int and "5" no number (lax mode would take `max_retries: true` as 1)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


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


DEFAULT_BOUNDS = {"trials": Range(min=10, max=500), "max_seeds": Range(min=10_000, max=10_000_000)}


def _bounds(value: Mapping[str, Any] | None) -> dict[str, Range]:
    return {**DEFAULT_BOUNDS, **dict(value or {})}


class Limits(_Strict):
    retries_per_step: Annotated[int, Field(ge=0, le=20)] = 2
    total_retries: Annotated[int, Field(ge=0, le=100)] = 5
    wall_clock_s: Annotated[float, Field(gt=0)] = 86_400.0
    halt_file: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")] = "HALT"  # a name in the state dir


class AgentSettings(_Strict):
    """bounds: hard limits no advisor can cross, by step parameter name (trials and max_seeds by default;
    any parameter a step lets an advisor tune may be bounded). `check_bounds` holds them against the steps."""

    advisor: AdvisorConfig = AdvisorConfig()
    bounds: Annotated[dict[str, Range], BeforeValidator(_bounds)] = Field(default_factory=lambda: dict(DEFAULT_BOUNDS))
    limits: Limits = Limits()
    webhook_url: str | None = None

    def bound(self, name: str) -> Range | None:
        return self.bounds.get(name)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, source: str = "pipeline.yaml: agent") -> AgentSettings:
        try:
            return cls.model_validate(dict(data or {}))
        except ValidationError as err:
            raise ConfigError(format_validation_error(source, err)) from None


def check_bounds(settings: AgentSettings, tunables: Mapping[float, Mapping[str, Any]]) -> None:
    """Every bound must name a parameter some step lets an advisor tune, and lie inside that step's own
    limits: a bound the step would reject turns a valid advisor answer into a failed step at 3 a.m.
    tunables: step number -> {name: Tunable}. ConfigError naming the bound and the fix."""
    names = sorted({name for per_step in tunables.values() for name in per_step})
    for name, bound in settings.bounds.items():
        steps = {number: per_step[name] for number, per_step in tunables.items() if name in per_step}
        if not steps:
            if name in DEFAULT_BOUNDS:
                continue
            raise ConfigError(
                f"pipeline.yaml: agent: bounds.{name}: no step lets an advisor tune {name!r}; "
                f"fix: bound one of {', '.join(names) or '(none)'}"
            )
        for number, tunable in steps.items():
            for end in ("min", "max"):
                value = getattr(bound, end)
                if not tunable.contains(value):
                    raise ConfigError(
                        f"pipeline.yaml: agent: bounds.{name}.{end}: {value:g} is outside step {number:g}'s limits "
                        f"[{_end(tunable.low)}, {_end(tunable.high)}]; fix: keep the bound inside them"
                    )


def _end(value: float | None) -> str:
    return "unbounded" if value is None else f"{value:g}"
