"""Runs one pipeline step: loads the workload's data, runs the step, checks the outputs it declared.

The agent loop (agents/watcher.py) decides *whether* and *with which parameters* a step runs; this
module only runs it and reports honestly what happened (metrics, whether outputs are valid, the error).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from cluster.config import ClusterConfig
from cluster.errors import ConfigError, HaltRequested, WatcherError
from cluster.gpu.ledger import HealthLedger
from cluster.transport.base import Executor
from pipeline.outputs import check_complete
from pipeline.spec import PipelineSpec, StepEntry, load_workload, step_class
from pipeline.step import Step, StepContext
from pipeline.store import RunStore
from pipeline.workload import Workload


@dataclass
class StepOutcome:
    number: float
    name: str
    params: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    outputs_valid: bool = False
    error: str | None = None
    traceback: str | None = None
    caps: list[dict[str, Any]] = field(default_factory=list)  # where the step cut the params it was given


def resolve_steps(spec: PipelineSpec, from_step: float, to_step: float | None = None) -> list[StepEntry]:
    numbers = [s.number for s in spec.steps if s.enabled]
    if from_step not in numbers:
        raise ConfigError(
            f"--from-step {from_step:g} is not a step of pipeline.yaml; steps: {', '.join(f'{n:g}' for n in numbers)}"
        )
    if to_step is not None and to_step not in numbers:
        raise ConfigError(
            f"--to-step {to_step:g} is not a step of pipeline.yaml; steps: {', '.join(f'{n:g}' for n in numbers)}"
        )
    last = to_step if to_step is not None else numbers[-1]
    return [s for s in spec.steps if s.enabled and from_step <= s.number <= last]


def step_for(entry: StepEntry) -> type[Step[Any]]:
    cls = step_class(entry)
    if not (isinstance(cls, type) and issubclass(cls, Step)):
        raise ConfigError(f"pipeline.yaml: step {entry.number:g}: {entry.step_class} is not a pipeline Step")
    return cls


def run_step(
    entry: StepEntry,
    params: Mapping[str, Any],
    *,
    run_id: int,
    attempt: int,
    spec: PipelineSpec,
    config: ClusterConfig,
    store: RunStore,
    executors: Mapping[str, Executor],
    state_dir: Path,
    halt_check: Callable[[], bool] | None = None,
    progress: bool | None = None,
    ledger: HealthLedger | None = None,
    workload: Workload | None = None,
) -> StepOutcome:
    """Run one step with these params; the gate (pipeline/gate.py) has already checked its inputs.
    Failures of the work are returned in the outcome (the agent may retry them); a ConfigError is raised.

    `workload`: the data the run validated its plan on. Passing it keeps every step and attempt of one run on the
    same loaded data (a history edited mid-run cannot change what later steps see) and spares a re-read and
    re-hash per attempt; None loads it from the spec (single-step callers)."""
    cls = step_for(entry)
    outcome = StepOutcome(entry.number, cls.name, dict(params))
    started = time.monotonic()
    try:
        parsed = cls.parse_params(dict(params), f"pipeline.yaml: step {entry.number:g}: params")
        outcome.params = parsed.model_dump()
        workload = workload if workload is not None else load_workload(spec)
        ctx: StepContext[Any] = StepContext(
            run_id=run_id,
            number=entry.number,
            attempt=attempt,
            params=parsed,
            spec=spec,
            config=config,
            store=store,
            executors=executors,
            state_dir=state_dir,
            workload=workload,
            halt_check=halt_check,
            progress=progress,
            ledger=ledger,
        )
        result = cls().run(ctx)
        outcome.metrics = {**result.metrics, "jobs_run": ctx.jobs_run, "search": cls.search}
        if result.applied is not None:
            outcome.params, outcome.caps = dict(result.applied), list(result.caps)
        outcome.outputs = {k: str(v) for k, v in result.outputs.items()}
        hashes = ctx.input_hashes()
        for name, path in result.outputs.items():
            if name in cls.outputs:
                check_complete(path, hashes)
        outcome.outputs_valid = True
    except (HaltRequested, ConfigError):
        raise  # a halt is not a failure; bad configuration or data is final, never retried
    except WatcherError as err:
        outcome.error = str(err)
        outcome.traceback = traceback.format_exc()
        logger.error("step {:g} ({}) failed: {}", entry.number, cls.name, err)
    except Exception as err:  # a bug in a step must still be recorded in full, never lost
        outcome.error = f"{type(err).__name__}: {err}"
        outcome.traceback = traceback.format_exc()
        logger.error("step {:g} ({}) crashed: {}\n{}", entry.number, cls.name, outcome.error, outcome.traceback)
    outcome.metrics.setdefault("duration_s", round(time.monotonic() - started, 3))
    return outcome
