"""Sieve throughput: seeds/s per generator and path, as ratios to php_mt_seed (not part of the test suite).

    python bench/sieve.py [--json] [--quick] [--generators mt19937,lcg32] [--paths fast,fallback] [--variable P,..]
                          [--variable-block P] [--block-seeds N] [--block-old-seeds N] [--device cuda]
                          [--php-mt-seed PATH] [--no-ceiling]

Ceiling rows: where a C compiler is found, bench/ceiling/lcg_ceiling.c is built into a temporary directory (never
into the repository) and run on the same seed count, first draw and target as the lcg32 / java_lcg fast rows,
interleaved with them run by run; `ratio_vs_ceiling` is the median of the per-pair ratios (the shared cores' load
moves both sides of a pair together). --php-mt-seed PATH runs that binary (never built here) on the planted php_mt_rand
seed's first 8 outputs and prints its rate and our mt19937 fast row's ratio to it (and the mt19937 fallback row's,
when that row ran), from the same run: each of our rows runs again after php_mt_seed and is paired by its median time
over both runs, bracketing php_mt_seed's minute or more in time.
--device cuda checks every row's survivors against the reference (a small loose window per family and path, and
every survivor of the timed row re-scored by the reference) and prints seeds/s per family and path: "fast" is the C
kernels through CuPy there, "fallback" torch (bench/gpu_check.sh runs both, and numba on the host's cores).

Rows report the best of --repeat timed runs (and the median). php_mt_seed scans 2**32 MT19937 seeds
against 8 outputs mod 1000 in ~80 s on the 2-vCPU reference machine, about 54 M seeds/s; every row is
divided by that rate. Each row sieves a window copied from a planted seed's stream and checks that the seed
is found, so a fast-but-wrong kernel cannot post a number.

Variable-skip rows (skip_mode="variable", their five strategies) sieve a 20-draw history planted with their
semantics (skips drifting by at most 3 a draw) at threshold 0.75; all paths of a preset run in the same process
one after the other. Most random seeds give up after a few misses, so their cost is set by the widest strategy.
On --device cuda each variable row is checked too: a block at seed 0 against the reference, and every survivor
of the timed row re-scored by it.

The variable-block row (bench/variable_block.py; --variable-block '' for none) is the pipeline's variable-skip job:
every passing (offset, strategy) over 16 offsets and the 5 strategies, window 10 at threshold 1.0, 2**24 seeds by
default, beside the old job shape (one sieve per (offset, strategy)) in the same run, with both rows' survivors
checked against each other and against the plain-Python oracle.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.prng.generators.reference import GENERATORS, generate
from pipeline.prng.sieve import SieveSpec, sieve_range, verify_seeds
from pipeline.prng.sieve.reference import reference_sieve
from pipeline.prng.sieve.spec import STREAM_GENERATORS
from pipeline.prng.sieve.variable import reference_variable_score, reference_variable_sieve

PHP_MT_SEED_RATE = 54e6
WINDOW = 8

# seeds per row: (quick, full); the fallback rows use fewer because they are ~10x slower
SIZES = {"mt": (1 << 24, 1 << 27), "lcg": (1 << 26, 1 << 29), "fallback": (1 << 20, 1 << 23)}
VARIABLE_SIZES = {"fast": (1 << 18, 1 << 22), "fallback": (1 << 12, 1 << 15)}
VARIABLE_DRAWS = 20
DEFAULT_VARIABLE = "prng_cluster.java_lcg,prng_cluster.lcg32_hybrid,prng_cluster.mt19937,prng_cluster.xoshiro256pp,"
DEFAULT_VARIABLE += "prng_cluster.philox4x32,prng_cluster.sfc64"


def case_spec(generator: str, seed: int, skips: int) -> SieveSpec:
    skip = skips - 1
    offset = 0
    stream = generate(generator, seed, offset + WINDOW * (skip + 1) + 1)
    residues = tuple(stream[offset + j * (skip + 1) + skip] % 1000 for j in range(WINDOW))
    return SieveSpec(generator, residues, 1.0, offset=offset, skip_min=0, skip_max=skip)


CEILING_FAMILY = {"lcg32": "lcg32", "java_lcg": "java"}


def build_ceiling() -> str | None:
    """bench/ceiling/lcg_ceiling.c built into a fresh temp dir, or None (no compiler, or the build failed)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        return None
    out = Path(tempfile.mkdtemp(prefix="watcher-ceiling-")) / "lcg_ceiling"
    src = Path(__file__).resolve().parent / "ceiling" / "lcg_ceiling.c"
    proc = subprocess.run([cc, "-O3", "-march=native", "-fopenmp", "-o", str(out), str(src)], capture_output=True)
    return str(out) if proc.returncode == 0 else None


