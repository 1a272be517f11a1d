from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.prng.generators.reference import generate
from pipeline.prng.sieve import SieveSpec, sieve_range
from pipeline.prng.synth import make_history

REPO = Path(__file__).resolve().parents[2]


def test_draws_follow_the_position_rule() -> None:
    history = make_history("lcg32", 99, 10, offset=3, skip=1)
    stream = generate("lcg32", 99, 3 + 10 * 2)
    assert [h["draw"] for h in history] == [stream[3 + i * 2 + 1] % 1000 for i in range(10)]
    assert [h["session"] for h in history[:3]] == ["midday", "evening", "midday"]
    assert history[2]["date"] == "2024-01-02"


def test_invalid_arguments_rejected() -> None:
    with pytest.raises(ValueError, match="draws"):
        make_history("lcg32", 1, 0)
    with pytest.raises(ValueError, match="generator"):
        make_history("nope", 1, 3)


def test_cli_writes_history_and_truth(tmp_path: Path) -> None:
    out = tmp_path / "h.json"
    cmd = [
        sys.executable,
        "-m",
        "pipeline.prng.synth",
        "--generator",
        "minstd",
        "--seed",
        "77",
        "--draws",
        "12",
        "--offset",
        "5",
        "--skip",
        "1",
        "--out",
        str(out),
        "--start-date",
        "2025-03-01",
    ]
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO, timeout=60)
    history = json.loads(out.read_text())
    assert history == make_history("minstd", 77, 12, offset=5, skip=1, start_date="2025-03-01")
    truth = json.loads((tmp_path / "h.json.truth.json").read_text())
    assert truth == {"generator": "minstd", "seed": 77, "offset": 5, "skip": 1, "draws": 12, "modulus": 1000}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


def test_cli_refuses_bad_values(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pipeline.prng.synth",
        "--generator",
        "lcg32",
        "--seed",
        "1",
        "--draws",
        "0",
        "--out",
        str(tmp_path / "x.json"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 2
    assert "draws" in proc.stderr
    assert not os.path.exists(tmp_path / "x.json")


def test_shipped_history_matches_its_truth_and_is_recoverable() -> None:
    history = json.loads((REPO / "data" / "history.json").read_text())
    truth = json.loads((REPO / "data" / "history.json.truth.json").read_text())
    assert truth["seed"] < 2**24  # the default pipeline sieves [0, 2**24)
    assert history == make_history(
        truth["generator"],
        truth["seed"],
        truth["draws"],
        offset=truth["offset"],
        skip=truth["skip"],
        modulus=truth["modulus"],
    )
    draws = [h["draw"] for h in history]
    seed = truth["seed"]
    spec = SieveSpec(
        truth["generator"],
        tuple(draws[-8:]),
        1.0,
        offset=truth["offset"],
        first_draw=len(draws) - 8,
        skip_max=3,
        direction="reverse",
    )
    found = sieve_range(spec, seed - 50_000, seed + 50_000, device="cpu")
    assert found.survivors() == [(seed, truth["skip"], 8)]
