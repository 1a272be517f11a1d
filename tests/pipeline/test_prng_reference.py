"""Reference generators against published test vectors, and the torch versions against the reference."""

from __future__ import annotations

import random

import pytest
import torch

from pipeline.prng.generators import jump, torch_gen
from pipeline.prng.generators.families import PRESETS
from pipeline.prng.generators.reference import GENERATORS, generate, outputs_at


def signed32(values: list[int]) -> list[int]:
    return [v - (1 << 32) if v >= 1 << 31 else v for v in values]


def test_mt19937_std_vectors() -> None:
    out = generate("mt19937", 5489, 10000)
    assert out[0] == 3499211612
    assert out[9999] == 4123659995


def test_php_mt_rand_is_php71_mt_rand() -> None:
    # PHP >= 7.1: mt_srand(1); mt_rand(), mt_rand()
    assert generate("php_mt_rand", 1, 2) == [895547922, 2141438069]


def test_java_lcg_matches_java_util_random_next_int() -> None:
    # new Random(0).nextInt() twice, and new Random(42).nextInt()
    assert signed32(generate("java_lcg", 0, 2)) == [-1155484576, -723955400]
    assert signed32(generate("java_lcg", 42, 1)) == [-1170105035]


def test_lcg32_numerical_recipes_sequence() -> None:
    assert generate("lcg32", 0, 4) == [1013904223, 1196435762, 3519870697, 2868466484]


def test_minstd_cxx11_vector() -> None:
    # the C++ standard requires the 10000th output of a default-constructed minstd_rand (seed 1)
    assert generate("minstd", 1, 10000)[-1] == 399268537


def test_minstd_zero_seed_is_remapped_like_std() -> None:
    assert generate("minstd", 0, 3) == generate("minstd", 1, 3) == generate("minstd", 2**31 - 1, 3)


def test_xorshift32_vectors() -> None:
    assert generate("xorshift32", 1, 4) == [270369, 67634689, 2647435461, 307599695]
    assert generate("xorshift32", 0, 3) == [0, 0, 0]


def test_pcg32_demo_vectors() -> None:
    # pcg32-demo: pcg32_srandom_r(&rng, 42u, 54u)
    expected = [0xA15C02B7, 0x7B47F409, 0xBA1D3330, 0x83D2F293, 0xBFA4784B, 0xCBED606E]
    assert generate("pcg32", 42, 6) == expected


@pytest.mark.parametrize("generator", GENERATORS)
def test_outputs_are_unsigned_and_within_draw_bits(generator: str) -> None:
    bits = PRESETS[generator].draw_bits
    out = generate(generator, 2**32 - 1, 50)
    assert all(0 <= v < 1 << bits for v in out)


def test_bad_arguments_name_the_problem() -> None:
    with pytest.raises(ValueError, match="generator 'nope'"):
        generate("nope", 1, 1)
    with pytest.raises(ValueError, match="seed"):
        generate("lcg32", 1 << 32, 1)


@pytest.mark.parametrize("generator", jump.JUMP_GENERATORS)
def test_affine_jump_reproduces_stream(generator: str) -> None:
    rng = random.Random(3)
    mod = jump.modulus(generator)
    for seed in (0, 1, 2**32 - 1, rng.getrandbits(32)):
        stream = generate(generator, seed, 300)
        for p in (0, 1, 2, 77, 299):
            a, c = jump.coefficients(generator, p)
            assert jump.output(generator, (a * jump.start_value(generator, seed) + c) % mod) == stream[p]


@pytest.mark.parametrize("generator", GENERATORS)
def test_torch_matches_reference(generator: str) -> None:
    rng = random.Random(generator)
    seeds = [0, 1, 2**31 - 1, 2**31, 2**32 - 1] + [rng.getrandbits(32) for _ in range(4)]
    # the second set crosses MT19937's first block (positions >= 227 need the general path)
    for positions in ([0, 1, 9, 226], [3, 226, 227, 623, 624, 700]):
        got = torch_gen.outputs(generator, torch.tensor(seeds, dtype=torch.int64), positions)
        for i, seed in enumerate(seeds):
            unsigned = [v & (1 << 64) - 1 for v in got[:, i].tolist()]  # 64-bit draws come back as int64 bits
            assert unsigned == outputs_at(generator, seed, positions), (generator, seed, positions)


def test_mt_plan_words_reproduce_outputs() -> None:
    from pipeline.prng.generators.mt_plan import mt_program
    from pipeline.prng.generators.reference import MT_MATRIX_A, mt_init, mt_temper

    rng = random.Random(11)
    for positions in ([0], [226, 227], [366, 622, 623, 624], sorted(rng.sample(range(2000), 5))):
        seed = rng.getrandbits(32)
        needed, ops, slot = mt_program(positions)
        assert max(needed) < 624
        init = mt_init(seed)
        words = [init[j] for j in needed]
        for dst, a, b, c in ops:
            assert dst == len(words)
            y = (words[a] & 0x80000000) | (words[b] & 0x7FFFFFFF)
            words.append(words[c] ^ (y >> 1) ^ (MT_MATRIX_A if y & 1 else 0))
        assert [mt_temper(words[slot[p]]) for p in positions] == outputs_at("mt19937", seed, positions)
    assert len(mt_program([5])[1]) == 1  # a first-block output costs one twisted word
