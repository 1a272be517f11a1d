"""The fused Triton walks of library calls (pipeline.prng.kernels.gpu.mapped: java.util.Random's, and MT19937's
for numpy, PHP and Python), run by Triton's interpreter on cpu (no GPU here); skipped where triton is absent.

Two things are checked per case, each against the plain-Python oracle: the walk's candidates are exactly the
seeds whose calls match some filter draw (a superset would still give right survivors, so only this catches a
wrong rejection or a wrong nextDouble in the kernel), and the survivors after exact scoring are the oracle's.
Cases cover nextInt with a bound that rejects about half its outputs, a power-of-two bound, nextDouble; numpy randint
and Python randrange with bounds that reject a quarter or more of their outputs (CPython's init_by_array seeding
included), PHP mt_rand with a bound that rejects a quarter (the planted seed's early calls redraw) and a power of
two, `mod` on Python's stream; seeds at both ends of the 32-bit space, and a step budget of zero margin (seeds run
out of steps and are decided by the exact scoring).
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

SCRIPT = r"""
import json
from pipeline.prng.mappings import torch_path as tp
from pipeline.prng.mappings.library import call_values, reference_sieve
from pipeline.prng.sieve import SieveSpec
from pipeline.prng.sieve.dispatch import _mapped_triton, _triton_walk

cases = [  # generator, mapping, n, offset, skip_max, planted seed, first seed of the block, threshold
    ("java_lcg", "java_next_int", 1000, 0, 1, 12345, 12245, 0.6),
    ("java_lcg", "java_next_int", (1 << 30) + 1, 2, 0, 2**32 - 7, 2**32 - 160, 0.5),
    ("java_lcg", "java_next_int", (1 << 30) + 1, 5, 0, 2**32 - 7, 2**32 - 160, 0.5),  # its 5th output is rejected
    ("java_lcg", "java_next_int", 1024, 1, 2, 77, 0, 0.6),
    ("java_lcg", "java_next_double", 1000, 3, 1, 4242, 4100, 0.6),
    ("java_lcg", "java_next_double", 7, 0, 0, 5, 0, 0.8),
    ("java_lcg", "java_next_double", 2**31 - 1, 1, 0, 2**31, 2**31 - 80, 0.8),  # a bound this wide reads next(27)
    ("mt19937", "numpy_randint", 1000, 0, 1, 12345, 12245, 0.6),
    ("mt19937", "numpy_randint", 3, 2, 0, 2**32 - 7, 2**32 - 160, 0.9),  # mask 3: a quarter redrawn
    ("mt19937", "php_mt_rand", 3 << 29, 5, 0, 4242, 4100, 0.5),  # a quarter of the outputs redrawn
    ("mt19937", "php_mt_rand", 1024, 0, 1, 0, 0, 0.6),
    ("python_mt19937", "python_randrange", 1000, 0, 1, 777, 700, 0.6),
    ("python_mt19937", "python_randrange", 5, 3, 0, 2**32 - 1, 2**32 - 160, 0.9),  # 3 bits: 3 in 8 redrawn
    ("python_mt19937", "mod", 1000, 1, 0, 99, 0, 0.6),
]
out = []
for sigmas in (6.0, 0.0):
    tp.SIGMAS = sigmas
    for gen, mapping, n, offset, skip, planted, lo, thr in cases:
        calls = call_values(gen, mapping, planted, offset + 12 * (skip + 1), n)
        residues = [calls[offset + j * (skip + 1) + skip] for j in range(10)]
        spec = SieveSpec(gen, tuple(residues), thr, modulus=n, offset=offset, skip_max=skip, mapping=mapping)
        seeds = range(lo, min(lo + 160, 2**32))
        walk = _triton_walk(spec, "cpu")
        cand = sorted(walk.candidates(seeds.start, seeds.stop).tolist())
        nf = spec.filter_length()
        want_cand = []
        for s in seeds:
            v = call_values(gen, mapping, s, walk.n_calls, n)
            if any(v[spec.position(j, k)] == spec.residues[j] for k in spec.skips for j in spec.check_order()[:nf]):
                want_cand.append(s)
        got = sorted(list(t) for t in zip(*(x.tolist() for x in _mapped_triton(spec, seeds, walk))))
        want = sorted(list(t) for t in reference_sieve(spec, seeds))
        exact_filter = cand == want_cand if sigmas else set(want_cand) <= set(cand)
        planted_cand = planted in cand
        out.append([mapping, n, sigmas, exact_filter, got == want, any(w[0] == planted for w in want) and planted_cand])
print(json.dumps(out))
"""


@pytest.mark.slow
def test_triton_walks_match_the_oracle_in_interpreter() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(rows) == 28
    bad = [r for r in rows if r[3:] != [True, True, True]]
    assert not bad, bad
