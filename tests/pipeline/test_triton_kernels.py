"""The fused Triton filter kernels (one per family), run by Triton's interpreter on cpu: survivors must equal the
reference's on one small block per preset (the generic power-of-two and 2**31-1 LCG kinds through the
prng_cluster presets; the walked xorshift64/128, xoshiro256++, sfc64 and Philox kernels), at both ends of the
seed space. Skipped where triton is absent."""

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
import json
from pipeline.prng.kernels.gpu.sieve import TRITON_GENERATORS
from pipeline.prng.kernels.gpu.stream import STREAM_GENERATORS
from pipeline.prng.generators.reference import GENERATORS
from pipeline.prng.sieve import SieveSpec
from pipeline.prng.sieve.reference import reference_sieve
from pipeline.prng.sieve.torch_path import triton_sieve
out = {}
cases = [
    (0, (1, 0, 2), dict(modulus=3, threshold=0.5, skip_max=1, offset=2)),
    # far positions (MT: twisted words from the op program), reverse order, a skip range not starting at 0
    (2**32 - 256, (4, 1, 3), dict(modulus=5, threshold=0.6, direction="reverse", offset=230, skip_min=1, skip_max=2)),
]
assert set(TRITON_GENERATORS + STREAM_GENERATORS) == set(GENERATORS)  # every preset has a kernel
for g in TRITON_GENERATORS + STREAM_GENERATORS:
    for lo, residues, kw in cases:
        spec = SieveSpec(g, residues, **kw)
        got = [list(t) for t in zip(*(x.tolist() for x in triton_sieve(spec, lo, lo + 256, "cpu")))]
        want = [list(t) for t in reference_sieve(spec, range(lo, lo + 256))]
        out[f"{g}@{lo}"] = [got == want, len(want) > 0]
print(json.dumps(out))
"""


def test_fused_triton_filters_match_reference_in_interpreter() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(result) == 2 * 22  # every preset of every family, prng_cluster.* included
    assert {k: v for k, v in result.items() if v != [True, True]} == {}