def run_ceiling(exe: str, family: str, seeds: int, target: int) -> float:
    out = subprocess.run([exe, family, str(seeds), "0", str(target)], capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout)["seeds_per_s"])


def run_row(generator: str, path: str, skips: int, seeds: int, repeat: int, device: str = "cpu",
            ceiling: str | None = None) -> dict:  # fmt: skip
    planted = seeds // 2 + 12345
    spec = case_spec(generator, planted, skips)
    sieve_range(spec, 0, 4096, device=device, path=path)  # compile / load caches outside the timing
    pair = ceiling if ceiling and skips == 1 and path == "fast" and generator in CEILING_FAMILY else None
    times, cores, ceil_rates = [], [], []
    for _ in range(repeat):  # the 2 shared cores see other tenants' load come and go: medians, pairs interleaved
        if pair:
            ceil_rates.append(run_ceiling(pair, CEILING_FAMILY[generator], seeds, spec.residues[0]))
        t0, c0 = time.perf_counter(), time.process_time()
        result = sieve_range(spec, 0, seeds, device=device, path=path)
        times.append(time.perf_counter() - t0)
        cores.append((time.process_time() - c0) / times[-1])
    best = min(range(repeat), key=times.__getitem__)
    seconds = times[best]
    rate = seeds / seconds
    row = {
        "generator": generator,
        "device": device,
        "path": result.path,
        "window": WINDOW,
        "skips": skips,
        "seeds": seeds,
        "seconds": round(seconds, 4),
        "seconds_median": round(statistics.median(times), 4),
        "repeats": repeat,
        "cores_used": round(cores[best], 2),  # process cpu time / wall time: < 2 on 2 cores means we were crowded
        "seeds_per_s": round(rate),
        "seeds_per_s_median": round(seeds / statistics.median(times)),
        "seed_skips_per_s": round(rate * skips),
        "ratio_vs_php_mt_seed": round(rate / PHP_MT_SEED_RATE, 3),
        "planted_found": planted in set(result.seeds.tolist()),
    }
    if pair:
        pair_ratios = [seeds / t / c for t, c in zip(times, ceil_rates, strict=True)]
        row["ceiling_seeds_per_s_median"] = round(statistics.median(ceil_rates))
        row["ratio_vs_ceiling"] = round(statistics.median(pair_ratios), 3)
    if device != "cpu":
        row["verified"] = verify_row(generator, path, device, spec, result)
    return row


def verify_row(generator: str, path: str, device: str, spec: SieveSpec, result) -> bool:
    """Survivors against the reference: a loose window (many survivors) at both ends of the seed space, and
    every survivor of the timed row re-scored by the reference."""
    loose = SieveSpec(generator, (1, 0, 2), 0.5, modulus=3, offset=2, skip_max=1)
    for lo in (0, (1 << 32) - 2048):
        got = sieve_range(loose, lo, lo + 2048, device=device, path=path).survivors()
        if got != [tuple(t) for t in reference_sieve(loose, range(lo, lo + 2048))]:
            return False
    again = verify_seeds(spec, result.seeds, device="cpu", path="reference").survivors()
    return again == result.survivors()


