"""Fused Triton filter for draws made by `java.util.Random` calls (data.mapping java_next_int, java_next_double):
each lane walks its seed's 48-bit LCG step by step in registers, applies the library's call (nextInt's rejection,
nextDouble's two steps) and compares every call the filter checks, writing only the candidate seeds.

Why a walk and not a jump: with a rejecting call the output that answers call c depends on the seed (a rejected
output moves every later call one step on), so the position of a draw is only known by walking. The walk is one
64-bit multiply-add a step, and the lanes stay in step except for rare rejections.

Exactness: a seed is a candidate when any filter call of any skip matches, or when the walk's step budget ran out
before the last filter call (a seed with unusually many rejections); the candidates then get the torch path's
whole-window scoring (pipeline.prng.mappings.torch_path.score), which finishes any exhausted seed exactly. So the
survivors are those of the other paths. Runs on GPUs through torch's `cuda` device, and on cpu under
TRITON_INTERPRET=1 (the tests).

MT19937's calls (numpy randint, PHP mt_rand, Python randrange) walk the same way, with two cursors on the seeding
chain instead of a state: output t (t < 227) is temper(twist(w[t], w[t+1], w[t+397])) of the seeded words w, so a
low cursor at w[t] and a high one at w[t+397] each advance one chain step per output, and the 624-word state is
never held. CPython's init_by_array seeding is two chains (its first loop's words a[j], its second loop's b[j],
b[j] depending on a[j] and b[j-1]); w[1] is written last, from b[623], so the high cursor's start and w[1] take one
pass over both chains before the walk. A spec whose calls need more than 227 outputs runs on the torch path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import triton
import triton.language as tl

from pipeline.prng.kernels.common import fastmod_params
from pipeline.prng.kernels.gpu.sieve import BLOCK, _emit, _mod, collect

TRITON_MAPPINGS = ("java_next_int", "java_next_double")
MT_MAPPINGS = ("numpy_randint", "python_randrange", "php_mt_rand", "mod")  # mod: for python_mt19937's stream
MT_WALK_STEPS = 227  # outputs the cursors reach before w[t+397] would need a twisted word (624 - 397)
K_NUMPY, K_PYTHON, K_PHP, K_PHP_POW2, K_MOD = 0, 1, 2, 3, 4
# constants the kernels read: compiled Triton reads a module global only when it is a constexpr (the interpreter
# reads any, so only an ahead-of-time compile catches a plain int here: tests/pipeline/test_triton_compile.py)
INIT_MULT = tl.constexpr(1812433253)
BY_ARRAY_MULT1, BY_ARRAY_MULT2 = tl.constexpr(1664525), tl.constexpr(1566083941)
JAVA_MULT, JAVA_ADD, MASK48 = tl.constexpr(0x5DEECE66D), tl.constexpr(0xB), tl.constexpr((1 << 48) - 1)
K_NEXT_INT, K_NEXT_INT_POW2, K_NEXT_DOUBLE = 0, 1, 2


@triton.jit
def _java_walk_kernel(start, n, tbl_ptr, n_skips, n_calls, steps, bound, magic, qshift, pow2_shift, out_ptr,
                      count_ptr, cap, KIND: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """tbl[s * n_calls + c]: the draw call c must give under skip s, -1 where the filter does not check it.
    `steps`: LCG steps to walk at most (a next_double call takes two)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    seed = start + offs.to(tl.int64)
    state = (seed.to(tl.uint64) ^ JAVA_MULT) & MASK48
    calls = tl.zeros([BLOCK], dtype=tl.int32)
    hit = tl.zeros([BLOCK], dtype=tl.int1)
    half = tl.zeros([BLOCK], dtype=tl.uint64)  # next_double: next(26) of the call's first step
    for t in range(steps):
        state = (state * JAVA_MULT + JAVA_ADD) & MASK48
        if KIND == 2:
            first = (t % 2) == 0
            if first:
                half = state >> 22  # next(26)
                ok = tl.zeros([BLOCK], dtype=tl.int1)
                value = tl.zeros([BLOCK], dtype=tl.int64)
            else:
                word = (half << 27) + (state >> 21)  # 53 bits, exact in a double
                value = tl.floor(word.to(tl.float64) * 1.1102230246251565e-16 * bound.to(tl.float64)).to(tl.int64)
                ok = tl.full([BLOCK], 1, tl.int1)
        else:
            u = (state >> 17).to(tl.uint32)  # next(31)
            if KIND == 1:  # power-of-two bound: (bound * next(31)) >> 31, no rejection
                value = (u >> pow2_shift.to(tl.uint32)).to(tl.int64)
                ok = tl.full([BLOCK], 1, tl.int1)
            else:  # accept unless u - r + (bound - 1) overflows an int
                r = _mod(u, bound, magic, qshift)
                ok = (u.to(tl.int64) - r.to(tl.int64) + bound - 1) < 2147483648
                value = r.to(tl.int64)
        live = ok & (calls < n_calls)
        for s in range(n_skips):
            tg = tl.load(tbl_ptr + s * n_calls + calls, mask=live & mask, other=-1)
            hit = hit | (live & (tg >= 0) & (tg.to(tl.int64) == value))
        calls = calls + ok.to(tl.int32)
    hit = hit | (calls < n_calls)  # ran out of steps: undecided here, decided by the exact scoring
    _emit(seed, hit, mask, out_ptr, count_ptr, cap)


