"""Vectorised torch generators: outputs at chosen positions for a whole tensor of seeds (cpu or cuda).

This is the portable path: it runs wherever torch runs (ROCm shows up as `cuda`). Every preset of
pipeline.prng.generators.families is covered: 64-bit families run in int64 with wrap-around (their bit
patterns), MT19937 is done in int32 with wrap-around (torch's uint32 lacks arithmetic on cpu) and computes only
the state words the requested positions need (pipeline.prng.generators.mt_plan), never a full 624-word twist;
the LCG family uses the affine jump, so its cost does not depend on the positions.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch

from pipeline.prng.generators import families as fam
from pipeline.prng.generators import jump
from pipeline.prng.generators import reference as ref
from pipeline.prng.generators.mt_plan import mt_program

MASK32 = 0xFFFFFFFF
MT_N = 624  # the init chain never needs more words
# Generators whose outputs() also takes int32 seeds (the seed's bit pattern): the whole filter then runs in int32.
INT32_SEED_GENERATORS = tuple(n for n, p in fam.PRESETS.items() if isinstance(p.definition, fam.Mt19937))


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
    d = fam.PRESETS[generator].definition
    if isinstance(d, fam.Pcg):
        s0 = seeds
    elif d.pow2:
        s0 = (seeds ^ d.seed_xor) & _i64(d.m - 1)
    else:  # m < 2**31 (the Park-Miller modulus): products of two residues fit in int64
        s0 = (seeds ^ d.seed_xor) % d.m
        if d.zero_to_one:
            s0 = torch.where(s0 == 0, torch.ones_like(s0), s0)
    rows = []
    for p in positions:
        a, c = jump.coefficients(generator, p)
        if isinstance(d, fam.Pcg):
            old = s0 * _i64(a) + _i64(c)  # int64 wraps mod 2**64: the bits are the uint64 ones
            xorshifted = (_srl64(_srl64(old, 18) ^ old, 27)) & MASK32
            rot = _srl64(old, 59)
            rows.append(((xorshifted >> rot) | (xorshifted << ((32 - rot) & 31))) & MASK32)
            continue
        internal = (s0 * _i64(a) + _i64(c)) & _i64(d.m - 1) if d.pow2 else (s0 * a + c) % d.m
        rows.append(_srl64(internal, d.out_shift) & ((1 << d.out_bits) - 1) if d.out_shift else internal)
    return torch.stack(rows)


def _walk(
    state: list[torch.Tensor], step: Callable[[list[torch.Tensor]], torch.Tensor], positions: Sequence[int]
) -> torch.Tensor:
    """Outputs at `positions` of a stream generator: `step` advances the state in place and returns the output."""
    wanted: dict[int, list[int]] = {}
    for i, p in enumerate(positions):
        wanted.setdefault(p, []).append(i)
    out = torch.empty((len(positions), state[0].numel()), dtype=torch.int64, device=state[0].device)
    for p in range(max(positions) + 1):
        value = step(state)
        for i in wanted.get(p, ()):
            out[i] = value
    return out


def _rotl64(x: torch.Tensor, r: int) -> torch.Tensor:
    return (x << r) | _srl64(x, 64 - r)


def _xorshift_outputs(
    seeds: torch.Tensor, positions: Sequence[int], shifts: tuple[int, int, int] = (13, 17, 5)
) -> torch.Tensor:
    a, b, c = shifts

    def step(st: list[torch.Tensor]) -> torch.Tensor:
        x = st[0]
        x ^= (x << a) & MASK32
        x ^= x >> b
        x ^= (x << c) & MASK32
        return x

    return _walk([seeds.clone()], step, positions)


def _xorshift64_outputs(d: fam.Xorshift64, seeds: torch.Tensor, positions: Sequence[int]) -> torch.Tensor:
    a, b, c = d.shifts
    mult = _i64(d.mult)

    def step(st: list[torch.Tensor]) -> torch.Tensor:
        x = st[0]
        x = x ^ _srl64(x, a)
        x = x ^ (x << b)
        x = x ^ _srl64(x, c)
        st[0] = x = x * mult
        return x if d.out == "full64" else x & MASK32

    return _walk([seeds.clone()], step, positions)


def _xorshift128_outputs(d: fam.Xorshift128, seeds: torch.Tensor, positions: Sequence[int]) -> torch.Tensor:
    def step(st: list[torch.Tensor]) -> torch.Tensor:
        x, y, z, w = st
        t = (x ^ (x << 11)) & MASK32
        w2 = w ^ (w >> 19) ^ t ^ (t >> 8)
        st[:] = [y, z, w, w2]
        return w2

    return _walk([seeds.clone(), *(torch.full_like(seeds, v) for v in d.init)], step, positions)


def _xoshiro_outputs(d: fam.Xoshiro256pp, seeds: torch.Tensor, positions: Sequence[int]) -> torch.Tensor:
    def step(st: list[torch.Tensor]) -> torch.Tensor:
        s0, s1, s2, s3 = st
        result = _rotl64(s0 + s3, 23) + s0
        t = s1 << 17
        s2 = s2 ^ s0
        s3 = s3 ^ s1
        s1 = s1 ^ s2
        s0 = s0 ^ s3
        s2 = s2 ^ t
        st[:] = [s0, s1, s2, _rotl64(s3, 45)]
        return result

    return _walk([seeds.clone(), *(torch.full_like(seeds, _i64(v)) for v in d.init)], step, positions)


def _sfc64_outputs(d: fam.Sfc64, seeds: torch.Tensor, positions: Sequence[int]) -> torch.Tensor:
    def step(st: list[torch.Tensor]) -> torch.Tensor:
        a, b, c, n = st
        tmp = a + b + n
        st[:] = [b ^ _srl64(b, 11), c + (c << 3), _rotl64(c, 24) + tmp, n + 1]
        return tmp

    return _walk([seeds.clone(), *(torch.full_like(seeds, _i64(v)) for v in d.init)], step, positions)


def _philox_outputs(d: fam.Philox4x32, seeds: torch.Tensor, positions: Sequence[int]) -> torch.Tensor:
    """Counter-based: draw i is word 0 of the block for counter (i, 0, 0, 0), key (seed low, seed high)."""
    rows = []
    for p in positions:
        c0 = torch.full_like(seeds, p & MASK32)
        c1 = torch.zeros_like(seeds)
        c2 = torch.zeros_like(seeds)
        c3 = torch.zeros_like(seeds)
        k0, k1 = seeds & MASK32, _srl64(seeds, 32) & MASK32
        for r in range(d.rounds):
            if r:
                k0 = (k0 + ref.PHILOX_W0) & MASK32
                k1 = (k1 + ref.PHILOX_W1) & MASK32
            p0, p1 = c0 * ref.PHILOX_M0, c2 * ref.PHILOX_M1  # < 2**64: int64 wraps, bits stay exact
            c0, c1, c2, c3 = _srl64(p1, 32) ^ c1 ^ k0, p1 & MASK32, _srl64(p0, 32) ^ c3 ^ k1, p0 & MASK32
        rows.append(c0)
    return torch.stack(rows)


def _mt_words(seeds32: torch.Tensor, indices: Sequence[int]) -> dict[int, torch.Tensor]:
    """init_genrand state words at `indices` (int32 bit patterns), running the chain only as far as needed.

    The chain runs in _mt_chain (TorchScript where available, see _scripted_chain). Word 0 is `seeds32` itself.
    Eager torch pays a fixed cost per op, so this path wants chunks of 10**4..10**5 seeds (torch_path.CHUNK).
    """
    wanted = sorted(set(indices))
    later = [i for i in wanted if i > 0]
    chain = _scripted_chain()
    words = dict(zip(later, chain(seeds32, later, step_constants(wanted[-1], seeds32.device)), strict=True))
    if wanted[0] == 0:
        words[0] = seeds32
    return words


def _mt_chain(seeds32: torch.Tensor, wanted: list[int], steps: list[torch.Tensor]) -> list[torch.Tensor]:
    """Init words wanted[0] < wanted[1] < ... (all >= 1) of the init_genrand chain from seeds32 (int32 bits).

    Four ops a step: x >> 30 into the scratch t, & 3 (a logical shift: torch shifts int32 arithmetically), ^ x,
    then `torch.add(i, t, alpha=MULT)` (multiply and add fused, wrapping in int32) back into t, which becomes x,
    while the other of two scratch tensors becomes t; a word that is kept goes to a fresh tensor instead. Writing
    where the op reads (in place) costs ~15% less than into another buffer (measured on 128K int32 in L2: the
    destination's cache lines need no read-for-ownership). Operands are 0-dim int32 tensors from `steps`
    (step_constants): Python-int operands send int32 tensors down a slower path. MULT is written out
    (reference.MT_INIT_MULT): TorchScript does not read module globals."""
    out: list[torch.Tensor] = []
    if len(wanted) == 0:
        return out
    scratch = [torch.empty_like(seeds32), torch.empty_like(seeds32)]
    j = 0
    cur = seeds32
    k = 0
    for i in range(1, wanted[-1] + 1):
        t = scratch[j]
        torch.bitwise_right_shift(cur, steps[30], out=t)
        t.bitwise_and_(steps[3])
        t.bitwise_xor_(cur)
        if i == wanted[k]:
            cur = torch.empty_like(seeds32)
            torch.add(steps[i], t, alpha=1812433253, out=cur)
            out.append(cur)
            k += 1
        else:
            torch.add(steps[i], t, alpha=1812433253, out=t)
            cur = t
            j = 1 - j
    return out


ChainFn = Callable[[torch.Tensor, list[int], list[torch.Tensor]], list[torch.Tensor]]
_CHAIN: list[ChainFn] = []


def _scripted_chain() -> ChainFn:
    """_mt_chain compiled by TorchScript once per process, or the plain function where that is unavailable.

    Why TorchScript: its interpreter runs the ~1600 ops of a chunk's chain without taking the GIL per op. From
    Python each op takes and drops the GIL, and two threads handing it over every few microseconds ran no faster
    than one (measured on the 2-core machine: 64K-seed chunks, 4.9 M seeds/s with one thread, 4.5 with two);
    scripted, two threads reach 11.2 (5.8 with one). torch.jit.script is deprecated in favour of torch.compile,
    which needs a C++ toolchain at run time, so any failure here (a torch without it, no source files) keeps the
    eager loop: same results, slower on a multi-core cpu."""
    if not _CHAIN:
        fn: ChainFn = _mt_chain
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                fn = torch.jit.script(_mt_chain)
        except Exception:  # any TorchScript failure leaves the (equivalent) eager loop
            fn = _mt_chain
        _CHAIN.append(fn)
    return _CHAIN[0]


_STEP_CONSTANTS: dict[str, list[torch.Tensor]] = {}


def step_constants(last: int, device: torch.device | str) -> list[torch.Tensor]:
    """0-dim int32 tensors 0..last (at least), built once per device and reused by every chunk and thread (one
    per op costs as much as the op on cpu)."""
    key = str(device)
    table = _STEP_CONSTANTS.get(key)
    if table is None or len(table) <= last:
        table = [torch.tensor(i, dtype=torch.int32, device=device) for i in range(max(last + 1, MT_N))]
        _STEP_CONSTANTS[key] = table  # replaced whole: a thread holding the old list still reads a full one
    return table


def _c(value: int, like: torch.Tensor) -> torch.Tensor:
    """A cached 0-dim constant of like's dtype (int32 ops with Python-int operands take a much slower path)."""
    key = (value, like.dtype, str(like.device))
    c = _CONSTANTS.get(key)
    if c is None:
        c = _CONSTANTS[key] = torch.tensor(value, dtype=like.dtype, device=like.device)
    return c


_CONSTANTS: dict[tuple[int, torch.dtype, str], torch.Tensor] = {}


def _mt_temper(y: torch.Tensor) -> torch.Tensor:
    y = y ^ ((y >> _c(11, y)) & _c(0x1FFFFF, y))
    y = y ^ ((y << _c(7, y)) & _c(_i32(0x9D2C5680), y))
    y = y ^ ((y << _c(15, y)) & _c(_i32(0xEFC60000), y))
    return y ^ ((y >> _c(18, y)) & _c(0x3FFF, y))


def _mt_next(cur: torch.Tensor, nxt: torch.Tensor, far: torch.Tensor) -> torch.Tensor:
    y = (cur & _c(_i32(0x80000000), cur)) | (nxt & _c(0x7FFFFFFF, nxt))
    mag = (-(y & _c(1, y))) & _c(_i32(ref.MT_MATRIX_A), y)
    return far ^ ((y >> _c(1, y)) & _c(0x7FFFFFFF, y)) ^ mag


def mt_next_into(cur: torch.Tensor, nxt: torch.Tensor, far: torch.Tensor, out: torch.Tensor, t: torch.Tensor) -> None:
    """out = twist(cur, nxt, far), like _mt_next but in place: out and t are preallocated (t is scratch).

    The matrix term depends only on bit 0 of y, which comes from nxt."""
    c = _c
    torch.bitwise_and(cur, c(_i32(0x80000000), cur), out=out)
    torch.bitwise_and(nxt, c(0x7FFFFFFF, nxt), out=t)
    out.bitwise_or_(t).bitwise_right_shift_(c(1, out)).bitwise_and_(c(0x7FFFFFFF, out))  # y >>> 1
    out.bitwise_xor_(far)
    torch.bitwise_and(nxt, c(1, nxt), out=t)
    t.neg_().bitwise_and_(c(_i32(ref.MT_MATRIX_A), t))
    out.bitwise_xor_(t)


def mt_temper_into(w: torch.Tensor, out: torch.Tensor, t: torch.Tensor) -> None:
    """out = temper(w) with the preallocated out and scratch t (12 in-place ops; _mt_temper allocates 12 tensors)."""
    c = _c
    torch.bitwise_right_shift(w, c(11, w), out=t)
    t.bitwise_and_(c(0x1FFFFF, t))
    torch.bitwise_xor(w, t, out=out)
    for shift, mask in ((7, 0x9D2C5680), (15, 0xEFC60000)):
        torch.bitwise_left_shift(out, c(shift, out), out=t)
        t.bitwise_and_(c(_i32(mask), t))
        out.bitwise_xor_(t)
    torch.bitwise_right_shift(out, c(18, out), out=t)
    t.bitwise_and_(c(0x3FFF, t))
    out.bitwise_xor_(t)


MtWords = Callable[[torch.Tensor, Sequence[int]], dict[int, torch.Tensor]]


WORDS_BUDGET = 256 << 20  # bytes of MT words held at once; far positions need more words, so fewer seeds a pass


def _mt_outputs(seeds: torch.Tensor, positions: Sequence[int], mt_words: MtWords | None) -> torch.Tensor:
    mt_words = mt_words or _mt_words
    needed, ops, slot = mt_program(sorted(set(positions)))
    step = max(1024, WORDS_BUDGET // (4 * (len(needed) + len(ops))))
    parts = []
    for lo in range(0, seeds.numel(), step):
        seeds32 = seeds[lo : lo + step].to(torch.int32)  # bit pattern of the unsigned seed (no copy if int32)
        init = mt_words(seeds32, needed)
        words = [init[j] for j in needed]
        for _dst, a, b, c in ops:  # dst is always the next slot: ops come in slot order
            words.append(_mt_next(words[a], words[b], words[c]))
        parts.append(torch.stack([_mt_temper(words[slot[p]]) for p in positions]))
    return torch.cat(parts, dim=1).to(torch.int64) & MASK32


def outputs(
    generator: str, seeds: torch.Tensor, positions: Sequence[int], *, mt_words: MtWords | None = None
) -> torch.Tensor:
    """int64 tensor [len(positions), len(seeds)] of outputs; `seeds` is an int64 tensor in [0, 2**32).

    32-bit outputs are the unsigned values; 64-bit outputs (see families.Preset.draw_bits) are their bit patterns
    as int64 (negative when the top bit is set): reduce them with `residues`, not `%`.
    mt_words: an alternative producer of MT init words (the C kernel on GPUs); torch ops by default.
    """
    if not positions:
        return torch.empty((0, seeds.numel()), dtype=torch.int64, device=seeds.device)
    if generator not in fam.PRESETS:
        raise ValueError(f"generator {generator!r} is unknown; choose one of {', '.join(ref.GENERATORS)}")
    d = fam.PRESETS[generator].definition
    if generator in jump.JUMP_GENERATORS:
        return _jump_outputs(generator, seeds, positions)
    if isinstance(d, fam.Xorshift32):
        return _xorshift_outputs(seeds, positions, d.shifts)
    if isinstance(d, fam.Mt19937):
        out = _mt_outputs(seeds, positions, mt_words)
        return out >> d.out_shift if d.out_shift else out
    if isinstance(d, fam.Xorshift64):
        return _xorshift64_outputs(d, seeds, positions)
    if isinstance(d, fam.Xorshift128):
        return _xorshift128_outputs(d, seeds, positions)
    if isinstance(d, fam.Xoshiro256pp):
        return _xoshiro_outputs(d, seeds, positions)
    if isinstance(d, fam.Sfc64):
        return _sfc64_outputs(d, seeds, positions)
    return _philox_outputs(d, seeds, positions)


def unsigned_mod(x: torch.Tensor, modulus: int) -> torch.Tensor:
    """(x read as uint64) mod modulus for int64 bit patterns, modulus <= 2**31, without overflow."""
    hi, lo = _srl64(x, 32), x & MASK32
    return ((hi % modulus) * ((1 << 32) % modulus) + lo) % modulus


def residues(
    generator: str, seeds: torch.Tensor, positions: Sequence[int], modulus: int, *, mt_words: MtWords | None = None
) -> torch.Tensor:
    """outputs(...) mod modulus, reducing 64-bit outputs in full (as their kernels do)."""
    out = outputs(generator, seeds, positions, mt_words=mt_words)
    return unsigned_mod(out, modulus) if fam.PRESETS[generator].draw_bits == 64 else out % modulus
