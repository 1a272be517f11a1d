"""The WATCHER loop: for each step, preflight -> advisor -> run -> evaluate -> PROCEED / RETRY / ESCALATE.

Every decision is stored with its inputs, who advised, what was clamped and what was applied, so a
2 a.m. escalation can be understood at 9 a.m. from `watcher history --decisions` alone.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from agents.advisors import AdvisorOutcome, StepMetrics, advise
from agents.decisions import Decision, decide
from agents.settings import AgentSettings
from cluster.config import ClusterConfig
from cluster.errors import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, EXIT_PREFLIGHT, ConfigError, HaltRequested, StoreError
from cluster.text import printable
from cluster.transport import executors_for
from pipeline.gate import open_gate
from pipeline.runner import StepOutcome, resolve_steps, run_step, step_for
from pipeline.spec import PipelineSpec, StepEntry
from pipeline.step import Step
from pipeline.store import RunStore
from pipeline.workload import Workload


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


def history_for(store: RunStore, number: float, dataset: str) -> list[StepMetrics]:
    """Earlier attempts of this step on this data set (any run), oldest first, as the advisor sees them."""
    rows = store.dataset_history(number, dataset, limit=20)
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


def validator_for(cls: type[Step[Any]]) -> Callable[[Mapping[str, Any]], str | None]:
    """The step's own verdict on a params set, for the guardrail: None when it accepts them."""

    def check(params: Mapping[str, Any]) -> str | None:
        try:
            cls.parse_params(dict(params), "advice")
        except ConfigError as err:
            return str(err).removeprefix("advice: ")
        return None

    return check


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
        logger.warning("webhook {} failed: {}", url_for_logs(url), redact_url(str(err), url))


def url_for_logs(url: str) -> str:
    """Scheme and host only: webhook URLs carry tokens in their path, query or user part."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "") + "/..."


def redact_url(text: str, url: str) -> str:
    """`text` (an error message, which may quote the URL) with the URL's secret parts removed."""
    parts = urllib.parse.urlsplit(url)
    for secret in (url, parts.path, parts.query, parts.password or "", parts.username or ""):
        if secret and len(secret) > 1:
            text = text.replace(secret, "[redacted]")
    return text