def run_php_mt_seed(exe: str) -> dict:
    """php_mt_seed on the planted seed's first 8 php_mt_rand outputs (exact values: `v v 0 2147483647` each)."""
    planted = 123456789
    outs = generate("php_mt_rand", planted, WINDOW)
    args = [str(a) for v in outs for a in (v, v, 0, 2147483647)]
    t0 = time.perf_counter()
    proc = subprocess.run([exe, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    text = proc.stdout + proc.stderr
    found = [int(m) for m in re.findall(r"seed = 0x[0-9a-fA-F]+ = (\d+)", text)]
    # php_mt_seed scans all 2**32 seeds (its own rate line, when printed, is also reported)
    rate = (1 << 32) / seconds
    return {
        "php_mt_seed": exe,
        "returncode": proc.returncode,
        "seconds": round(seconds, 3),
        "seeds_per_s": round(rate),
        "planted_found": planted in found,
        "last_line": text.strip().splitlines()[-1][-200:] if text.strip() else "",
    }


def with_ratios(res: dict, rates: dict[str, float]) -> dict:
    """run_php_mt_seed's answer plus our mt19937 rows' rates (per path: fast, and fallback when that row ran) and
    their ratios to php_mt_seed's rate."""
    out = dict(res)
    for path, rate in rates.items():
        out[f"mt19937_{path}_seeds_per_s"] = round(rate)
        out[f"ratio_mt19937_{path}_vs_php_mt_seed"] = round(rate / res["seeds_per_s"], 3)
    return out


def variable_spec(generator: str, seed: int) -> SieveSpec:
    rng = random.Random(generator)
    skips, s = [], 5
    for _ in range(VARIABLE_DRAWS):
        s = max(0, min(10, s + rng.randint(-3, 3)))  # within [0, 10]: every strategy's window, fixed or moving
        skips.append(s)
    stream = generate(generator, seed, sum(skips) + len(skips))
    pos, residues = 0, []
    for s in skips:
        residues.append(stream[pos + s] % 1000)
        pos += s + 1
    return SieveSpec(generator, tuple(residues), 0.75, skip_mode="variable")


def run_variable_row(generator: str, path: str, seeds: int, repeat: int, device: str = "cpu") -> dict:
    planted = seeds // 2 + 123  # inside even the smallest (fallback) row
    spec = variable_spec(generator, planted)
    sieve_range(spec, 0, 512, device=device, path=path)  # compile outside the timing
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = sieve_range(spec, 0, seeds, device=device, path=path)
        times.append(time.perf_counter() - t0)
    seconds = min(times)
    extra = {}
    if device != "cpu":  # a block against the reference, and every survivor of the timed row re-scored by it
        block = sieve_range(spec, 0, 512, device=device, path=path).variable_survivors()
        found = result.variable_survivors()
        again = [(s, *(reference_variable_score(spec, s) or (-1, -1, []))) for s, *_ in found]
        extra["verified"] = block == reference_variable_sieve(spec, range(512)) and again == found
    return {
        **extra,
        "generator": generator,
        "mode": "variable",
        "device": device,
        "path": result.path,
        "window": VARIABLE_DRAWS,
        "strategies": len(spec.strategies),
        "seeds": seeds,
        "seconds": round(seconds, 4),
        "seconds_median": round(sorted(times)[len(times) // 2], 4),
        "seeds_per_s": round(seeds / seconds),
        "survivors": len(result),
        "planted_found": planted in set(result.seeds.tolist()),
    }


def rows(quick: bool, generators: list[str], paths: list[str]) -> list[tuple[str, str, int, int]]:
    pick = 0 if quick else 1
    out = []
    for g in generators:
        for path in paths:
            if path == "fallback":
                n = SIZES["fallback"][pick] * (1 if g in STREAM_GENERATORS else 8)
            else:
                n = SIZES["mt" if g in STREAM_GENERATORS else "lcg"][pick]
            out.append((g, path, 1, n))
            if g in ("mt19937", "lcg32") and path == "fast":
                out.append((g, path, 4, n // 4))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--quick", action="store_true", help="small sizes: whole run under a minute")
    ap.add_argument("--generators", default=",".join(GENERATORS))
    ap.add_argument("--paths", default="fast,fallback")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per row; best and median are reported")
    ap.add_argument("--variable", default=DEFAULT_VARIABLE, help="presets for variable-skip rows ('' for none)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (ROCm is `cuda` too); cuda verifies every row")
    ap.add_argument("--size", type=int, default=0, help="seeds per row (overrides the table; e.g. 2**30 on a GPU)")
    ap.add_argument("--fallback-size", type=int, default=0, help="seeds per fallback row (default: --size)")
    ap.add_argument("--variable-size", type=int, default=0, help="seeds per variable-skip row (overrides the table)")
    ap.add_argument("--no-ceiling", action="store_true", help="skip building and running the C ceiling")
    ap.add_argument("--php-mt-seed", metavar="PATH", help="run this php_mt_seed binary in the same run")
    ap.add_argument("--variable-block", default="prng_cluster.xorshift32", help="preset of the block row ('' none)")
    ap.add_argument("--block-seeds", type=int, default=0, help="block row seeds (default 2**24, --quick 2**20)")
    ap.add_argument("--block-old-seeds", type=int, default=0,
                    help="old job shape's seeds (default 2**18, --quick 2**16); its time is extrapolated")  # fmt: skip
    args = ap.parse_args(argv)
    pick = 0 if args.quick else 1
    generators = [g for g in args.generators.split(",") if g]  # --generators '' runs only the variable rows
    ceiling = None if args.no_ceiling or args.device != "cpu" else build_ceiling()
    if not args.no_ceiling and args.device == "cpu" and ceiling is None:
        print("ceiling: no C compiler (or the build failed): no ceiling rows", file=sys.stderr)
    mt_rows: dict[str, dict] = {}  # the mt19937 skips=1 rows, for the php_mt_seed pairing
    ok = True
    for g, path, skips, n in rows(args.quick, generators, args.paths.split(",")):
        size = args.fallback_size if path == "fallback" and args.fallback_size else args.size
        n = size // skips if size else n
        row = run_row(g, path, skips, n, args.repeat, args.device, ceiling)
        ok &= row["planted_found"] and row.get("verified", True)
        if g == "mt19937" and skips == 1 and path in ("fast", "fallback"):
            mt_rows[path] = row
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            extra = ""
            if "ratio_vs_ceiling" in row:
                extra = f" ceiling {row['ceiling_seeds_per_s_median'] / 1e6:9.2f} M/s x{row['ratio_vs_ceiling']:.3f}"
            if "verified" in row:
                extra += f" verified={row['verified']}"
            print(
                f"{g:30s} {args.device}:{row['path']:8s} skips={skips} seeds={n:>13,d} {row['seconds']:8.3f}s "
                f"{row['seeds_per_s'] / 1e6:9.2f} M seeds/s (median {row['seeds_per_s_median'] / 1e6:9.2f}) "
                f"x{row['ratio_vs_php_mt_seed']:.3f} php_mt_seed-equiv ({row['cores_used']} cores) "
                f"found={row['planted_found']}{extra}",
                flush=True,
            )
    if args.php_mt_seed:
        if "fast" not in mt_rows:
            mt_rows["fast"] = run_row("mt19937", "fast", 1, SIZES["mt"][pick], args.repeat, args.device)
        res = run_php_mt_seed(args.php_mt_seed)
        # php_mt_seed runs for a minute or more while other tenants' load comes and goes: our rows run again after
        # it, and each is paired by its median time over both sides of php_mt_seed's run
        rates = {}
        for path, before in mt_rows.items():
            after = run_row("mt19937", path, 1, before["seeds"], args.repeat, args.device)
            rates[path] = before["seeds"] / ((before["seconds_median"] + after["seconds_median"]) / 2)
        res = with_ratios(res, rates)
        print(json.dumps(res) if args.json else " ".join(f"{k}={v}" for k, v in res.items()), flush=True)
    for g in filter(None, args.variable.split(",")):
        for path in args.paths.split(","):
            size = args.variable_size if args.variable_size and path == "fast" else VARIABLE_SIZES[path][pick]
            row = run_variable_row(g, path, size, args.repeat, args.device)
            ok &= row["planted_found"] and row.get("verified", True)
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print(
                    f"{g:30s} variable {args.device}:{row['path']:8s} seeds={row['seeds']:>9,d} {row['seconds']:8.3f}s "
                    f"{row['seeds_per_s'] / 1e6:9.3f} M seeds/s survivors={row['survivors']} "
                    f"found={row['planted_found']}" + (f" verified={row['verified']}" if "verified" in row else ""),
                    flush=True,
                )
    if args.variable_block and args.device == "cpu":
        from variable_block import describe, run_block_row

        seeds = args.block_seeds or (1 << 20 if args.quick else 1 << 24)
        old = args.block_old_seeds or (1 << 16 if args.quick else 1 << 18)
        row = run_block_row(args.variable_block, seeds, min(old, seeds), args.repeat)
        ok &= row["planted_found"] and row["rows_equal_old_shape"] and row["rows_equal_reference"]
        print(json.dumps(row) if args.json else describe(row), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