def _filter_rows(spec: Any) -> list[dict[int, int]]:
    """Per skip: {call: the value it must give} over the filter draws."""
    order = spec.check_order()[: spec.filter_length()]
    return [{spec.position(j, s): spec.residues[j] for j in order} for s in spec.skips]


def _call_table(spec: Any, device: str) -> tuple[int, torch.Tensor, int]:
    """(calls the filter reads, the flat [skip, call] table of wanted values (-1: not checked), skips)."""
    rows = _filter_rows(spec)
    n_calls = max(max(r) for r in rows) + 1
    table = [[row.get(c, -1) for c in range(n_calls)] for row in rows]
    return n_calls, torch.tensor(table, dtype=torch.int32, device=device).flatten(), len(rows)


class MappedJavaFilter:
    """One mapped spec's call table on a device; `candidates(lo, hi)` returns the int64 seeds the walk flags.

    `steps(n_calls)` says how many LCG steps a lane walks for that many calls (the caller's buffer rule, e.g.
    pipeline.prng.mappings.torch_path.buffer_length: nextDouble two a call, nextInt the calls plus six standard
    deviations of rejections); kernels sit below mappings/ and sieve/, so the rule is passed in."""

    def __init__(self, spec: Any, device: str, steps: Callable[[int], int]) -> None:
        if spec.mapping not in TRITON_MAPPINGS:
            raise ValueError(f"no Triton walk for mapping {spec.mapping!r}; it has {', '.join(TRITON_MAPPINGS)}")
        self.spec, self.device = spec, device
        self.n_calls, self.tbl, self.n_skips = _call_table(spec, device)
        n = spec.modulus
        self.steps = steps(self.n_calls)
        _d, magic, shift = fastmod_params(n) if n < 1 << 31 else (n, 0, 32)
        self.magic, self.qshift = magic, shift - 32
        self.pow2_shift = 31 - (n.bit_length() - 1) if n & (n - 1) == 0 else 0
        if spec.mapping == "java_next_double":
            self.kind = K_NEXT_DOUBLE
        else:
            self.kind = K_NEXT_INT_POW2 if n & (n - 1) == 0 else K_NEXT_INT

    def candidates(self, lo: int, hi: int, cap: int | None = None) -> torch.Tensor:
        def launch(out: torch.Tensor, count: torch.Tensor, room: int) -> None:
            _java_walk_kernel[(triton.cdiv(hi - lo, BLOCK),)](
                lo, hi - lo, self.tbl, self.n_skips, self.n_calls, self.steps, self.spec.modulus, self.magic,
                self.qshift, self.pow2_shift, out, count, room, KIND=self.kind, BLOCK=BLOCK,
            )  # fmt: skip

        return collect(launch, hi - lo, self.device, cap)


@triton.jit
def _temper(y):
    y = y ^ (y >> 11)
    y = y ^ ((y << 7) & 0x9D2C5680).to(tl.uint32)
    y = y ^ ((y << 15) & 0xEFC60000).to(tl.uint32)
    return y ^ (y >> 18)


