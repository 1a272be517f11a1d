"""fast (numba), fallback (torch) and reference sieves must return identical survivor sets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seed_lists import scattered

from pipeline.prng.generators.reference import GENERATORS, generate
from pipeline.prng.sieve import SieveSpec, sieve_range, verify_seeds
from pipeline.prng.sieve import fast as sieve_fast
from pipeline.prng.sieve.reference import reference_sieve

MT = ("mt19937", "php_mt_rand")


def planted_spec(
    generator: str,
    seed: int,
    *,
    k: int,
    modulus: int,
    threshold: float,
    offset: int,
    first_draw: int,
    skip: int,
    skip_min: int,
    skip_max: int,
    direction: str,
    noise: int,
) -> SieveSpec:
    """A window copied from a real seed's stream, with `noise` draws altered, so survivor sets are non-trivial."""
    last = offset + (first_draw + k - 1) * (skip + 1) + skip
    stream = generate(generator, seed, last + 1)
    residues = [stream[offset + (first_draw + j) * (skip + 1) + skip] % modulus for j in range(k)]
    for j in range(min(noise, k)):
        residues[j] = (residues[j] + 1) % modulus
    return SieveSpec(
        generator,
        tuple(residues),
        threshold,
        modulus=modulus,
        offset=offset,
        first_draw=first_draw,
        skip_min=skip_min,
        skip_max=skip_max,
        direction=direction,
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[SieveSpec, int, int]:
    generator = draw(st.sampled_from(GENERATORS))
    n = draw(st.sampled_from([1, 37, 113, 300] if generator in MT else [1, 113, 500, 2000]))
    where = draw(st.sampled_from(["zero", "top", "any"]))
    start = 0 if where == "zero" else (1 << 32) - n if where == "top" else draw(st.integers(0, (1 << 32) - n))
    seed = start + draw(st.integers(0, n - 1))
    skip_min = draw(st.integers(0, 2))
    skip_max = skip_min + draw(st.integers(0, 2))
    spec = planted_spec(
        generator,
        seed,
        k=draw(st.integers(1, 6)),
        modulus=draw(st.sampled_from([2, 3, 10, 1000])),
        threshold=draw(st.sampled_from([0.2, 0.5, 0.75, 1.0])),
        offset=draw(st.sampled_from([0, 3, 17, 225, 230, 640] if generator in MT else [0, 3, 17, 1000])),
        first_draw=draw(st.integers(0, 4)),
        skip=draw(st.integers(skip_min, skip_max)),
        skip_min=skip_min,
        skip_max=skip_max,
        direction=draw(st.sampled_from(["forward", "reverse"])),
        noise=draw(st.integers(0, 2)),
    )
    return spec, start, start + n


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_all_paths_agree(case: tuple[SieveSpec, int, int]) -> None:
    spec, start, end = case
    expected = reference_sieve(spec, range(start, end))
    fast = sieve_range(spec, start, end, device="cpu", path="fast")
    fallback = sieve_range(spec, start, end, device="cpu", path="fallback")
    picked = scattered(start, end)
    assert fast.survivors() == expected
    assert fallback.survivors() == expected
    wanted = [s for s in expected if s[0] in set(picked.tolist())]
    assert verify_seeds(spec, picked, device="cpu").survivors() == wanted  # numba, run by run
    assert verify_seeds(spec, picked, device="cpu", path="fallback").survivors() == wanted
    assert fast.seeds_tested == fallback.seeds_tested == end - start


@pytest.mark.parametrize("generator", GENERATORS)
def test_planted_seed_found_at_its_skip_both_directions(generator: str) -> None:
    seed = 2**32 - 5 if generator != "xorshift32" else 4000
    spec = planted_spec(
        generator,
        seed,
        k=8,
        modulus=1000,
        threshold=1.0,
        offset=7,
        first_draw=3,
        skip=2,
        skip_min=0,
        skip_max=3,
        direction="forward",
        noise=0,
    )
    reverse = SieveSpec(**{**spec.to_dict(), "direction": "reverse"})
    lo = max(0, seed - 20000)
    hi = min(1 << 32, lo + 40000)
    for s in (spec, reverse):
        for path in ("fast", "fallback"):
            assert (seed, 2, 8) in sieve_range(s, lo, hi, device="cpu", path=path).survivors()


def test_verify_seeds_scores_runs_with_numba_and_a_scattered_list_with_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A short or clustered list is scored by the range kernels run by run (no torch import); one scattered past
    MAX_VERIFY_RUNS goes to the torch batches; both answer what the reference does."""
    from pipeline.prng.sieve import dispatch

    spec = SieveSpec("mt19937", (0, 1, 0, 1, 1), 0.2, modulus=2, skip_max=1)
    picked = scattered(0, 600)
    expected = reference_sieve(spec, picked.tolist())
    clustered = verify_seeds(spec, picked, device="cpu")
    assert (clustered.path, clustered.survivors()) == ("fast", expected)
    monkeypatch.setattr(dispatch, "MAX_VERIFY_RUNS", len(dispatch.seed_runs(picked)) - 1)
    spread = verify_seeds(spec, picked, device="cpu")
    assert (spread.path, spread.survivors()) == ("fallback", expected)
    assert dispatch.seed_runs(np.array([3, 4, 5, 9, 11, 12])) == [(3, 6), (9, 10), (11, 13)]


def test_every_seed_survives_when_modulus_two_and_low_threshold() -> None:
    # threshold 0.2 of 5 draws = 1 match; with modulus 2 almost every seed passes: exercises dense output
    spec = SieveSpec("mt19937", (0, 1, 0, 1, 1), 0.2, modulus=2, skip_max=1)
    fast = sieve_range(spec, 0, 3000, device="cpu", path="fast")
    assert len(fast) > 2900
    assert fast.survivors() == sieve_range(spec, 0, 3000, device="cpu", path="fallback").survivors()


def test_chunk_boundaries_do_not_lose_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = SieveSpec("lcg32", (1, 0), 0.5, modulus=3)
    whole = sieve_range(spec, 10, 5000, device="cpu", path="fast").survivors()
    monkeypatch.setattr(sieve_fast, "CHUNK", 777)
    assert sieve_range(spec, 10, 5000, device="cpu", path="fast").survivors() == whole


def test_range_reaching_two_to_the_32() -> None:
    seed = 2**32 - 1
    spec = planted_spec(
        "lcg32",
        seed,
        k=4,
        modulus=1000,
        threshold=1.0,
        offset=0,
        first_draw=0,
        skip=0,
        skip_min=0,
        skip_max=0,
        direction="reverse",
        noise=0,
    )
    res = sieve_range(spec, 2**32 - 3000, 2**32, device="cpu")
    assert (seed, 0, 4) in res.survivors()
    assert res.path == "fast"


@pytest.mark.parametrize("offset", [400, 1250, 2600])
def test_mt_far_positions(offset: int) -> None:
    # 400/1250: twisted words from the lane program (2nd and 3rd block); 2600: beyond it, the scalar kernel
    spec = SieveSpec("php_mt_rand", (1, 0, 1), 0.6, modulus=2, offset=offset, skip_max=1, direction="reverse")
    lo = 2**32 - 40
    expected = reference_sieve(spec, range(lo, 2**32))
    assert len(expected) > 5
    assert sieve_range(spec, lo, 2**32, device="cpu", path="fast").survivors() == expected
    assert sieve_range(spec, lo, 2**32, device="cpu", path="fallback").survivors() == expected
