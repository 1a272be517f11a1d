"""Bad data, step and bounds inputs through `watcher run` (and `--dry-run`): each is a ConfigError, exit
78 at once, one line naming the field and a fix, never retried, and no run left behind in the store.
A run that dies of an exception is recorded as failed with its reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.store import RunStore

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration]
ENV = {k: v for k, v in os.environ.items() if k not in {"ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"}}
GOOD_HISTORY = json.loads((REPO / "data" / "history.json").read_text())


def data(**kw: Any) -> Callable[[dict, Path], None]:
    return lambda spec, _tmp: spec["data"].update(kw)


def step1(**kw: Any) -> Callable[[dict, Path], None]:
    return lambda spec, _tmp: spec["steps"][0]["params"].update(kw)


def bounds(**kw: Any) -> Callable[[dict, Path], None]:
    return lambda spec, _tmp: spec["agent"].setdefault("bounds", {}).update(kw)


def history(content: bytes | str | None) -> Callable[[dict, Path], None]:
    def change(spec: dict, tmp: Path) -> None:
        path = tmp / "bad_history.json"
        if content is None:
            path.mkdir()  # a directory where the file should be
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        spec["data"]["history"] = str(path)

    return change


CASES: list[tuple[str, Callable[[dict, Path], None], str]] = [
    ("unknown generator", data(generator="lcg33"), "data: generator: unknown generator 'lcg33'"),
    ("modulus 1", data(modulus=1), "data: modulus"),
    ("empty seed range", data(seed_range=[5, 5]), "data: seed_range: must be a non-empty"),
    ("seed range past 2^32", data(seed_range=[0, 1 << 33]), "data: seed_range"),
    ("seed range of text", data(seed_range=[0, "lots"]), "data: seed_range[1]"),
    ("offsets too wide", data(offset_range=[0, 100_000]), "data: offset_range: [0, 100000] is too wide"),
    ("skips reversed", data(skip_range=[3, 1]), "data: skip_range: must be [low, high]"),
    ("holdout too big", data(holdout_fraction=0.95), "data: holdout_fraction"),
    ("unknown data key", data(seeds=[1, 2]), "data: seeds: unknown key"),
    ("history missing", data(history="/nonexistent/h.json"), "history file not found"),
    ("history empty", history(""), "history file is empty"),
    ("history not UTF-8", history(b"\xff\xfe[\x00\x01"), "history is not UTF-8"),
    ("history a directory", history(None), "history is a directory"),
    ("history not a list", history('{"draw": 1}'), "a history is a non-empty JSON list"),
    ("draw of wrong type", history('[{"date": "d", "session": "s", "draw": "7"}]'), "entry [0].draw"),
    ("too few draws", history(json.dumps(GOOD_HISTORY[:6])), "too few for training"),
    ("step param of wrong type", step1(trials="many"), "step 1: params: trials"),
    ("unknown step param", step1(max_seed=10), "step 1: params: max_seed: unknown key"),
    ("window floor above ceiling", step1(window_min=20), "window_min 20 is above window_max 12"),
    ("bound outside the step", bounds(trials={"min": 10, "max": 20_000}), "bounds.trials.max: 20000 is outside"),
    ("bound on nothing tunable", bounds(threshold={"min": 0.1, "max": 0.9}), "bounds.threshold: no step lets"),
]


def prepare(tmp: Path, change: Callable[[dict, Path], None]) -> Path:
    spec = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    spec["data"]["history"] = str(REPO / "data" / "history.json")
    change(spec, tmp)
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def watcher(tmp: Path, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agents.cli", "--state-dir", str(tmp / "state"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          env={**ENV, **(extra_env or {})})  # fmt: skip


@pytest.mark.parametrize(("change", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_final_and_named(tmp_path: Path, change: Callable[[dict, Path], None], words: str) -> None:
    pipeline = prepare(tmp_path, change)
    for extra in (["--dry-run"], []):
        res = watcher(tmp_path, "run", "--from-step", "1", "--pipeline", str(pipeline), *extra)
        assert res.returncode == 78, res.stdout + res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], res.stderr
        assert "Traceback" not in res.stderr and "step 1 (" not in res.stdout  # nothing ran, nothing retried
    db = tmp_path / "state" / "watcher.db"
    if db.exists():
        with RunStore(db, readonly=True) as store:
            assert store.runs() == []


def test_from_step_after_to_step_is_a_usage_error(tmp_path: Path) -> None:
    res = watcher(tmp_path, "run", "--from-step", "3", "--to-step", "1", "--dry-run")
    assert res.returncode == 2 and "--from-step 3 is after --to-step 1" in res.stderr


CRASHING_STEP = """
from pipeline.step import Step, StepContext, StepParams, StepResult


class Crash(Step[StepParams]):
    number = 1.0
    name = "crash"

    def run(self, ctx: StepContext[StepParams]) -> StepResult:
        raise MemoryError("cannot allocate 64 GiB for the survivor table")


class Vanish(Step[StepParams]):
    number = 1.0
    name = "vanish"

    def run(self, ctx: StepContext[StepParams]) -> StepResult:
        raise SystemExit("the disk is full")
"""


@pytest.mark.parametrize(("step_class", "status", "words"), [
    ("crashing_step:Crash", "escalated", "MemoryError: cannot allocate 64 GiB"),
    ("crashing_step:Vanish", "failed", "SystemExit: the disk is full"),
])  # fmt: skip
def test_a_run_ended_by_an_exception_is_recorded_with_its_reason(
    tmp_path: Path, step_class: str, status: str, words: str
) -> None:
    (tmp_path / "crashing_step.py").write_text(CRASHING_STEP)

    def one_step(spec: dict, _tmp: Path) -> None:
        spec["steps"] = [{"number": 1, "class": step_class, "params": {}}]
        spec["agent"]["limits"] = {"retries_per_step": 1}

    pipeline = prepare(tmp_path, one_step)
    config = json.loads((REPO / "distributed_config.json").read_text())
    config["nodes"][0]["ramdisk_path"] = str(tmp_path / "ramdisk")
    (tmp_path / "cluster.json").write_text(json.dumps(config))
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{ENV.get('PYTHONPATH', '')}"}
    res = watcher(tmp_path, "run", "--from-step", "1", "--pipeline", str(pipeline), "--config",
                  str(tmp_path / "cluster.json"), extra_env=env)  # fmt: skip
    assert res.returncode != 0
    with RunStore(tmp_path / "state" / "watcher.db", readonly=True) as store:
        (run,) = store.runs()
        assert run.status == status and run.status != "running"
        steps = store.step_history(run_id=run.id)
        assert steps and all(s.status == "failed" and words in (s.error or "") for s in steps)
        if status == "failed":
            assert words in (run.reason or "")