class Supervisor:
    def __init__(
        self,
        *,
        config: ClusterConfig,
        spec: PipelineSpec,
        settings: AgentSettings,
        store: RunStore,
        state_dir: Path,
        workload: Workload,
        say: Callable[[str], None] = print,
    ) -> None:
        self.config = config
        self.spec = spec
        self.settings = settings
        self.store = store
        self.state_dir = state_dir
        self.workload = workload
        self.dataset = workload.study_key()
        self.say = lambda text: say(printable(text))  # reasons carry node and LLM text
        self.halt_file = state_dir / settings.limits.halt_file
        self.started = time.monotonic()
        self.total_retries = 0

    def halted(self) -> bool:
        return self.halt_file.exists()

    def halt_reason(self) -> str:
        return f"halt file {self.halt_file} present (`watcher halt`); `watcher resume-ok` clears it"

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
        self._go_on_without(run_id, entry, executors, gate.without)
        return gate.ok

    def _go_on_without(self, run_id: int, entry: StepEntry, executors: dict, without: Mapping[str, str]) -> None:
        """Unreachable nodes the gate let the run go on without: their executors are set aside for this step
        (given back when a later gate finds the node again), the webhook is posted once per node."""
        sidelined: dict = self.__dict__.setdefault("_sidelined", {})
        announced: set[str] = self.__dict__.setdefault("_announced_down", set())
        for name in [n for n in sidelined if n not in without]:
            executors[name] = sidelined.pop(name)
            self.say(f"step {entry.number:g}: {name} is reachable again and takes work")
        for name, line in without.items():
            if name in executors:
                sidelined[name] = executors.pop(name)
                try:
                    sidelined[name].close()  # its dead connections; a later gate may reconnect
                except Exception as err:  # closing a dead node's sockets must not stop the run
                    self.say(f"{name}: closing its connection: {err}")
            if name not in announced:
                announced.add(name)
                reason = f"running without {name}: {line}"
                post_webhook(self.settings.webhook_url, {"run": run_id, "step": entry.number, "reason": reason})

    def _record(
        self,
        run_id: int,
        entry: StepEntry,
        attempt: int,
        metrics: StepMetrics,
        adv: AdvisorOutcome,
        d: Decision,
        outcome: StepOutcome,
        tunables: Mapping[str, Any],
    ) -> None:
        caps = [{"field": c["field"], "asked": c["asked"], "applied": c["applied"], "reason": c["reason"]}
                for c in outcome.caps]  # fmt: skip
        next_run = {k: v for k, v in d.next_run.items() if k in tunables} if d.next_run else None
        self.store.record_decision(
            run_id,
            entry.number,
            attempt,
            advisor=adv.advisor,
            decision=d.kind,
            inputs=metrics.compact(),
            raw_answer=json.dumps(adv.raw, default=str),
            clamped=caps + [c.__dict__ for c in adv.clamps],
            applied=d.next_params,
            reason=d.reason + (f" | next: {d.what_to_do}" if d.what_to_do else ""),
            fallback=adv.fallback_reason,
            next_run=next_run or None,
            dataset=self.dataset,
        )

    def run_steps(self, run_id: int, steps: list[StepEntry], request: RunRequest) -> RunResult:
        if request.resume:  # the run's retries so far count against agent.limits.total_retries
            self.total_retries = sum(d["decision"] == "RETRY" for d in self.store.decisions(run_id))
        self.workload.prepare(self.say)  # e.g. compile kernels once, before any worker needs them
        executors = executors_for(list(self.config.nodes), self.config.timeouts)
        outcomes: list[StepOutcome] = []
        try:
            for entry in steps:
                result = self._run_one(run_id, entry, request, executors, outcomes)
                if result is not None:
                    return result
        except HaltRequested as err:
            logger.warning("halted: {}", err)
            return RunResult(EXIT_FAILED, "halted", f"{err}; {self.halt_reason()}", run_id, outcomes)
        finally:
            for ex in executors.values():
                ex.close()
        return RunResult(EXIT_OK, "succeeded", "all steps proceeded", run_id, outcomes)

    def _starting_params(self, run_id: int, entry: StepEntry, request: RunRequest, tunables: Mapping[str, Any]) -> dict:
        """pipeline.yaml's params, then what the last run on this data set left for this step's next run
        (tunable params only), then the operator's --set overrides, which always win."""
        overrides = request.overrides.get(entry.number, {})
        params = dict(entry.params)
        last = self.store.last_decision(entry.number, self.dataset, before_run=run_id)
        carried = {
            k: v for k, v in ((last or {}).get("next_run") or {}).items() if k in tunables and k not in overrides
        }
        if carried and any(params.get(k) != v for k, v in carried.items()):
            shown = ", ".join(f"{k} {v}" for k, v in carried.items() if params.get(k) != v)
            self.say(f"step {entry.number:g}: from run {last['run_id']} on this data set: {shown}")  # type: ignore[index]
        return {**params, **carried, **overrides}

    def _run_one(
        self, run_id: int, entry: StepEntry, request: RunRequest, executors: dict, outcomes: list[StepOutcome]
    ) -> RunResult | None:
        label = f"step {entry.number:g}"
        cls = step_for(entry)
        tunables = cls.tunables()
        params = self._starting_params(run_id, entry, request, tunables)
        history = history_for(self.store, entry.number, self.dataset)
        resumed = self.store.latest_step(run_id, entry.number) if request.resume else None
        if resumed is not None and resumed.status != "running":
            retry = pending_retry(self.store, run_id, entry.number)
            if retry is not None:  # the run stopped between a RETRY and its attempt: that attempt is next
                params = retry
                self.say(f"{label}: resuming with the RETRY decided on attempt {resumed.attempt}: {params}")
            resumed = None
        while True:
            if self.halted():
                return RunResult(EXIT_FAILED, "halted", self.halt_reason(), run_id, outcomes)
            elapsed = time.monotonic() - self.started
            if elapsed > self.settings.limits.wall_clock_s:
                return RunResult(EXIT_FAILED, "escalated", "wall-clock budget spent", run_id, outcomes)
            if not self._preflight(run_id, entry, executors):
                return RunResult(EXIT_PREFLIGHT, "failed", f"{label}: preflight failed", run_id, outcomes)
            if resumed is not None:
                attempt, params = resumed.attempt, dict(resumed.params or params)
                self.say(f"{label}: resuming attempt {attempt} where the interrupted run left it")
                resumed = None
            else:
                attempt = self.store.start_step(run_id, entry.number, entry.step_class, params)
            stored_attempt = attempt  # the run's own count, kept across --resume: what is shown and limited
            shown = {k: v for k, v in params.items() if k in tunables}
            self.say(f"{label} ({entry.step_class.split(':')[-1]}), attempt {attempt}: {shown or params}")
            try:
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
                    workload=self.workload,
                )
            except ConfigError as err:
                self.store.finish_step(run_id, entry.number, stored_attempt, "failed", {}, str(err))
                self.say(f"{label}: {err}")
                return RunResult(EXIT_CONFIG, "failed", str(err), run_id, outcomes)
            ok = outcome.outputs_valid and outcome.error is None
            self.store.finish_step(
                run_id, entry.number, stored_attempt, "succeeded" if ok else "failed", outcome.metrics, outcome.error
            )
            outcomes.append(outcome)
            for cap in outcome.caps:
                self.say(f"{label}: {cap['field']} {cap['asked']} -> {cap['applied']}: {cap['reason']}")
            metrics = StepMetrics.from_dict(
                entry.number,
                outcome.metrics,
                outcome.params,
                name=outcome.name,
                attempt=attempt,
                outputs_valid=outcome.outputs_valid,
                error=outcome.error,
            )
            adv = advise(
                entry.number, metrics, history, self.settings, current_params=outcome.params, tunables=tunables,
                validate=validator_for(cls), context={"dataset": self.dataset, "attempts_this_run": attempt},
            )  # fmt: skip
            d = decide(
                metrics,
                attempt=attempt,
                total_retries_used=self.total_retries,
                elapsed_s=time.monotonic() - self.started,
                limits=self.settings.limits,
                outcome=adv,
                current_params=outcome.params,
            )
            self._record(run_id, entry, stored_attempt, metrics, adv, d, outcome, tunables)
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
    keys = ("survivors", "expected_chance_survivors", "completed_trials", "coverage", "seeds_tested")
    parts = [f"{k}={m[k]:.3g}" if isinstance(m.get(k), float) else f"{k}={m[k]}" for k in keys if k in m]
    parts.append(f"{m.get('duration_s', 0):.1f}s")
    return ", ".join(parts)


