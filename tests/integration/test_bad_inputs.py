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


def history(content: bytes | str | list | None) -> Callable[[dict, Path], None]:
    def change(spec: dict, tmp: Path) -> None:
        path = tmp / "bad_history.json"
        if content is None:
            path.mkdir()  # a directory where the file should be
        elif isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, list):
            path.write_text(json.dumps(content))
        else:
            path.write_text(content)
        spec["data"]["history"] = str(path)

    return change


def history_at(make: Callable[[Path], Path]) -> Callable[[dict, Path], None]:
    """data.history pointing at something `make` creates (a FIFO, a device, a huge file)."""
    return lambda spec, tmp: spec["data"].update(history=str(make(tmp)))


def fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "pipe.json")  # nothing ever writes it: reading it would hang `--dry-run` for ever
    return tmp / "pipe.json"


def huge(tmp: Path) -> Path:
    with (tmp / "huge.json").open("wb") as fh:
        fh.truncate(257 << 20)  # sparse: takes no disk
    return tmp / "huge.json"


DUPLICATED = GOOD_HISTORY[:11] + GOOD_HISTORY[10:]  # entry 10 twice: every later draw shifts by one
BACKWARDS = [*GOOD_HISTORY[:20], GOOD_HISTORY[30], *GOOD_HISTORY[20:30], *GOOD_HISTORY[31:]]


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
    ("history entry twice", history(DUPLICATED), "entry [11] repeats entry [10] (date 2024-01-06, session midday)"),
    (
        "history dates backwards",
        history(BACKWARDS),
        "entry [21].date 2024-01-11 is before entry [20]'s date 2024-01-16",
    ),
    (
        "history key twice",
        history('[{"date": "2024-01-01", "session": "a", "draw": 1, "draw": 2}]'),
        "entry [0] has the key 'draw' twice",
    ),
    ("draw a bool", history('[{"date": "2024-01-01", "session": "a", "draw": true}]'), "entry [0].draw"),
    ("date a number", history('[{"date": 20240101, "session": "a", "draw": 1}]'), "entry [0].date must be a"),
    ("date not a date", history('[{"date": "Monday", "session": "a", "draw": 1}]'), "'Monday' is not an ISO date"),
    ("history a FIFO", history_at(fifo), "history is not a regular file"),
    ("history a device", history_at(lambda _tmp: Path("/dev/zero")), "/dev/zero: history is not a regular file"),
    ("history too big", history_at(huge), "history is 257 MiB, above the 256 MiB"),
    ("modulus a string", data(modulus="1000"), "data: modulus: Input should be a valid integer"),
    ("holdout a string", data(holdout_fraction="0.2"), "data: holdout_fraction"),
    ("trials a bool", step1(trials=True), "step 1: params: trials: Input should be a valid integer; got True"),
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


def preflight(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "agents.commands.preflight", "check", "--state-dir", str(tmp / "state"), *args]
    return subprocess.run(
        argv, cwd=REPO, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, env=ENV
    )


@pytest.mark.parametrize(("change", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_final_and_named(tmp_path: Path, change: Callable[[dict, Path], None], words: str) -> None:
    """`watcher run`, `--dry-run` and `preflight check --step 1` go through one loader: the same exit 78 and line."""
    pipeline = prepare(tmp_path, change)
    # preflight check --step 1 too where the history is at fault: the case the one loader is there for
    history_at_fault = any(w in words for w in ("history", "entry", "regular file"))
    for extra in (["--dry-run"], [], None) if history_at_fault else (["--dry-run"], []):
        if extra is None:
            res = preflight(tmp_path, "--step", "1", "--pipeline", str(pipeline))
        else:
            res = watcher(tmp_path, "run", "--from-step", "1", "--pipeline", str(pipeline), *extra)
        assert res.returncode == 78, res.stdout + res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], res.stderr
        assert "Traceback" not in res.stderr and "step 1 (" not in res.stdout  # nothing ran, nothing retried
    db = tmp_path / "state" / "watcher.db"
    if db.exists():
        with RunStore(db, readonly=True) as store:
            assert store.runs() == []


def test_repeated_keys_and_bool_overrides_are_refused_by_name(tmp_path: Path) -> None:
    pipeline = prepare(tmp_path, lambda spec, _tmp: None)
    text = pipeline.read_text()
    twice = tmp_path / "twice.yaml"
    twice.write_text(text.replace("data:\n", "data:\n  modulus: 7\n", 1))  # data.modulus is listed further down too
    config = (REPO / "distributed_config.json").read_text()
    doubled = tmp_path / "doubled.json"
    doubled.write_text(config.replace('"gpu_kind": "cpu"', '"gpu_kind": "cpu", "gpu_kind": "rocm"'))
    for args, words in (
        (["--pipeline", str(twice)], "duplicate key 'modulus' at line"),
        (["--pipeline", str(pipeline), "--config", str(doubled)], "has the key 'gpu_kind' twice"),
        (["--pipeline", str(pipeline), "--set", "1.trials=true"], "step 1: params: trials"),
    ):
        res = watcher(tmp_path, "run", "--from-step", "1", "--dry-run", *args)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 78 and len(lines) == 1 and words in lines[0], res.stderr


def test_a_relative_history_is_read_beside_its_pipeline_yaml(tmp_path: Path) -> None:
    """data.history: h.json next to pipeline.yaml is found from any current directory, the right file is hashed."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "h.json").write_text(json.dumps(GOOD_HISTORY))
    pipeline = prepare(folder, lambda spec, _tmp: spec["data"].update(history="h.json"))
    for cwd in (REPO, tmp_path):
        res = subprocess.run([sys.executable, "-m", "agents.cli", "--state-dir", str(tmp_path / "state"), "run",
                              "--from-step", "1", "--dry-run", "--pipeline", str(pipeline)], cwd=cwd,
                             capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                             env={**ENV, "PYTHONPATH": str(REPO)})  # fmt: skip
        assert res.returncode == 0, res.stderr


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
