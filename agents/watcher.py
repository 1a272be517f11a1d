"""The WATCHER loop: for each step, preflight -> advisor -> run -> evaluate -> PROCEED / RETRY / ESCALATE.

Every decision is stored with its inputs, who advised, what was clamped and what was applied, so a
2 a.m. escalation can be understood at 9 a.m. from `watcher history --decisions` alone.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from agents.advisors import AdvisorOutcome, StepMetrics, advise
from agents.decisions import Decision, decide
from agents.settings import AgentSettings
from cluster.config import ClusterConfig
from cluster.errors import EXIT_FAILED, EXIT_OK, EXIT_PREFLIGHT, HaltRequested, StoreError
from cluster.transport import executors_for
from pipeline.gate import open_gate
from pipeline.runner import StepOutcome, resolve_steps, run_step
from pipeline.spec import PipelineSpec, StepEntry
from pipeline.store import RunStore


@dataclass
class RunRequest:
    from_step: float
    to_step: float | None = None
    resume: bool = False
    dry_run: bool = False
    overrides: dict[float, dict[str, Any]] = field(default_factory=dict)
    progress: bool | None = None


@dataclass
class RunResult:
    exit_code: int
    status: str
    reason: str
    run_id: int | None = None
    outcomes: list[StepOutcome] = field(default_factory=list)


def history_for(store: RunStore, number: float) -> list[StepMetrics]:
    """Earlier attempts of this step (any run), oldest first, as the advisor sees them."""
    rows = store.step_history(number=number, limit=20)
    return [
        StepMetrics.from_dict(
            r.number,
            r.metrics or {},
            r.params or {},
            name=r.name,
            attempt=r.attempt,
            outputs_valid=r.status == "succeeded",
            error=r.error,
        )
        for r in rows
        if r.status in {"succeeded", "failed"}
    ]


def post_webhook(url: str | None, payload: dict[str, Any]) -> None:
    if not url:
        return
    try:
        req = urllib.request.Request(
            url, data=json.dumps(payload).encode(), headers={"content-type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(req, timeout=10):
            pass
    except Exception as err:  # a dead webhook must not hide the escalation itself
        logger.warning("webhook {} failed: {}", url, err)


class Supervisor:
    def __init__(
        self,
        *,
        config: ClusterConfig,
        spec: PipelineSpec,
        settings: AgentSettings,
        store: RunStore,
        state_dir: Path,
        say: Callable[[str], None] = print,
    ) -> None:
        self.config = config
        self.spec = spec
        self.settings = settings
        self.store = store
        self.state_dir = state_dir
        self.say = say
        self.halt_file = state_dir / settings.limits.halt_file
        self.started = time.monotonic()
        self.total_retries = 0

    def halted(self) -> bool:
        return self.halt_file.exists()

    def _preflight(self, run_id: int, entry: StepEntry, executors: dict) -> bool:
        gate = open_gate(
            entry,
            run_id=run_id,
            config=self.config,
            store=self.store,
            executors=executors,
            state_dir=self.state_dir,
            say=self.say,
        )
        return gate.ok

    def _record(
        self, run_id: int, entry: StepEntry, attempt: int, metrics: StepMetrics, adv: AdvisorOutcome, d: Decision
    ) -> None:
        self.store.record_decision(
            run_id,
            entry.number,
            attempt,
            advisor=adv.advisor,
            decision=d.kind,
            inputs=metrics.compact(),
            raw_answer=json.dumps(adv.raw, default=str),
            clamped=[c.__dict__ for c in adv.clamps],
            applied=d.next_params,
            reason=d.reason + (f" | next: {d.what_to_do}" if d.what_to_do else ""),
            fallback=adv.fallback_reason,
        )

    def run_steps(self, run_id: int, steps: list[StepEntry], request: RunRequest) -> RunResult:
        executors = executors_for(list(self.config.nodes), self.config.timeouts)
        outcomes: list[StepOutcome] = []
        try:
            for entry in steps:
                result = self._run_one(run_id, entry, request, executors, outcomes)
                if result is not None:
                    return result
        except HaltRequested as err:
            return RunResult(EXIT_FAILED, "halted", str(err), run_id, outcomes)
        finally:
            for ex in executors.values():
                ex.close()
        return RunResult(EXIT_OK, "succeeded", "all steps proceeded", run_id, outcomes)

    def _run_one(
        self, run_id: int, entry: StepEntry, request: RunRequest, executors: dict, outcomes: list[StepOutcome]
    ) -> RunResult | None:
        label = f"step {entry.number:g}"
        overrides = request.overrides.get(entry.number, {})
        params = {**entry.params, **overrides}
        history = history_for(self.store, entry.number)
        if history and not overrides:
            before = advise(entry.number, history[-1], history, self.settings, current_params=params)
            if before.applied != params:
                self.say(f"{label}: {before.advisor} advisor from earlier runs: {before.reasoning}")
                params = before.applied
        attempt = 0
        while True:
            attempt += 1
            if self.halted():
                return RunResult(EXIT_FAILED, "halted", f"halt file {self.halt_file} present", run_id, outcomes)
            elapsed = time.monotonic() - self.started
            if elapsed > self.settings.limits.wall_clock_s:
                return RunResult(EXIT_FAILED, "escalated", "wall-clock budget spent", run_id, outcomes)
            if not self._preflight(run_id, entry, executors):
                return RunResult(EXIT_PREFLIGHT, "failed", f"{label}: preflight failed", run_id, outcomes)
            shown = {k: v for k, v in params.items() if k in {"trials", "max_seeds", "threshold_min", "window_min"}}
            self.say(f"{label} ({entry.step_class.split(':')[-1]}), attempt {attempt}: {shown or params}")
            stored_attempt = self.store.start_step(run_id, entry.number, entry.step_class, params)
            outcome = run_step(
                entry,
                params,
                run_id=run_id,
                attempt=stored_attempt,
                spec=self.spec,
                config=self.config,
                store=self.store,
                executors=executors,
                state_dir=self.state_dir,
                halt_check=self.halted,
                progress=request.progress,
                ledger=self.store,
            )
            ok = outcome.outputs_valid and outcome.error is None
            self.store.finish_step(
                run_id, entry.number, stored_attempt, "succeeded" if ok else "failed", outcome.metrics, outcome.error
            )
            outcomes.append(outcome)
            metrics = StepMetrics.from_dict(
                entry.number,
                outcome.metrics,
                outcome.params,
                name=outcome.name,
                attempt=attempt,
                outputs_valid=outcome.outputs_valid,
                error=outcome.error,
            )
            adv = advise(entry.number, metrics, history, self.settings, current_params=outcome.params)
            d = decide(
                metrics,
                attempt=attempt,
                total_retries_used=self.total_retries,
                elapsed_s=time.monotonic() - self.started,
                limits=self.settings.limits,
                outcome=adv,
                current_params=outcome.params,
            )
            self._record(run_id, entry, stored_attempt, metrics, adv, d)
            self.say(f"{label}: {_summary(outcome)} -> {d.kind} ({adv.advisor}): {d.reason}")
            history.append(metrics)
            if d.kind == "PROCEED":
                return None
            if d.kind == "RETRY":
                self.total_retries += 1
                params = d.next_params
                continue
            post_webhook(self.settings.webhook_url, {"run": run_id, "step": entry.number, "reason": d.reason})
            self.say(f"ESCALATED: {d.reason}")
            if d.what_to_do:
                self.say(f"what to do: {d.what_to_do}")
            return RunResult(EXIT_FAILED, "escalated", d.reason, run_id, outcomes)


def _summary(outcome: StepOutcome) -> str:
    if outcome.error:
        return f"error: {outcome.error}"
    m = outcome.metrics
    parts = [f"{k}={m[k]}" for k in ("survivors", "completed_trials", "pruned_trials", "seeds_tested") if k in m]
    parts.append(f"{m.get('duration_s', 0):.1f}s")
    return ", ".join(parts)


def first_unfinished(store: RunStore, run_id: int, steps: list[StepEntry]) -> list[StepEntry]:
    """On --resume: the steps from the first one this run did not finish successfully."""
    for i, entry in enumerate(steps):
        last = store.latest_step(run_id, entry.number)
        if last is None or last.status != "succeeded":
            return steps[i:]
    return []


def resumable_run(store: RunStore) -> int:
    run = store.find_resumable_run()
    if run is None:
        raise StoreError("no interrupted or failed run to resume; start one with `watcher run --from-step N`")
    return run.id


def plan(spec: PipelineSpec, request: RunRequest) -> list[StepEntry]:
    return resolve_steps(spec, request.from_step, request.to_step)
