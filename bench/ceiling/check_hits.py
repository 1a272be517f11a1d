"""Check lcg_ceiling's hit counts against plain Python loops.

usage: python3 bench/ceiling/check_hits.py PATH/TO/lcg_ceiling [N]   (N defaults to 2**16)

* small P: each seed is stepped P+1 times one step at a time;
* large P: the (A, C) jump is built by composing the one-step map P+1 times
  in a loop (no square-and-multiply), then applied to every seed;
* the java family's outputs are tied to the real java.util.Random through
  tests/fixtures/mappings/vectors.json (java_nextint_raw, seeds 0 and 1);
* the lcg32 family's first outputs from seed 0 are the published Numerical
  Recipes values 1013904223, 1196435762, 3519870697, 2868466484.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

exe = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 2**16
FAMILIES = {
    # name: (a, c, modulus mask, seed -> state0, state -> 32-bit output)
    "lcg32": (1664525, 1013904223, 2**32 - 1, lambda s: s & 0xFFFFFFFF, lambda x: x),
    "java": (0x5DEECE66D, 11, 2**48 - 1, lambda s: (s ^ 0x5DEECE66D) & (2**48 - 1), lambda x: (x >> 16) & 0xFFFFFFFF),
}
ok = True


def run(family, n, p, target):
    out = subprocess.run([exe, family, str(n), str(p), str(target)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def check(label, cond):
    global ok
    print(("PASS " if cond else "FAIL ") + label)
    ok &= bool(cond)


def draws_stepwise(family, seed, count):
    a, c, mask, init, out = FAMILIES[family]
    x = init(seed)
    res = []
    for _ in range(count):
        x = (a * x + c) & mask
        res.append(out(x))
    return res


# Tie the models to reference values.
check(
    "lcg32 seed 0 first outputs == Numerical Recipes values",
    draws_stepwise("lcg32", 0, 4) == [1013904223, 1196435762, 3519870697, 2868466484],
)
vec_path = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "mappings", "vectors.json")
vec = json.loads(Path(vec_path).read_text())["mappings"]["java_nextint_raw"]["draws"]
for seed in (0, 1):
    check(
        f"java model seed {seed}: 40 draws == real java.util.Random (vectors.json)",
        [v % 1000 for v in draws_stepwise("java", seed, 40)] == vec[str(seed)],
    )
# C program at N=1 (seed 0 only) must hit exactly the real Java draw at each P.
check(
    "lcg_ceiling java N=1: hits==1 at target=vectors.json draw, P=0..39",
    all(run("java", 1, p, vec["0"][p])["hits"] == 1 for p in range(40)),
)

# Hit counts over [0, N) against plain loops.
for family, (a, c, mask, init, out) in FAMILIES.items():
    for p in (0, 1, 5):
        residues = [draws_stepwise(family, s, p + 1)[-1] % 1000 for s in range(N)]
        for target in (0, 7, 999):
            want = residues.count(target)
            got = run(family, N, p, target)["hits"]
            check(f"{family} N={N} P={p} target={target}: C {got} == Python {want}", got == want)
    for p in (999_999,):
        ja, jc = 1, 0
        for _ in range(p + 1):  # compose one step at a time
            ja, jc = (a * ja) & mask, (a * jc + c) & mask
        residues = [out((ja * init(s) + jc) & mask) % 1000 for s in range(N)]
        for target in (0, 421):
            want = residues.count(target)
            got = run(family, N, p, target)["hits"]
            check(f"{family} N={N} P={p} target={target}: C {got} == Python {want}", got == want)

print("ALL PASS" if ok else "SOME CHECKS FAILED")
sys.exit(0 if ok else 1)