def pending_retry(store: RunStore, run_id: int, number: float) -> dict[str, Any] | None:
    """The params of a RETRY decided on the step's latest attempt in this run, not yet started (the run was
    halted or killed between the decision and the next attempt); None when there is none."""
    last = store.latest_step(run_id, number)
    decided = [d for d in store.decisions(run_id) if d["step"] == number]
    if last is None or not decided or decided[-1]["attempt"] != last.attempt or decided[-1]["decision"] != "RETRY":
        return None
    return dict(decided[-1]["applied"] or last.params or {})


def first_unfinished(store: RunStore, run_id: int, steps: list[StepEntry]) -> list[StepEntry]:
    """On --resume: the steps from the first one this run did not finish: a step is finished only when its
    latest attempt succeeded and was decided PROCEED (a pending RETRY or an undecided attempt is not)."""
    for i, entry in enumerate(steps):
        last = store.latest_step(run_id, entry.number)
        decided = [d for d in store.decisions(run_id) if d["step"] == entry.number and d["attempt"] == last.attempt] \
            if last is not None else []  # fmt: skip
        if last is None or last.status != "succeeded" or not decided or decided[-1]["decision"] != "PROCEED":
            return steps[i:]
    return []


def resumable_run(store: RunStore) -> int:
    run = store.find_resumable_run()
    if run is None:
        raise StoreError("no interrupted or failed run to resume; start one with `watcher run --from-step N`")
    return run.id


def plan(spec: PipelineSpec, request: RunRequest) -> list[StepEntry]:
    return resolve_steps(spec, request.from_step, request.to_step)
