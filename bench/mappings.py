"""Mapped-sieve throughput: seeds/s per `data.mapping` and path (not part of the test suite).

    python bench/mappings.py [--quick] [--json] [--paths fast,fallback] [--device cuda] [--size N] [--repeat R]

Each row sieves a window of 8 library calls copied from a planted seed (offset 3, skips 0-3, threshold 1.0, the
bench/sieve.py shape) and reports whether the seed was found, so a fast-but-wrong path cannot post a number. The
moduli are 1000 and, for the rejection samplers, one that rejects often (numpy 600: 41%, Python 600: 41%), so
the cost of following the library's loop shows. --device cuda runs the C walks of the calls through CuPy ("fast")
and the torch path ("fallback") on the GPU and re-scores every survivor with the plain-Python oracle. Best of
--repeat timed runs (and the median); the first, untimed run of a row compiles (numba, cached on disk) or warms up
(torch).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.prng.mappings import library as lib
from pipeline.prng.sieve import SieveSpec, sieve_range

WINDOW, OFFSET, SKIPS = 8, 3, 4
SEED = 0xC0FFEE
ROWS = (  # (generator, mapping, modulus)
    ("java_lcg", "java_next_int", 1000),
    ("java_lcg", "java_next_double", 1000),
    ("mt19937", "numpy_randint", 1000),
    ("mt19937", "numpy_randint", 600),
    ("python_mt19937", "python_randrange", 1000),
    ("python_mt19937", "python_randrange", 600),
    ("mt19937", "php_mt_rand", 1000),
    ("python_mt19937", "mod", 1000),
)
# seeds per row (quick, full): the torch path is slower per seed on cpu, init_by_array most of all
SIZES = {"fast": (1 << 20, 1 << 24), "fallback": (1 << 16, 1 << 20)}


def spec_for(generator: str, mapping: str, modulus: int) -> SieveSpec:
    skip = SKIPS - 1
    calls = lib.call_values(generator, mapping, SEED, OFFSET + WINDOW * (skip + 1), modulus)
    residues = tuple(calls[OFFSET + j * (skip + 1) + skip] for j in range(WINDOW))
    return SieveSpec(generator, residues, 1.0, modulus=modulus, offset=OFFSET, skip_max=skip, mapping=mapping)


def row(generator: str, mapping: str, modulus: int, path: str, device: str, size: int, repeat: int) -> dict:
    spec = spec_for(generator, mapping, modulus)
    start = SEED - size // 2
    sieve_range(spec, SEED - 64, SEED + 64, device=device, path=path)  # compile / warm up
    rates, found, checked = [], False, True
    for _ in range(repeat):
        result = sieve_range(spec, start, start + size, device=device, path=path)
        rates.append(result.seeds_per_s)
        found = (SEED, SKIPS - 1, WINDOW) in result.survivors()
        if not device.startswith("cpu"):  # every survivor re-scored by the oracle
            checked &= all(lib.reference_score(spec, s) == (k, m) for s, k, m in result.survivors())
    return {"generator": generator, "mapping": mapping, "modulus": modulus, "path": path, "device": device,
            "seeds": size, "seeds_per_s": round(max(rates)), "median_seeds_per_s": round(statistics.median(rates)),
            "reject_probability": round(lib.reject_probability(mapping, modulus), 4), "planted_found": found,
            "oracle_agrees": checked}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--quick", action="store_true", help="small sizes")
    ap.add_argument("--paths", default="fast,fallback")
    ap.add_argument("--device", default="cpu", help="cpu or cuda; cuda re-scores every survivor with the oracle")
    ap.add_argument("--size", type=int, default=0, help="seeds per row (overrides the table)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    ok = True
    for path in args.paths.split(","):
        size = args.size or SIZES.get(path, SIZES["fallback"])[0 if args.quick else 1]
        for generator, mapping, modulus in ROWS:
            t0 = time.perf_counter()
            r = row(generator, mapping, modulus, path, args.device, size, args.repeat)
            r["wall_s"] = round(time.perf_counter() - t0, 2)
            ok &= r["planted_found"] and r["oracle_agrees"]
            if args.json:
                print(json.dumps(r), flush=True)
            else:
                rate, median = r["seeds_per_s"] / 1e6, r["median_seeds_per_s"] / 1e6
                print(f"{mapping:18} {generator:15} n={modulus:<5} {path:9} {args.device:5} {rate:8.2f} M seeds/s "
                      f"(median {median:.2f})  reject {r['reject_probability']:.3f}  "
                      f"planted_found={r['planted_found']}", flush=True)  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
