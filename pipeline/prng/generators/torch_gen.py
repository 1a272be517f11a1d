"""Vectorised torch generators: outputs at chosen positions for a whole tensor of seeds (cpu or cuda).

This is the portable path: it runs wherever torch runs (ROCm shows up as `cuda`). MT19937 is done in int32
with wrap-around (torch's uint32 lacks arithmetic on cpu) and computes only the state words the requested
positions need (pipeline.prng.generators.mt_plan), never a full 624-word twist; the LCG family uses the affine jump,
so its cost does not depend on the positions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from pipeline.prng.generators import jump
from pipeline.prng.generators import reference as ref
from pipeline.prng.generators.mt_plan import mt_program

MASK32 = 0xFFFFFFFF


def _i32(value: int) -> int:
    """An unsigned 32-bit constant as the int32 with the same bits."""
    value &= MASK32
    return value - (1 << 32) if value >= 1 << 31 else value


def _i64(value: int) -> int:
    value &= ref.MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def _srl64(x: torch.Tensor, n: int) -> torch.Tensor:
    """Logical right shift of int64 (torch shifts arithmetically)."""
    return (x >> n) & ((1 << (64 - n)) - 1)


def _jump_outputs(generator: str, seeds: torch.Tensor, positions: Sequence[int]) -> torch.Tensor:
    if generator == "java_lcg":
        s0 = (seeds ^ ref.JAVA_MULT) & ref.MASK48
    elif generator == "minstd":
        s0 = seeds % ref.MINSTD_MOD
        s0 = torch.where(s0 == 0, torch.ones_like(s0), s0)
    else:
        s0 = seeds
    rows = []
    for p in positions:
        a, c = jump.coefficients(generator, p)
        if generator == "lcg32":
            rows.append((s0 * a + c) & MASK32)  # int64 wraps mod 2**64; the low 32 bits stay exact
        elif generator == "java_lcg":
            rows.append(((s0 * a + c) & ref.MASK48) >> 16)
        elif generator == "minstd":
            rows.append((s0 * a) % ref.MINSTD_MOD)  # both < 2**31: the product fits in int64
        else:  # pcg32
            old = s0 * _i64(a) + _i64(c)
            xorshifted = (_srl64(_srl64(old, 18) ^ old, 27)) & MASK32
            rot = _srl64(old, 59)
            rows.append(((xorshifted >> rot) | (xorshifted << ((32 - rot) & 31))) & MASK32)
    return torch.stack(rows)


def _xorshift_outputs(seeds: torch.Tensor, positions: Sequence[int]) -> torch.Tensor:
    wanted: dict[int, list[int]] = {}
    for i, p in enumerate(positions):
        wanted.setdefault(p, []).append(i)
    out = torch.empty((len(positions), seeds.numel()), dtype=torch.int64, device=seeds.device)
    x = seeds.clone()
    for p in range(max(positions) + 1):
        x ^= (x << 13) & MASK32
        x ^= x >> 17
        x ^= (x << 5) & MASK32
        for i in wanted.get(p, ()):
            out[i] = x
    return out


def _mt_words(seeds32: torch.Tensor, indices: Sequence[int]) -> dict[int, torch.Tensor]:
    """init_genrand state words at `indices` (int32 bit patterns), running the chain only as far as needed.

    Four in-place ops a step; `torch.add(i, x, alpha=C)` fuses the multiply and the add. Eager torch pays a
    fixed cost per op, so this path wants large chunks (see sieve_torch.CHUNK).
    """
    wanted = set(indices)
    words: dict[int, torch.Tensor] = {}
    x = seeds32.clone()
    t = torch.empty_like(x)
    if 0 in wanted:
        words[0] = x.clone()
    for i in range(1, max(wanted) + 1):
        torch.bitwise_right_shift(x, 30, out=t)
        t.bitwise_and_(3)  # logical shift: torch shifts int32 arithmetically
        x.bitwise_xor_(t)
        torch.add(_step_constant(i, x.device), x, alpha=ref.MT_INIT_MULT, out=x)
        if i in wanted:
            words[i] = x.clone()
    return words


_STEP_CONSTANTS: dict[tuple[int, str], torch.Tensor] = {}


def _step_constant(i: int, device: torch.device) -> torch.Tensor:
    """0-dim int32 tensors reused across chunks (building one per op costs as much as the op on cpu)."""
    key = (i, str(device))
    c = _STEP_CONSTANTS.get(key)
    if c is None:
        c = _STEP_CONSTANTS[key] = torch.tensor(i, dtype=torch.int32, device=device)
    return c


def _mt_temper(y: torch.Tensor) -> torch.Tensor:
    y = y ^ ((y >> 11) & 0x1FFFFF)
    y = y ^ ((y << 7) & _i32(0x9D2C5680))
    y = y ^ ((y << 15) & _i32(0xEFC60000))
    return y ^ ((y >> 18) & 0x3FFF)


def _mt_next(cur: torch.Tensor, nxt: torch.Tensor, far: torch.Tensor) -> torch.Tensor:
    y = (cur & _i32(0x80000000)) | (nxt & 0x7FFFFFFF)
    return far ^ ((y >> 1) & 0x7FFFFFFF) ^ ((-(y & 1)) & _i32(ref.MT_MATRIX_A))


MtWords = Callable[[torch.Tensor, Sequence[int]], dict[int, torch.Tensor]]


WORDS_BUDGET = 256 << 20  # bytes of MT words held at once; far positions need more words, so fewer seeds a pass


def _mt_outputs(seeds: torch.Tensor, positions: Sequence[int], mt_words: MtWords | None) -> torch.Tensor:
    mt_words = mt_words or _mt_words
    needed, ops, slot = mt_program(sorted(set(positions)))
    step = max(1024, WORDS_BUDGET // (4 * (len(needed) + len(ops))))
    parts = []
    for lo in range(0, seeds.numel(), step):
        seeds32 = seeds[lo : lo + step].to(torch.int32)  # bit pattern of the unsigned seed
        init = mt_words(seeds32, needed)
        words = [init[j] for j in needed]
        for _dst, a, b, c in ops:  # dst is always the next slot: ops come in slot order
            words.append(_mt_next(words[a], words[b], words[c]))
        parts.append(torch.stack([_mt_temper(words[slot[p]]) for p in positions]))
    return torch.cat(parts, dim=1).to(torch.int64) & MASK32


def outputs(
    generator: str, seeds: torch.Tensor, positions: Sequence[int], *, mt_words: MtWords | None = None
) -> torch.Tensor:
    """int64 tensor [len(positions), len(seeds)] of unsigned outputs; `seeds` is an int64 tensor in [0, 2**32).

    mt_words: an alternative producer of MT init words (the Triton kernel on GPUs); torch ops by default.
    """
    if not positions:
        return torch.empty((0, seeds.numel()), dtype=torch.int64, device=seeds.device)
    if generator in jump.JUMP_GENERATORS:
        return _jump_outputs(generator, seeds, positions)
    if generator == "xorshift32":
        return _xorshift_outputs(seeds, positions)
    if generator == "mt19937":
        return _mt_outputs(seeds, positions, mt_words)
    if generator == "php_mt_rand":
        return _mt_outputs(seeds, positions, mt_words) >> 1
    raise ValueError(f"generator {generator!r} is unknown; choose one of {', '.join(ref.GENERATORS)}")