@triton.jit
def _by_array_step(a, b, base_ptr, j, key):
    """init_by_array words a[j], b[j] from a[j-1], b[j-1] (j >= 2): the first loop's `(mt[j] ^ (f(a[j-1]) *
    1664525)) + key`, then the second loop's `(a[j] ^ (f(b[j-1]) * 1566083941)) - j`, f(x) = x ^ (x >> 30)."""
    c = tl.load(base_ptr + j).to(tl.uint32, bitcast=True)
    a = (c ^ ((a ^ (a >> 30)) * BY_ARRAY_MULT1)) + key
    b = (a ^ ((b ^ (b >> 30)) * BY_ARRAY_MULT2)) - tl.cast(j, tl.uint32)
    return a, b


@triton.jit
def _mt_walk_kernel(start, n, tbl_ptr, n_skips, n_calls, steps, bound, magic, qshift, param, base_ptr, out_ptr,
                    count_ptr, cap, KIND: tl.constexpr, BY_ARRAY: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """tbl[s * n_calls + c]: the value call c must give under skip s, -1 where the filter does not check it.
    steps <= 227 outputs; param: numpy's mask, Python's shift, PHP's limit. base: init_genrand(19650218)'s words
    (BY_ARRAY only)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    seed = start + offs.to(tl.int64)
    key = seed.to(tl.uint32)
    if BY_ARRAY:
        c0 = tl.load(base_ptr).to(tl.uint32, bitcast=True)
        c1 = tl.load(base_ptr + 1).to(tl.uint32, bitcast=True)
        a1 = (c1 ^ ((c0 ^ (c0 >> 30)) * BY_ARRAY_MULT1)) + key  # a[1]
        a = a1
        for j in range(2, 624):
            c = tl.load(base_ptr + j).to(tl.uint32, bitcast=True)
            a = (c ^ ((a ^ (a >> 30)) * BY_ARRAY_MULT1)) + key
        a1b = (a1 ^ ((a ^ (a >> 30)) * BY_ARRAY_MULT1)) + key  # mt[1] rewritten from mt[0] = a[623]
        lo_a, lo_b = a1, a1b  # the low cursor: (a[1], b[1]) with b[1] = the rewritten mt[1]
        hi_a, hi_b = a1, a1b
        for j in range(2, 398):
            hi_a, hi_b = _by_array_step(hi_a, hi_b, base_ptr, j, key)
        a_end, b_end = hi_a, hi_b
        for j in range(398, 624):
            a_end, b_end = _by_array_step(a_end, b_end, base_ptr, j, key)
        w1 = (a1b ^ ((b_end ^ (b_end >> 30)) * BY_ARRAY_MULT2)) - 1  # w[1], written from b[623]
        lo = tl.full([BLOCK], 0x80000000, tl.uint32)  # w[0]
        hi = hi_b  # w[397]
    else:
        lo = key  # w[0]
        hi = key
        for i in range(1, 398):
            hi = (hi ^ (hi >> 30)) * INIT_MULT + tl.cast(i, tl.uint32)  # w[397] at the end
    calls = tl.zeros([BLOCK], dtype=tl.int32)
    hit = tl.zeros([BLOCK], dtype=tl.int1)
    for t in range(steps):
        if BY_ARRAY:
            na, nb = _by_array_step(lo_a, lo_b, base_ptr, t + 1, key)  # at t = 0: unused (w[1] is special)
            first = t == 0
            nxt = tl.where(first, w1, nb)
            lo_a = tl.where(first, lo_a, na)
            lo_b = tl.where(first, lo_b, nb)
        else:
            nxt = (lo ^ (lo >> 30)) * INIT_MULT + tl.cast(t + 1, tl.uint32)
        y = ((lo & 0x80000000) | (nxt & 0x7FFFFFFF)).to(tl.uint32)
        mag = tl.where((y & 1) != 0, 0x9908B0DF, 0).to(tl.uint32)
        u = _temper(hi ^ (y >> 1) ^ mag)
        lo = nxt
        if BY_ARRAY:
            hi_a, hi_b = _by_array_step(hi_a, hi_b, base_ptr, t + 398, key)
            hi = hi_b
        else:
            hi = (hi ^ (hi >> 30)) * INIT_MULT + tl.cast(t + 398, tl.uint32)
        if KIND == 0:  # numpy: the low bits under the mask, redrawn above n - 1
            v = u & tl.cast(param, tl.uint32)
            ok = v < tl.cast(bound, tl.uint32)
        elif KIND == 1:  # Python: the top bits, redrawn at n or above
            v = u >> tl.cast(param, tl.uint32)
            ok = v.to(tl.int64) < bound
        elif KIND == 2:  # PHP: redrawn above the limit, then % n
            ok = u.to(tl.int64) <= tl.cast(param, tl.int64)
            v = _mod(u, bound, magic, qshift)
        elif KIND == 3:  # PHP, n a power of two: the low bits
            v = u & tl.cast(bound - 1, tl.uint32)
            ok = tl.full([BLOCK], 1, tl.int1)
        else:  # mod
            v = _mod(u, bound, magic, qshift)
            ok = tl.full([BLOCK], 1, tl.int1)
        live = ok & (calls < n_calls)
        for s in range(n_skips):
            tg = tl.load(tbl_ptr + s * n_calls + calls, mask=live & mask, other=-1)
            hit = hit | (live & (tg >= 0) & (tg.to(tl.int64) == v.to(tl.int64)))
        calls = calls + ok.to(tl.int32)
    hit = hit | (calls < n_calls)  # ran out of outputs: decided by the exact scoring
    _emit(seed, hit, mask, out_ptr, count_ptr, cap)


class MappedMtFilter:
    """The MT19937 walk for one mapped spec (numpy randint and PHP mt_rand on mt19937, Python randrange or mod on
    python_mt19937); same contract as MappedJavaFilter. The caller (kernels sit below mappings/) passes what the
    library defines: `param`, the mapping's number besides n (numpy's mask, Python's shift, PHP's limit), and
    `by_array_base`, init_genrand(19650218)'s 624 words for CPython's init_by_array seeding, None for
    init_genrand. `fits(spec, steps)` says whether the calls fit in the 227 outputs the cursors reach."""

    def __init__(
        self, spec: Any, device: str, steps: Callable[[int], int], param: int, by_array_base: list[int] | None
    ) -> None:
        if spec.mapping not in MT_MAPPINGS:
            raise ValueError(f"no Triton MT walk for mapping {spec.mapping!r}; it has {', '.join(MT_MAPPINGS)}")
        self.spec, self.device = spec, device
        self.n_calls, self.tbl, self.n_skips = _call_table(spec, device)
        self.steps = steps(self.n_calls)
        if self.steps > MT_WALK_STEPS:
            raise ValueError(f"the calls need {self.steps} outputs; the MT walk reaches {MT_WALK_STEPS}")
        n = spec.modulus
        _d, self.magic, shift = fastmod_params(n) if n < 1 << 31 else (n, 0, 32)
        self.qshift = shift - 32
        self.by_array = by_array_base is not None
        base = [v - (1 << 32) if v >= 1 << 31 else v for v in by_array_base or [0]]
        self.base = torch.tensor(base, dtype=torch.int32, device=device)
        self.param = param
        pow2 = n & (n - 1) == 0
        self.kind = {
            "numpy_randint": K_NUMPY,
            "python_randrange": K_PYTHON,
            "php_mt_rand": K_PHP_POW2 if pow2 else K_PHP,
            "mod": K_MOD,
        }[spec.mapping]

    @staticmethod
    def fits(spec: Any, steps: Callable[[int], int]) -> bool:
        return spec.mapping in MT_MAPPINGS and steps(max(max(r) for r in _filter_rows(spec)) + 1) <= MT_WALK_STEPS

    def candidates(self, lo: int, hi: int, cap: int | None = None) -> torch.Tensor:
        def launch(out: torch.Tensor, count: torch.Tensor, room: int) -> None:
            _mt_walk_kernel[(triton.cdiv(hi - lo, BLOCK),)](
                lo, hi - lo, self.tbl, self.n_skips, self.n_calls, self.steps, self.spec.modulus, self.magic,
                self.qshift, self.param, self.base, out, count, room, KIND=self.kind, BY_ARRAY=self.by_array,
                BLOCK=BLOCK,
            )  # fmt: skip

        return collect(launch, hi - lo, self.device, cap)
