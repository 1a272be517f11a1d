"""The Triton MT kernel, run by Triton's interpreter on cpu (no GPU here); skipped where triton is absent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys, torch
from pipeline.prng.kernels.gpu.mt_words import mt_words
from pipeline.prng.generators.torch_gen import _mt_words
from pipeline.prng.sieve import SieveSpec
from pipeline.prng.sieve.reference import reference_sieve
from pipeline.prng.sieve.torch_path import torch_sieve
seeds = torch.tensor([0, 1, 2**31 - 1, 2**31, 2**32 - 1, 12345, 987654321], dtype=torch.int64).to(torch.int32)
idx = [0, 1, 2, 226, 397, 398, 623]
a, b = mt_words(seeds, idx), _mt_words(seeds, idx)
words_equal = all(torch.equal(a[i], b[i]) for i in idx)
results = []
for gen, residues, kw, lo in [
    ("mt19937", (1, 0, 1), dict(modulus=2, threshold=0.6, skip_max=1), 0),
    ("php_mt_rand", (0, 1, 2), dict(modulus=3, threshold=0.6, direction="reverse", offset=5), 2**32 - 200),
    ("mt19937", (3, 1), dict(modulus=5, threshold=0.5, offset=226), 1000),
]:
    spec = SieveSpec(gen, residues, **kw)
    got = torch_sieve(spec, lo, lo + 200, "cpu", use_triton=True)
    got = [list(t) for t in zip(*(x.tolist() for x in got))]
    want = [list(t) for t in reference_sieve(spec, range(lo, lo + 200))]
    results.append(got == want and len(want) > 0)
print(json.dumps({"words_equal": words_equal, "sieves_equal": results}))
"""


@pytest.mark.slow
def test_triton_kernel_matches_reference_in_interpreter() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"words_equal": True, "sieves_equal": [True, True, True]}
