"""`watcher status`: the current or last run at a glance. Exit 0 while a run is active, 3 otherwise,
so scripts can ask "is something running?" without parsing."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from agents.commands.common import CRASHED, CRASHED_FIX, open_store, run_status
from agents.lock import lock_is_held, read_holder
from cluster.config import default_config_path, load_config
from cluster.text import printable

EXIT_IDLE = 3


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("status", help="current or last run (exit 0 if a run is active, 3 if not)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--config", default=None)
    p.set_defaults(handler=run)


def collect(state_dir: Path, config_path: str | None) -> dict[str, Any]:
    active = lock_is_held(state_dir)
    out: dict[str, Any] = {"active": active, "holder": read_holder(state_dir) if active else None, "run": None}
    store = open_store(state_dir, must_exist=False)
    config = load_config(config_path or default_config_path())
    quarantined = store.entries() if store else []
    out["gpus"] = {
        n.name: {
            "slots": n.slot_count,
            "excluded": sorted(n.excluded_indices),
            "quarantined": sorted(e.gpu for e in quarantined if e.node == n.name),
        }
        for n in config.nodes
    }
    if store is None:
        return out
    run = store.latest_run()
    if run is None:
        return out
    steps = store.step_history(run_id=run.id)
    current = steps[-1] if steps else None
    status = run_status(run, state_dir)
    counts = store.chunk_counts(run.id, current.number) if current else {}
    if status == CRASHED:  # nothing runs them any more: they wait for --resume
        counts["interrupted"] = counts.pop("running", 0)
    rows = store.chunk_rows(run.id, current.number) if current else []
    eta = None
    finished = [r for r in rows if r.get("status") == "done" and r.get("duration")]
    left = counts.get("pending", 0) + counts.get("running", 0)
    if finished and left and status == "running":
        slots = max(1, sum(v["slots"] - len(v["excluded"]) - len(v["quarantined"]) for v in out["gpus"].values()))
        eta = sum(r["duration"] for r in finished) / len(finished) * left / slots
    decisions = store.decisions(run.id)
    out["run"] = {
        "id": run.id,
        "status": status,
        "fix": CRASHED_FIX if status == CRASHED else None,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started)),
        "step": current.number if current else None,
        "step_status": (CRASHED if status == CRASHED and current.status == "running" else current.status)
        if current
        else None,
        "attempt": current.attempt if current else None,
        "chunks": counts,
        "eta_s": round(eta, 1) if eta is not None else None,
        "breakers": [{"node": e.get("node"), "reason": e.get("reason")} for e in store.events(run.id, "breaker")],
        "last_decision": (
            {k: decisions[-1].get(k) for k in ("step", "decision", "advisor", "reason")} if decisions else None
        ),
        "reason": run.reason,
        "verdict": run.verdict,
    }
    store.close()
    return out


def run(args: argparse.Namespace) -> int:
    info = collect(Path(args.state_dir), args.config)
    if args.json:
        print(json.dumps(info, indent=1, default=str))
        return 0 if info["active"] else EXIT_IDLE
    r = info["run"]
    print(
        f"active: {'yes' if info['active'] else 'no'}"
        + (f" (pid {info['holder'].get('pid')})" if info["active"] else "")
    )
    if r:
        reason = f" ({printable(r['reason'])})" if r["reason"] else ""
        print(f"run {r['id']}: {r['status']}, started {r['started']}{reason}")
        if r["fix"]:
            print(f"  {r['fix']}")
        if r.get("verdict"):
            print(f"verdict: {printable(r['verdict'])}")
        if r["step"] is not None:
            c = r["chunks"]
            print(
                f"step {r['step']:g} attempt {r['attempt']}: {r['step_status']}; chunks done {c.get('done', 0)}, "
                + (f"interrupted {c['interrupted']}, " if "interrupted" in c else f"running {c.get('running', 0)}, ")
                + f"pending {c.get('pending', 0)}, failed {c.get('failed', 0)}"
                + (f"; ETA {r['eta_s']:.0f} s" if r["eta_s"] else "")
            )
        for b in r["breakers"]:
            print(f"circuit breaker open: {b['node']}: {printable(b['reason'])}")
        if r["last_decision"]:
            d = r["last_decision"]
            print(f"last decision: step {d['step']:g} {d['decision']} ({d['advisor']}): {printable(d['reason'])}")
    else:
        print("no run recorded yet")
    for node, g in info["gpus"].items():
        healthy = g["slots"] - len(g["excluded"]) - len(g["quarantined"])
        print(
            f"{node}: {healthy}/{g['slots']} usable; "
            f"excluded {g['excluded'] or '-'}; quarantined {g['quarantined'] or '-'}"
        )
    return 0 if info["active"] else EXIT_IDLE
