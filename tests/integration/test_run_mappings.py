"""Issue 17 through `watcher run`: histories drawn by the REAL libraries (tests/fixtures/mappings/history_*.json,
made by src/HistoryJava.java and src/history_numpy.py, see the README there) are recovered with the matching
`data.mapping`, and a `mod` run on the very same history does not recover the seed.

- Java: `new Random(12345)`, 2 discarded `nextInt(1000)` calls, then 60 draws `nextInt(1000)` (offset 2 counts
  calls).
- numpy: `RandomState(12345)`, 1 discarded `randint(1, 1001)` call, then 60 draws `randint(1, 1001)` (draws in
  1..1000: `data.draw_low: 1`); seed 12345's stream rejects inside the window, so calls and outputs part.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_budget_loop import attempts, case, output, watcher

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mappings"
SEED = 12345
STEP1 = {"trials": 4, "max_seeds": 1 << 14, "window_min": 10, "window_max": 12, "threshold_min": 0.9}
QUICK = {"limits": {"retries_per_step": 0, "total_retries": 0}}
CASES = {
    "java": ("history_java_next_int.json", {"generator": "java_lcg", "mapping": "java_next_int"}, 2),
    "numpy": ("history_numpy_randint.json", {"generator": "mt19937", "mapping": "numpy_randint", "draw_low": 1}, 1),
}


def run(tmp: Path, name: str, mapping: str | None = None) -> tuple[Any, int]:
    fixture, data, offset = CASES[name]
    history = json.loads((FIXTURES / fixture).read_text())
    data = {**data, "seed_range": [0, 1 << 16], "offset_range": [0, 3], "skip_range": [0, 0]}
    if mapping:
        data["mapping"] = mapping
    return watcher(tmp, case(tmp, history, data, STEP1, QUICK), "run", "--from-step", "1"), offset


def step3(tmp: Path) -> dict[str, Any]:
    return attempts(tmp, 3)[-1].metrics


@pytest.mark.parametrize("name", CASES)
def test_real_library_history_is_recovered_with_its_mapping(tmp_path: Path, name: str) -> None:
    res, offset = run(tmp_path, name)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"seed {SEED} recovered" in res.stdout, res.stdout
    metrics = step3(tmp_path)
    assert metrics["recovered"] is True and metrics["top_seed"] == SEED and metrics["holdout_match"] == 1.0
    (row,) = [r for r in output(tmp_path, "bidirectional_survivors.json")["survivors"] if r["seed"] == SEED]
    assert (row["offset"], row["skip"]) == (offset, 0)  # the discarded calls, counted as calls
    top = output(tmp_path, "ranked_survivors.json")["ranked"][0]
    assert top["seed"] == SEED and top["train_match"] == 1.0 and top["confirmed"] is True


@pytest.mark.parametrize("name", CASES)
def test_the_same_history_read_as_raw_outputs_mod_n_is_not_recovered(tmp_path: Path, name: str) -> None:
    res, _ = run(tmp_path, name, mapping="mod")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"seed {SEED} recovered" not in res.stdout and "no seed reproduces this history" in res.stdout, res.stdout
    metrics = step3(tmp_path)
    assert metrics["recovered"] is False and metrics["top_seed"] != SEED
    assert SEED not in {r["seed"] for r in output(tmp_path, "bidirectional_survivors.json")["survivors"]}
