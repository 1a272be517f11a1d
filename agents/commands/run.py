"""`watcher run --from-step N`: the supervised run (preflight, advisor, run, decide, per step)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from agents.lock import RunLock
from agents.logging_setup import note, setup_logging
from agents.settings import AgentSettings, check_bounds
from agents.watcher import RunRequest, Supervisor, first_unfinished, plan, resumable_run
from cluster.config import default_config_path, load_config
from cluster.errors import EXIT_OK, UsageError
from cluster.scheduler.ray_slots import backend as ray_backend
from pipeline.runner import step_for
from pipeline.spec import PipelineSpec, default_pipeline_path, load_pipeline, load_workload
from pipeline.store import RunStore
from pipeline.workload import Workload


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="run pipeline steps under supervision")
    p.add_argument("--from-step", type=float, default=None, help="first step (e.g. 1, 2, 2.5)")
    p.add_argument("--to-step", type=float, default=None, help="last step (default: the last one)")
    p.add_argument("--resume", action="store_true", help="continue the last interrupted or failed run")
    p.add_argument("--resume-if-crashed", action="store_true", help="resume if the last run crashed, else start")
    p.add_argument("--dry-run", action="store_true", help="validate and show the plan; run nothing")
    p.add_argument("--config", default=None, help="distributed_config.json")
    p.add_argument("--pipeline", default=None, help="pipeline.yaml")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="STEP.PARAM=VALUE",
        help="override a step parameter for this run, e.g. --set 1.max_seeds=10000 (repeatable)",
    )
    p.set_defaults(handler=run)


def parse_overrides(items: list[str]) -> dict[float, dict[str, Any]]:
    out: dict[float, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        step, dot, name = key.rpartition(".")
        try:
            number = float(step)
        except ValueError:
            number = None
        if not sep or not dot or number is None or not name:
            raise UsageError(f"--set {item!r}: expected STEP.PARAM=VALUE, e.g. --set 1.max_seeds=100000")
        out.setdefault(number, {})[name] = yaml.safe_load(value)
    return out


def stored_overrides(stored: Any) -> list[str]:
    """The --set items a run was started with (stored with the run; older runs stored only their argv), so a
    resumed run keeps them."""
    if isinstance(stored, dict):
        return [str(item) for item in stored.get("set") or []]
    items = [str(a) for a in stored] if isinstance(stored, list) else []
    out = []
    for i, arg in enumerate(items):
        if arg == "--set" and i + 1 < len(items):
            out.append(items[i + 1])
        elif arg.startswith("--set="):
            out.append(arg.removeprefix("--set="))
    return out


def ignored_on_resume(args: argparse.Namespace, original: RunRequest) -> str:
    """The options of this command line a resumed run does not use (its own steps and --set values win)."""
    ignored = []
    if args.from_step is not None and args.from_step != original.from_step:
        ignored.append(f"--from-step {args.from_step:g}")
    if args.to_step is not None and args.to_step != original.to_step:
        ignored.append(f"--to-step {args.to_step:g}")
    if args.overrides and parse_overrides(args.overrides) != original.overrides:
        ignored.append("--set " + " --set ".join(args.overrides))
    return ", ".join(ignored)


def announce(text: str) -> None:
    """A line for the operator (decisions, the verdict, how the run ended), kept in watcher.log too."""
    print(text, flush=True)
    note(text)


def validate_plan(spec: PipelineSpec, settings: AgentSettings, overrides: dict[float, dict[str, Any]]) -> Workload:
    """Everything that can be checked before a run starts, so a mistake is a ConfigError (exit 78) now and
    never a retried failure later: the data section and the history it names, every step's params (with
    the --set overrides), and the agent's bounds against what each step lets an advisor tune."""
    workload = load_workload(spec)
    for number in overrides:
        spec.entry(number)  # names the step when --set points at one that does not exist
    tunables = {}
    for entry in spec.steps:
        cls = step_for(entry)
        cls.parse_params(
            {**entry.params, **overrides.get(entry.number, {})}, f"pipeline.yaml: step {entry.number:g}: params"
        )
        tunables[entry.number] = cls.tunables()
    check_bounds(settings, tunables)
    return workload


