"""Pipeline building blocks without a cluster: histories, outputs, spec, studies, scoring."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import optuna
import pytest

from cluster.errors import ConfigError, StepError
from pipeline.outputs import check_complete, read_output, write_output
from pipeline.prng.data import load_history, parse_history, split
from pipeline.prng.scoring import chance_baseline, score_seed
from pipeline.prng.sieve import generate
from pipeline.spec import load_pipeline
from pipeline.studies import open_study, run_trials, warm_start

REPO = Path(__file__).resolve().parents[2]


WORKER = [sys.executable, "-m", "pipeline.worker", "pipeline.prng.jobs"]


def test_shipped_history_and_pipeline_load() -> None:
    history = load_history(REPO / "data" / "history.json")
    train, holdout = split(history, 0.2)
    assert len(train) == 96 and len(holdout) == 24
    spec = load_pipeline(REPO / "pipeline.yaml")
    assert [s.number for s in spec.steps] == [1, 2, 2.5, 3]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ([{"date": "d", "session": "s"}], "entry [0].draw is missing"),
        ([{"date": "d", "session": "s", "draw": 1000}], "entry [0].draw must be an integer 0-999"),
        ([{"date": "d", "session": "s", "draw": True}], "entry [0].draw"),
        ({"draws": []}, "non-empty JSON list"),
        ([1, 2], "entry [0] is not an object"),
    ],
)
def test_bad_history_is_one_line(data: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_history(data, "h.json")
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_bad_pipeline_yaml_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("steps:\n  - number: 1\n    class: pipeline.steps.window_optimizer:WindowOptimizer\n    parms: {}\n")
    with pytest.raises(ConfigError, match=r"steps\[0\]\.parms: unknown key"):
        load_pipeline(bad)
    bad.write_text("steps: [\n")
    with pytest.raises(ConfigError, match="invalid YAML at line"):
        load_pipeline(bad)


def test_outputs_complete_only_when_current(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    write_output(path, "thing", {"x": 1}, {"history": "abc"})
    assert read_output(path, "thing", {"history": "abc"}) == {"x": 1}
    with pytest.raises(StepError, match="made from other inputs"):
        read_output(path, "thing", {"history": "other"})
    write_output(path, "thing", {"x": 1}, {}, status="in_progress")
    with pytest.raises(StepError, match=r"out.json: status is 'in_progress'"):
        check_complete(path)
    path.write_text('{"schema": "thing", "status": "compl')
    with pytest.raises(StepError, match=r"out.json: corrupted"):
        check_complete(path)
    assert not list(tmp_path.glob(".*tmp")), "temp files left behind"


def test_study_runs_exactly_n_trials_and_warm_starts(tmp_path: Path) -> None:
    def suggest(trial: optuna.Trial) -> dict:
        return {"x": trial.suggest_int("x", 0, 20)}

    def evaluate(batch):
        out = []
        for _, cfg in batch:
            out.append("pruned" if cfg["x"] % 3 == 0 else (None if cfg["x"] == 7 else float(cfg["x"])))
        return out

    study = open_study(tmp_path, "s1")
    counts = run_trials(study, 9, 4, suggest, evaluate)
    assert counts.completed + counts.pruned + counts.failed == 9 and len(study.trials) == 9
    best = study.best_trial
    again = open_study(tmp_path, "s1")
    assert warm_start(again).number == best.number  # type: ignore[union-attr]
    counts2 = run_trials(again, 3, 2, suggest, evaluate)
    assert counts2.first_number == 9  # trial numbers go on
    assert again.trials[9].params == best.params  # the first new trial is the earlier best
    assert len(again.trials) == 12


def test_scoring_prefers_the_true_seed_and_knows_chance() -> None:
    outputs = generate("lcg32", 42, 400)
    draws = [outputs[5 + j * 3 + 2] % 1000 for j in range(40)]
    score, exact = score_seed(outputs, draws, 0, 5, 2, {"skip_tolerance": 0})
    assert (score, exact) == (1.0, 1.0)
    other = generate("lcg32", 43, 400)
    assert score_seed(other, draws, 0, 5, 2, {"skip_tolerance": 0})[0] < 0.2
    assert chance_baseline({"skip_tolerance": 2, "partial_weight": 0.5}) > chance_baseline({})


def test_worker_runs_window_batch_and_score(tmp_path: Path) -> None:
    import subprocess

    from pipeline.prng.data import DataSpec
    from pipeline.prng.windows import window_specs

    data = DataSpec(generator="lcg32", offset_range=(5, 5), skip_range=(0, 3))
    outputs = generate("lcg32", 7777, 2000)
    draws = [outputs[5 + j * 3 + 2] % 1000 for j in range(60)]
    fwd, rev = window_specs(data, draws, 8, 1.0, 5)
    job = {"kind": "window_batch", "tasks": [{"forward": fwd, "reverse": rev, "start": 7000, "end": 9000, "tag": 5}]}
    res = subprocess.run(WORKER, input=json.dumps(job), capture_output=True,
                         text=True, cwd=REPO, timeout=120)  # fmt: skip
    reply = json.loads(res.stdout)
    assert reply["ok"] and reply["tasks"][0]["survivors"] == [[7777, 2, 8, 8]]
    hist = tmp_path / "h.json"
    hist.write_text(json.dumps(draws))
    job = {"kind": "score", "generator": "lcg32", "history_file": str(hist), "survivors": [[7777, 2, 5], [1, 2, 5]]}
    res = subprocess.run(WORKER, input=json.dumps(job), capture_output=True,
                         text=True, cwd=REPO, timeout=120)  # fmt: skip
    reply = json.loads(res.stdout)
    assert reply["exact"][0] == 1.0 and reply["exact"][1] < 0.1
    bad = subprocess.run(WORKER, input='{"kind": "score"}', capture_output=True,
                         text=True, cwd=REPO, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "job.generator is missing" in bad.stdout
