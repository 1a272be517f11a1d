"""The coordinator's kernel warm-up (pipeline.prng.warm) compiles what the run's worker jobs will run, so a rig's
workers load every kernel from the cache instead of each compiling it at the same moment: checked in a fresh
process with an empty NUMBA_CACHE_DIR, for the variable-skip block jobs (the operators' main mode)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

SCRIPT = """
import json
from pathlib import Path
import yaml
from numba.core import event
import pipeline.worker
from pipeline.prng.warm import warm_kernels
from pipeline.prng.windows import block_tasks, window_batch_job
from pipeline.prng.workload import PrngWorkload

pipeline.worker.report_progress = lambda n: None
data = yaml.safe_load(Path("pipeline.yaml").read_text())["data"]
data.update(skip_mode="variable", offset_range=[0, 3])
work = PrngWorkload.load(data, source="pipeline.yaml", base=Path("."))
said = []
warm_kernels(work.data, work.train, said.append)
compiled = []

class Count(event.Listener):
    def on_start(self, ev):
        compiled.append(str(ev.data.get("dispatcher", "?")))

    def on_end(self, ev):
        pass

with event.install_listener("numba:compile", Count()):
    out = window_batch_job({"tasks": block_tasks(work.data, work.train, 8, 1.0, 0, 4096, tag=1)})
print(json.dumps({"said": said, "compiled_in_job": compiled, "tested": out["seeds_tested"]}))
"""


def test_warm_up_compiles_the_variable_block_kernel_the_jobs_run(tmp_path: Path) -> None:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    res = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["said"] == ["compiling kernels (first run only)"]
    assert got["compiled_in_job"] == []  # 54 functions compiled here when the warm-up sieved a fixed-skip window
    assert got["tested"] == 4096
