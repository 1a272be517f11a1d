"""The body of a slot's Ray actor, in-process (no Ray needed): it runs the worker command as the one-shot worker
process would (same answer, same exit codes, stderr kept), chunk after chunk, with the slot's environment set
before any job runs, and answers pings while a chunk runs."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.files import installed_version
from cluster.scheduler.ray_actor import SlotActor, split_argv
from pipeline.prng.generators.reference import generate

WORKER = Path(__file__).with_name("sched_worker.py")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean_env() -> Iterator[None]:
    """The actor sets the slot's variables, its working directory and sys.path (its own process, under Ray): put
    them back."""
    saved, cwd, path = dict(os.environ), os.getcwd(), list(sys.path)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        os.chdir(cwd)
        sys.path[:] = path


def test_split_argv_skips_interpreter_options_and_finds_the_program() -> None:
    assert split_argv(["-m", "pipeline.worker", "pipeline.prng.jobs"]) == (
        "module",
        "pipeline.worker",
        ["pipeline.prng.jobs"],
    )
    assert split_argv(["-S", "-u", "/w.py", "--x"]) == ("script", "/w.py", ["--x"])
    assert split_argv(["-Su", "-X", "dev", "-Wignore", "-m", "m"]) == ("module", "m", [])
    for bad in ([], ["-c", "print(1)"], ["-S"], ["-m"]):
        with pytest.raises(ValueError):
            split_argv(bad)


def test_the_jobs_table_answers_as_the_one_shot_worker_does(clean_env: None) -> None:
    actor = SlotActor(["-m", "pipeline.worker", "pipeline.prng.jobs"], {"WATCHER_SLOT": "rig-a:1"}, str(REPO))
    assert os.environ["WATCHER_SLOT"] == "rig-a:1"
    stream = generate("mt19937", 5000, 12)
    spec = {"generator": "mt19937", "residues": [v % 1000 for v in stream[2:10]], "threshold": 1.0, "offset": 2}
    for _ in range(2):  # the second chunk runs in the same process, imports already done
        out = actor.run("c1", 1, {"kind": "sieve", "spec": spec, "start": 0, "end": 20000})
        assert out["exit"] == 0, out
        reply = json.loads(out["stdout"].strip().splitlines()[-1])
        assert reply["ok"] is True and reply["survivors"] == [[5000, 0, 8]]
    bad = actor.run("c2", 1, {"kind": "sieve", "spec": {**spec, "modulus": 1}, "start": 0, "end": 10})
    assert bad["exit"] == 2 and "spec.modulus" in json.loads(bad["stdout"])["error"]
    assert actor.hello()["version"] == installed_version() and actor.hello()["pid"] == os.getpid()
    assert os.getcwd() == str(REPO)
    assert os.environ["WATCHER_CHUNK_ID"] == "c2"


def test_a_script_worker_keeps_exit_codes_stderr_and_the_slot(tmp_path: Path, clean_env: None) -> None:
    actor = SlotActor(["-S", str(WORKER)], {"WATCHER_SLOT": "b:0"}, str(tmp_path))
    ok = actor.run("c", 2, {"value": 3, "sleep": 0})
    answer = json.loads(ok["stdout"].strip().splitlines()[-1])
    assert ok["exit"] == 0 and answer["slot"] == "b:0" and answer["pid"] == os.getpid()
    failed = actor.run("c", 2, {"value": 3, "sleep": 0, "fail_slots": ["b:0"]})
    assert failed["exit"] == 3 and failed["stderr"].strip().endswith("simulated failure on b:0")
    assert actor.run("c", 2, {"value": 1, "sleep": 0, "bad_spec": True})["exit"] == 2


def test_an_uncaught_exception_is_exit_1_with_its_traceback(tmp_path: Path, clean_env: None) -> None:
    script = tmp_path / "boom.py"
    script.write_text("import sys\nprint('partial')\nraise RuntimeError('kernel exploded')\n")
    out = SlotActor([str(script)], {}, str(tmp_path)).run("c", 1, {})
    assert out["exit"] == 1 and out["stdout"] == "partial\n"
    assert "RuntimeError: kernel exploded" in out["stderr"] and "Traceback" in out["stderr"]
    missing = SlotActor(["-m", "no_such_module_here"], {}, str(tmp_path)).run("c", 1, {})
    assert missing["exit"] == 1 and "No module named no_such_module_here" in missing["stderr"]


def test_pings_answer_while_a_chunk_runs_with_its_stderr_so_far(tmp_path: Path, clean_env: None) -> None:
    script = tmp_path / "slow.py"
    script.write_text("import sys, time\nsys.stderr.write('loading kernels\\n')\ntime.sleep(0.6)\nprint('{}')\n")
    actor = SlotActor([str(script)], {}, str(tmp_path))
    assert actor.ping()["stderr"] == "" and actor.ping()["elapsed"] == 0.0
    done: dict[str, object] = {}
    thread = threading.Thread(target=lambda: done.update(actor.run("c", 1, {})))
    thread.start()
    time.sleep(0.3)
    busy = actor.ping()
    thread.join(5)
    assert busy["stderr"] == "loading kernels" and busy["elapsed"] > 0
    assert done["exit"] == 0
