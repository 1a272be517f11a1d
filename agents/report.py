"""`watcher report`: one self-contained HTML file per run (plotly inlined: it opens on an air-gapped
laptop) plus stats.json for other tools."""

from __future__ import annotations

import html
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from agents.runstate import run_status
from cluster.files import write_json_atomic
from pipeline.store import RunStore


def _div(fig: go.Figure, title: str) -> str:
    fig.update_layout(title=title, height=360, margin={"l": 50, "r": 20, "t": 50, "b": 40})
    return fig.to_html(full_html=False, include_plotlyjs=False)


def _study_figures(state_dir: Path) -> list[str]:
    db = state_dir / "optuna.db"
    if not db.exists():
        return []
    import optuna

    out = []
    storage = f"sqlite:///{db.resolve()}"
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        complete = [t for t in study.trials if t.state.name == "COMPLETE"]
        if not study.trials:
            continue
        out.append(
            _div(optuna.visualization.plot_optimization_history(study), f"optimization history: {summary.study_name}")
        )
        try:
            if len(complete) >= 2 and len({tuple(sorted(t.params.items())) for t in complete}) >= 2:
                out.append(
                    _div(
                        optuna.visualization.plot_param_importances(study),
                        f"parameter importances: {summary.study_name}",
                    )
                )
        except (RuntimeError, ValueError, ZeroDivisionError) as err:
            out.append(
                f"<p>parameter importances unavailable for {html.escape(summary.study_name)}: "
                f"{html.escape(str(err))}</p>"
            )
        surv = [(t.number, t.user_attrs.get("survivors")) for t in study.trials if "survivors" in t.user_attrs]
        if surv:
            fig = go.Figure(go.Bar(x=[n for n, _ in surv], y=[s for _, s in surv]))
            fig.update_xaxes(title="trial")
            fig.update_yaxes(title="bidirectional survivors")
            out.append(_div(fig, f"survivors per trial: {summary.study_name}"))
    return out


def build_stats(store: RunStore, run_id: int) -> dict[str, Any]:
    run = store.get_run(run_id)
    steps = store.step_history(run_id=run_id)
    failures = store.chunk_failures(run_id)
    return {
        "run": run_id,
        "status": run.status if run else None,
        "reason": run.reason if run else None,
        "verdict": run.verdict if run else None,
        "started": run.started if run else None,
        "finished": run.finished if run else None,
        "steps": [
            {
                "step": s.number,
                "attempt": s.attempt,
                "status": s.status,
                "params": s.params,
                "duration_s": (s.metrics or {}).get("duration_s"),
                "seeds_tested": (s.metrics or {}).get("seeds_tested"),
                "seeds_per_s": ((s.metrics or {}).get("seeds_tested") or 0)
                / max((s.metrics or {}).get("duration_s") or 1e-9, 1e-9),
                "survivors": (s.metrics or {}).get("survivors"),
                "reward": (s.metrics or {}).get("best_value"),
                "error": s.error,
            }
            for s in steps
        ],
        "tasks": store.chunk_counts(run_id),
        "failures": [{k: f.get(k) for k in ("node", "gpu", "exit_code", "kind", "error", "time")} for f in failures],
        "decisions": [
            {k: d.get(k) for k in ("step", "attempt", "decision", "advisor", "reason", "fallback")}
            for d in store.decisions(run_id)
        ],
    }


def render_report(store: RunStore, state_dir: Path, run_id: int, out: Path) -> tuple[Path, Path]:
    stats = build_stats(store, run_id)
    parts: list[str] = []
    rows = "".join(
        f"<tr><td>{s['step']:g}</td><td>{s['attempt']}</td><td>{html.escape(str(s['status']))}</td>"
        f"<td>{s['survivors']}</td><td>{s['seeds_tested']}</td><td>{s['duration_s']}</td>"
        f"<td>{html.escape(json.dumps(s['params'], default=str))}</td><td>{html.escape(s['error'] or '')}</td></tr>"
        for s in stats["steps"]
    )
    parts.append(
        "<h2>Steps</h2><table><tr><th>step</th><th>attempt</th><th>status</th><th>survivors</th>"
        f"<th>seeds tested</th><th>seconds</th><th>params</th><th>error</th></tr>{rows}</table>"
    )
    drows = "".join(
        f"<tr><td>{d['step']:g}</td><td>{d['attempt']}</td><td>{d['decision']}</td><td>{d['advisor']}</td>"
        f"<td>{html.escape(str(d['reason']))}</td><td>{html.escape(str(d['fallback'] or ''))}</td></tr>"
        for d in stats["decisions"]
    )
    parts.append(
        "<h2>Decisions</h2><table><tr><th>step</th><th>attempt</th><th>decision</th><th>advisor</th>"
        f"<th>reason</th><th>fallback</th></tr>{drows}</table>"
    )
    parts.append("<h2>Optuna studies</h2>")
    parts.extend(_study_figures(state_dir) or ["<p>no studies yet</p>"])
    timings: dict[str, list[float]] = defaultdict(list)
    for step in {s["step"] for s in stats["steps"]}:
        for row in store.chunk_rows(run_id, step):
            if row.get("duration"):
                timings[str(row.get("node"))].append(float(row["duration"]))
    if timings:
        fig = go.Figure([go.Box(y=v, name=k) for k, v in sorted(timings.items())])
        fig.update_yaxes(title="chunk seconds")
        parts.append("<h2>Chunk timings per node</h2>" + _div(fig, "chunk durations per node (spot a slow rig)"))
    ledger = store.ledger_log(limit=500)
    if ledger:
        by_gpu: dict[str, list[tuple[float, str]]] = defaultdict(list)
        for e in ledger:
            by_gpu[f"{e['node']}:{e['gpu']}"].append((e["time"], e.get("status") or e.get("action") or ""))
        fig = go.Figure(
            [
                go.Scatter(x=[t for t, _ in v], y=[s for _, s in v], mode="markers+lines", name=k)
                for k, v in sorted(by_gpu.items())
            ]
        )
        parts.append("<h2>GPU health timeline</h2>" + _div(fig, "GPU checks and quarantines"))
    else:  # the section is always there, so its absence never hides whether GPUs were checked
        parts.append(
            "<h2>GPU health timeline</h2><p>no GPU check or quarantine recorded yet (a CPU-only node has no GPU "
            "health to track; rigs' GPUs are checked by every preflight)</p>"
        )
    quarantined = store.entries()
    qrows = "".join(f"<li>{html.escape(e.node)}:{e.gpu} — {html.escape(e.reason)}</li>" for e in quarantined)
    parts.append(f"<h2>Quarantined GPUs</h2><ul>{qrows or '<li>none</li>'}</ul>")
    record = store.get_run(run_id)
    title = f"watcher run {run_id}: {run_status(record, state_dir) if record else stats['status']}"
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p><b>{html.escape(str(stats['verdict'] or ''))}</b></p>"
        f"<p>{html.escape(str(stats['reason'] or ''))}</p>{''.join(parts)}</body></html>"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    stats_path = write_json_atomic(out.with_name("stats.json"), stats)
    return out, stats_path