def run(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    config = load_config(args.config or default_config_path())
    spec = load_pipeline(args.pipeline or default_pipeline_path())
    settings = AgentSettings.from_mapping(spec.agent)
    overrides = parse_overrides(args.overrides)
    if args.from_step is None and not (args.resume or args.resume_if_crashed):
        raise UsageError("say where to start: --from-step N (or --resume)")
    if args.resume:
        given = [name for name, value in (("--from-step", args.from_step), ("--to-step", args.to_step),
                                          ("--set", args.overrides)) if value]  # fmt: skip
        if given:
            raise UsageError(
                f"--resume continues the interrupted run with its own steps and parameters; {' and '.join(given)} "
                "cannot change them: drop them, or start a new run with --from-step N"
            )
    if args.from_step is not None and args.to_step is not None and args.from_step > args.to_step:
        raise UsageError(f"--from-step {args.from_step:g} is after --to-step {args.to_step:g}; fix: swap them")
    request = RunRequest(
        from_step=args.from_step if args.from_step is not None else spec.steps[0].number,
        to_step=args.to_step,
        resume=args.resume,
        dry_run=args.dry_run,
        overrides=overrides,
    )
    steps = plan(spec, request)
    workload = validate_plan(spec, settings, overrides)
    if config.scheduler.slot_mode == "ray":
        ray_backend.joined(config)  # a Ray node with no entry in the config is refused now (ConfigError, exit 78)
    if args.dry_run:
        for entry in steps:
            print(
                f"step {entry.number:g}: {entry.step_class} { ({**entry.params, **overrides.get(entry.number, {})}) }"
            )
        print(f"nodes: {', '.join(n.name for n in config.nodes)}")
        print("configuration, data and step parameters are valid")
        return EXIT_OK
    with RunLock(state_dir, {"halt_file": settings.limits.halt_file}):
        setup_logging(state_dir)
        store = RunStore(state_dir / "watcher.db")
        run_id: int | None = None
        try:
            if args.resume:
                run_id = resumable_run(store)
            elif args.resume_if_crashed:
                last = store.latest_run()
                # We hold the lock, so a run still marked "running" has no live process: it crashed.
                if last is not None and last.status == "running":
                    run_id = last.id
            if run_id is not None:
                record = store.get_run(run_id)
                original = RunRequest(
                    from_step=record.from_step if record and record.from_step is not None else request.from_step,
                    to_step=record.to_step if record else None,
                    resume=True,
                    overrides=parse_overrides(stored_overrides(record.args if record else None)),
                )
                if args.resume_if_crashed:
                    ignored = ignored_on_resume(args, original)
                    if ignored:
                        announce(f"resuming crashed run {run_id} as it was started: {ignored} apply to a new run only")
                request = original
                store.resume_run(run_id)
                steps = first_unfinished(store, run_id, plan(spec, original))
                if not steps:
                    announce(f"run {run_id} has no unfinished step")
                    store.finish_run(run_id, "succeeded", "nothing left to resume")
                    return EXIT_OK
                announce(f"resuming run {run_id} at step {steps[0].number:g} (steps up to {steps[-1].number:g})")
            else:
                stored = {"argv": sys.argv[1:], "set": list(args.overrides)}
                run_id = store.create_run(request.from_step, request.to_step, args=stored)
                numbers = ", ".join(f"{s.number:g}" for s in steps)
                announce(f"run {run_id}: steps {numbers} on {len(config.nodes)} node(s)")
            sup = Supervisor(
                config=config,
                spec=spec,
                settings=settings,
                store=store,
                state_dir=state_dir,
                workload=workload,
                say=announce,
            )
            result = sup.run_steps(run_id, steps, request)
            final = result.outcomes[-1] if result.outcomes else None
            verdict = final.metrics.get("verdict") if final is not None and result.status == "succeeded" else None
            store.finish_run(run_id, result.status, result.reason, verdict=verdict)
        except BaseException as err:  # whatever ends the run, the store says so, with the reason
            if run_id is not None:
                reason = (
                    "interrupted (Ctrl-C)" if isinstance(err, KeyboardInterrupt) else f"{type(err).__name__}: {err}"
                )
                store.fail_unfinished(run_id, reason[:500])
            raise
        finally:
            store.close()
        if verdict:
            announce(verdict)
        announce(f"run {run_id} {result.status}: {result.reason}")
    return result.exit_code
