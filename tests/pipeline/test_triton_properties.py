"""The Triton paths against the reference on hypothesis' cases (the same strategies as the numba / torch property
tests: every preset and every mapping, blocks at 0 and at 2**32 - 1 included), run by Triton's interpreter on cpu
in a subprocess (TRITON_INTERPRET is read when the kernels are defined). Skipped where triton is absent.

The fixed-case interpreter tests (test_triton_kernels.py, test_mapping_triton.py) pin the corners and check each
filter's candidates exactly; this one lets hypothesis pick windows, thresholds, skips and directions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = 25  # per property: the interpreter runs each kernel op as a numpy call over a block

SCRIPT = r"""
import json, sys
sys.path.insert(0, "tests/pipeline")
from hypothesis import HealthCheck, assume, given, settings
from test_mapping_paths import cases as mapping_cases
from test_sieve_paths import cases as family_cases
from pipeline.prng.mappings import library as lib
from pipeline.prng.sieve.dispatch import _mapped_triton, _triton_walk
from pipeline.prng.sieve.reference import reference_sieve
from pipeline.prng.sieve.torch_path import triton_sieve

EXAMPLES = int(sys.argv[1])
seen = {"families": set(), "mappings": set()}
opts = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def rows(arrays):
    return [tuple(t) for t in zip(*(a.tolist() for a in arrays))]


@opts
@given(family_cases())
def families(case):
    spec, start, end = case
    assert rows(triton_sieve(spec, start, end, "cpu")) == reference_sieve(spec, range(start, end)), spec
    seen["families"].add(spec.generator)


@opts
@given(mapping_cases())
def mappings(case):
    spec, start, end = case
    walk = _triton_walk(spec, "cpu")
    assume(walk is not None)  # MT calls past the 227 outputs the walk reaches run on the torch path
    assert rows(_mapped_triton(spec, range(start, end), walk)) == lib.reference_sieve(spec, range(start, end)), spec
    seen["mappings"].add(spec.mapping)


families()
mappings()
print(json.dumps({k: sorted(v) for k, v in seen.items()}))
"""


@pytest.mark.slow
def test_triton_paths_agree_with_the_reference_on_hypothesis_cases() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(EXAMPLES)], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(seen["families"]) >= 5 and len(seen["mappings"]) >= 2, seen  # the cases did reach the kernels
