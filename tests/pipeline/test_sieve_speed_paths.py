"""The pieces the fast CPU paths rest on: the divisibility residue test, the compact (survivors-only) kernels with
their task counter, aligned blocks and overflow reruns, and the lean int32 torch MT filter. Survivor sets are
compared with the reference sieve; nothing here times code."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from numba import njit, prange

from pipeline.prng.generators.reference import generate
from pipeline.prng.kernels import common
from pipeline.prng.sieve import SieveSpec, sieve_range, torch_path
from pipeline.prng.sieve import fast as sieve_fast
from pipeline.prng.sieve.reference import reference_sieve

MODULI = [2, 3, 7, 10, 12, 1000, 1024, 999_983, 1 << 20, 3 << 29, (1 << 31) - 1, 1 << 31]


def _divisible_py(n: int, modulus: int) -> bool:
    inv, k, limit = common.divisibility_params(modulus)
    y = (n * inv) & 0xFFFFFFFF
    return ((y >> k) | (y << ((32 - k) & 31))) & 0xFFFFFFFF <= limit


@pytest.mark.parametrize("modulus", MODULI + [random.Random(m).randrange(2, 1 << 31) for m in range(8)])
def test_divisibility_test_is_exact_on_uint32(modulus: int) -> None:
    rng = random.Random(modulus)
    values = [0, 1, modulus - 1, modulus, modulus + 1, (1 << 32) - 1, ((1 << 32) - 1) // modulus * modulus]
    values += [rng.randrange(1 << 32) for _ in range(3000)]
    values += [rng.randrange(((1 << 32) - 1) // modulus + 1) * modulus for _ in range(3000)]
    for n in values:
        assert _divisible_py(n, modulus) == (n % modulus == 0), n
    assert torch_path.divisibility_params(modulus) == common.divisibility_params(modulus)


@njit(cache=False)
def _divisible_many(ns: np.ndarray, inv: np.uint32, k: np.uint32, limit: np.uint32) -> np.ndarray:
    out = np.empty(ns.size, np.bool_)
    for i in range(ns.size):
        out[i] = common.divisible(ns[i], inv, k, limit)
    return out


@pytest.mark.parametrize("modulus", MODULI)
def test_numba_divisible_matches_modulo(modulus: int) -> None:
    rng = np.random.default_rng(modulus)
    multiples = rng.integers(0, ((1 << 32) - 1) // modulus + 1, 4000) * modulus
    ns = np.concatenate([rng.integers(0, 1 << 32, 4000, dtype=np.uint64), multiples]).astype(np.uint32)
    inv, k, limit = (np.uint32(v) for v in common.divisibility_params(modulus))
    assert np.array_equal(_divisible_many(ns, inv, k, limit), ns.astype(np.uint64) % modulus == 0)


@njit(parallel=True, cache=False)
def _claim_all(n_tasks: int, workers: int) -> np.ndarray:
    seen = np.zeros(n_tasks, np.int64)
    counter = np.zeros(1, np.int64)
    for _w in prange(workers):
        while True:
            t = common.fetch_add(counter, 1)
            if t >= n_tasks:
                break
            seen[t] += 1
    return seen


@pytest.mark.parametrize("workers", [1, 2, 5])
def test_task_counter_hands_out_every_task_once(workers: int) -> None:
    assert np.all(_claim_all(20_000, workers) == 1)


# (generator, start, count): unaligned starts and ends around the 512-seed blocks, both ends of the seed space
RANGES = [(0, 3000), (777, 2500), ((1 << 32) - 2345, 2345), (123_456_789, 1)]
GENERATORS = ["lcg32", "java_lcg", "minstd", "pcg32", "prng_cluster.java_lcg", "prng_cluster.lcg32", "xorshift32",
              "mt19937", "php_mt_rand"]  # fmt: skip


def _dense_spec(generator: str, modulus: int) -> SieveSpec:
    return SieveSpec(generator, (1, 0, 2, 1), 0.5, modulus=modulus, offset=3, skip_max=2, direction="reverse")


@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("modulus", [3, 12, 1 << 31])
def test_compact_kernels_overflow_and_odd_chunks(monkeypatch: pytest.MonkeyPatch, generator: str, modulus: int) -> None:
    # TASK_CAP 1: nearly every task overflows and is rerun alone; CHUNK 777: calls start off the block alignment
    monkeypatch.setattr(sieve_fast, "TASK_CAP", 1)
    monkeypatch.setattr(sieve_fast, "CHUNK", 777)
    monkeypatch.setattr(sieve_fast, "COMPACT_CHUNKS", 1)
    spec = _dense_spec(generator, modulus)
    for start, count in RANGES[:3]:
        expected = reference_sieve(spec, range(start, start + count))
        assert sieve_range(spec, start, start + count, device="cpu", path="fast").survivors() == expected


@pytest.mark.parametrize("generator", ["lcg32", "java_lcg", "xorshift32", "mt19937"])
def test_planted_seed_in_unaligned_ranges(generator: str) -> None:
    for start, count in RANGES:
        seed = start + count // 2
        stream = generate(generator, seed, 12)
        spec = SieveSpec(generator, tuple(v % 1000 for v in stream[:8]), 1.0)
        got = sieve_range(spec, start, start + count, device="cpu", path="fast").survivors()
        assert got == reference_sieve(spec, range(start, start + count))
        assert (seed, 0, 8) in got


@pytest.mark.parametrize("generator", ["mt19937", "php_mt_rand"])
@pytest.mark.parametrize("modulus", MODULI)
def test_torch_mt_filter_is_a_superset_of_filter_matches(generator: str, modulus: int) -> None:
    rng = random.Random(modulus)
    seeds = list(range(2000)) + [(1 << 32) - 1 - i for i in range(500)] + [rng.randrange(1 << 32) for _ in range(500)]
    offset = rng.choice([0, 5, 230])
    residues = tuple(rng.randrange(modulus) if modulus > 4 else rng.randrange(2) for _ in range(3))
    spec = SieveSpec(generator, residues, 0.6, modulus=modulus, offset=offset, skip_max=1)
    filt = torch_path.MtFilter(spec, "cpu")
    seeds32 = torch.tensor([s - (1 << 32) if s >= 1 << 31 else s for s in seeds], dtype=torch.int32)
    hits = filt.hits(seeds32).tolist()
    order = spec.check_order()[: spec.filter_length()]
    for seed, hit in zip(seeds, hits, strict=True):
        stream = generate(generator, seed, spec.position(spec.k - 1, spec.skip_max) + 1)
        matches = any(stream[spec.position(j, s)] % modulus == residues[j] for s in spec.skips for j in order)
        assert hit or not matches, seed
        if not matches and hit:  # the only extra seeds: an output below its target that wraps onto it mod 2**32
            assert any(stream[spec.position(j, s)] < residues[j] for s in spec.skips for j in order), seed


def test_torch_mt_words_match_the_reference_chain() -> None:
    from pipeline.prng.generators import torch_gen
    from pipeline.prng.generators.reference import MT_INIT_MULT

    seeds = [0, 1, 5489, (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 123_456_789]
    seeds32 = torch.tensor([s - (1 << 32) if s >= 1 << 31 else s for s in seeds], dtype=torch.int32)
    got = torch_gen._mt_words(seeds32, [0, 1, 30, 397, 623])
    for n, seed in enumerate(seeds):
        chain = [seed]
        for i in range(1, 624):
            prev = chain[-1]
            chain.append((MT_INIT_MULT * (prev ^ (prev >> 30)) + i) & 0xFFFFFFFF)
        for i in (0, 1, 30, 397, 623):
            assert int(got[i][n]) & 0xFFFFFFFF == chain[i]
