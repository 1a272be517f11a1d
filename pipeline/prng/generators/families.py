"""Generator families as parameterised definitions, and the named presets built from them.

A preset name is a promise about a definition, not a label: the names watcher has always shipped keep their
library meaning (`lcg32` is Numerical Recipes, `java_lcg` is java.util.Random, `pcg32` is the PCG reference
stream), and the definitions of the operators' system (github.com/mmercalde/prng_cluster_public, commit
39405171760501bce4c8802b2696df4c18a56561, `prng_registry.py`) carry the `prng_cluster.` prefix, so a seed
their system reports reproduces under its `prng_cluster.*` name (tests/fixtures/prng_cluster/vectors.json).

Every seed is a 32-bit unsigned integer; "draw" below is the integer that is reduced mod `modulus` and
compared with the history (64-bit draws are reduced in full, never truncated). Each preset: its origin, then
its definition.

- `lcg32`: Numerical Recipes `ranqd1`.
    Lcg a=1664525 c=1013904223 m=2^32; state=seed; draw=new state
- `java_lcg`: `java.util.Random(seed).nextInt()`, unsigned.
    Lcg a=0x5DEECE66D c=11 m=2^48; state=(seed^0x5DEECE66D) mod 2^48; draw=new state bits 47..16
- `minstd`: C++11 `std::minstd_rand`.
    Lcg a=48271 c=0 m=2^31-1; state=seed mod m, 0->1; draw=new state
- `minstd_rand0`: C++11 `std::minstd_rand0` (Park-Miller 1988).
    Lcg a=16807 c=0 m=2^31-1; state=seed mod m, 0->1; draw=new state
- `xorshift32`: Marsaglia 2003.
    Xorshift32 <<13 >>17 <<5; state=seed (0 stays 0); draw=new state
- `pcg32`: PCG reference stream (pcg32-demo).
    Pcg XSH-RR 64/32, pcg32_srandom_r(seed, 54): inc=109, state=0, step, +seed, step; draw from old state
- `mt19937`: C++11 `std::mt19937(seed)`.
    Mt19937 init_genrand(seed); draw=tempered word
- `php_mt_rand`: PHP >= 7.1 `mt_srand(seed); mt_rand()`.
    Mt19937 init_genrand(seed); draw=tempered word >> 1
- `prng_cluster.java_lcg`: prng_registry `java_lcg_cpu`.
    Lcg a=0x5DEECE66D c=11 m=2^48; state=seed (NO scramble); draw=new state bits 47..16
- `prng_cluster.lcg32`: prng_registry `lcg32_cpu` (and fixed-skip kernel).
    Lcg a=1103515245 c=12345 m=2^31-1 (applied with %); state=seed; draw=new state
- `prng_cluster.lcg32_hybrid`: their `lcg32_hybrid` CUDA kernel only.
    Lcg a=1103515245 c=12345 m=2^31 (32-bit wrap then & 0x7FFFFFFF); state=seed; draw=new state
- `prng_cluster.minstd`: prng_registry `minstd_cpu`.
    Lcg a=48271 c=0 m=2^31-1; state=seed mod m, 0->1 (= `minstd`)
- `prng_cluster.xorshift32`: prng_registry `xorshift32_cpu`.
    Xorshift32 <<13 >>17 <<5 (= `xorshift32`)
- `prng_cluster.xorshift64`: prng_registry `xorshift64_cpu`.
    Xorshift64 >>12 <<25 >>27, then state *= 0x2545F4914F6CDD1D (kept as state); state=seed; draw=LOW 32 bits of new
    state
- `prng_cluster.xorshift64_kernel`: their `xorshift64` CUDA kernels (fixed and hybrid).
    as `prng_cluster.xorshift64`, draw=the FULL 64-bit state
- `prng_cluster.xorshift128`: prng_registry `xorshift128_cpu`.
    Xorshift128 x=seed y=362436069 z=521288629 w=88675123; t=x^x<<11; shift; w^=w>>19^t^t>>8; draw=new w
- `prng_cluster.pcg32`: prng_registry `pcg32_cpu` (and fixed-skip kernel).
    Pcg XSH-RR 64/32, state=seed, inc=1442695040888963407, no warm-up; draw from old state
- `prng_cluster.pcg32_hybrid`: their `pcg32_hybrid` CUDA kernel only.
    as `prng_cluster.pcg32`, draw from the NEW state (draw j = `prng_cluster.pcg32` draw j+1)
- `prng_cluster.mt19937`: prng_registry `mt19937_cpu_simple`.
    Mt19937 init_genrand(seed) (= `mt19937`)
- `prng_cluster.xoshiro256pp`: prng_registry `xoshiro256pp_cpu`.
    xoshiro256++ s0=seed s1=0x9E3779B97F4A7C15 s2=0x6A09E667F3BCC908 s3=0xBB67AE8584CAA73B (no splitmix);
    draw=rotl(s0+s3,23)+s0, full 64 bits
- `prng_cluster.philox4x32`: prng_registry `philox4x32_cpu`.
    Philox4x32-10, key=(seed, 0), counter=(i,0,0,0) for draw i; draw=word 0
- `prng_cluster.sfc64`: prng_registry `sfc64_cpu`.
    SFC64 a=seed b=0x9E3779B97F4A7C15 c=0x6A09E667F3BCC908 counter=1, no warm-up; draw=a+b+counter, full 64 bits

Which preset reproduces which of their searches: fixed-skip sieves use the eleven names of their registry under
the prefix (`prng_cluster.xorshift64` follows their CPU reference; their GPU kernels reduce the full 64-bit
state, i.e. `prng_cluster.xorshift64_kernel`). Their variable-skip ("hybrid") kernels differ for three families:
use `prng_cluster.lcg32_hybrid`, `prng_cluster.pcg32_hybrid` and `prng_cluster.xorshift64_kernel` there.

Each family also carries the miss rule of their hybrid kernel for that family (`VariableRule`, see
pipeline.prng.sieve.variable): which state a missed draw leaves behind and whether the expected skip follows
matches. Every preset of a family uses that family's rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1

MissStep = Literal["hi", "hi+1", "none", "one"]


@dataclass(frozen=True)
class VariableRule:
    """What their hybrid kernel does for a family (pipeline.prng.sieve.variable applies it).

    adaptive: the expected skip moves to every matched skip, a miss records the unchanged expected skip and the
    scan stops on the miss that makes `max_misses` in a row (their group A); otherwise the window never moves, a
    miss records skip 0 and the scan stops when the misses in a row exceed `max_misses` (group B).
    miss_step: how far a missed draw moves the stream: `hi` (the window's last skip), `hi+1`, `none`, `one`.
    """

    adaptive: bool
    miss_step: MissStep


GROUP_A = VariableRule(True, "hi")
GROUP_A_MT = VariableRule(True, "hi+1")
GROUP_A_PCG = VariableRule(True, "none")
GROUP_B = VariableRule(False, "one")


@dataclass(frozen=True)
class Lcg:
    """state' = (a*state + c) mod m; seeding state = ((seed ^ seed_xor) mod m), 0 -> 1 if zero_to_one;
    draw = (new state >> out_shift) & (2**out_bits - 1). m a power of two up to 2**64, or below 2**32."""

    a: int
    c: int
    m: int
    seed_xor: int = 0
    zero_to_one: bool = False
    out_shift: int = 0
    out_bits: int = 32
    family: str = "lcg"
    rule: VariableRule = GROUP_A

    @property
    def pow2(self) -> bool:
        return self.m & (self.m - 1) == 0


@dataclass(frozen=True)
class Pcg:
    """PCG XSH-RR 64/32: state' = state*6364136223846793005 + inc mod 2**64.

    seeding `srandom`: pcg32_srandom_r(seed, seq) with inc=(seq<<1)|1 (state=0, step, +seed, step);
    `state`: state=seed, inc as given. draw_from `old` (the reference) or `new` (after the step)."""

    inc: int
    seeding: Literal["srandom", "state"]
    draw_from: Literal["old", "new"] = "old"
    family: str = "pcg"
    rule: VariableRule = GROUP_A_PCG


@dataclass(frozen=True)
class Xorshift32:
    shifts: tuple[int, int, int] = (13, 17, 5)
    family: str = "xorshift32"
    rule: VariableRule = GROUP_A


@dataclass(frozen=True)
class Xorshift64:
    """x ^= x>>s0; x ^= x<<s1; x ^= x>>s2; then x = x*mult mod 2**64 kept AS the state (their variant)."""

    shifts: tuple[int, int, int] = (12, 25, 27)
    mult: int = 0x2545F4914F6CDD1D
    out: Literal["low32", "full64"] = "low32"
    family: str = "xorshift64"
    rule: VariableRule = GROUP_A


@dataclass(frozen=True)
class Xorshift128:
    init: tuple[int, int, int] = (362436069, 521288629, 88675123)  # y, z, w; x = seed
    family: str = "xorshift128"
    rule: VariableRule = GROUP_A


@dataclass(frozen=True)
class Mt19937:
    out_shift: int = 0
    family: str = "mt19937"
    rule: VariableRule = GROUP_A_MT


@dataclass(frozen=True)
class Xoshiro256pp:
    init: tuple[int, int, int] = (0x9E3779B97F4A7C15, 0x6A09E667F3BCC908, 0xBB67AE8584CAA73B)  # s1..s3; s0 = seed
    family: str = "xoshiro256pp"
    rule: VariableRule = GROUP_B


@dataclass(frozen=True)
class Philox4x32:
    rounds: int = 10
    family: str = "philox4x32"
    rule: VariableRule = GROUP_B


@dataclass(frozen=True)
class Sfc64:
    init: tuple[int, int, int] = (0x9E3779B97F4A7C15, 0x6A09E667F3BCC908, 1)  # b, c, counter; a = seed
    family: str = "sfc64"
    rule: VariableRule = GROUP_B


Definition = Lcg | Pcg | Xorshift32 | Xorshift64 | Xorshift128 | Mt19937 | Xoshiro256pp | Philox4x32 | Sfc64


@dataclass(frozen=True)
class Preset:
    name: str
    definition: Definition
    origin: str

    @property
    def draw_bits(self) -> int:
        d = self.definition
        if isinstance(d, Lcg):
            return d.out_bits
        if isinstance(d, Xorshift64):
            return 64 if d.out == "full64" else 32
        if isinstance(d, Xoshiro256pp | Sfc64):
            return 64
        if isinstance(d, Mt19937):
            return 32 - d.out_shift
        return 32


PCG_DEFAULT_INC = 1442695040888963407
_M31 = 2**31 - 1

_PRESETS = (
    Preset("java_lcg", Lcg(0x5DEECE66D, 11, 1 << 48, seed_xor=0x5DEECE66D, out_shift=16), "java.util.Random"),
    Preset("lcg32", Lcg(1664525, 1013904223, 1 << 32), "Numerical Recipes ranqd1"),
    Preset("minstd", Lcg(48271, 0, _M31, zero_to_one=True), "C++11 std::minstd_rand"),
    Preset("xorshift32", Xorshift32(), "Marsaglia xorshift32 13/17/5"),
    Preset("pcg32", Pcg((54 << 1) | 1, "srandom"), "PCG reference pcg32_srandom_r(seed, 54)"),
    Preset("mt19937", Mt19937(), "C++11 std::mt19937"),
    Preset("php_mt_rand", Mt19937(out_shift=1), "PHP >= 7.1 mt_rand"),
    Preset("minstd_rand0", Lcg(16807, 0, _M31, zero_to_one=True), "C++11 std::minstd_rand0"),
    Preset("prng_cluster.java_lcg", Lcg(0x5DEECE66D, 11, 1 << 48, out_shift=16), "prng_cluster java_lcg_cpu"),
    Preset("prng_cluster.lcg32", Lcg(1103515245, 12345, _M31), "prng_cluster lcg32_cpu"),
    Preset("prng_cluster.lcg32_hybrid", Lcg(1103515245, 12345, 1 << 31), "prng_cluster lcg32_hybrid kernel"),
    Preset("prng_cluster.minstd", Lcg(48271, 0, _M31, zero_to_one=True), "prng_cluster minstd_cpu"),
    Preset("prng_cluster.xorshift32", Xorshift32(), "prng_cluster xorshift32_cpu"),
    Preset("prng_cluster.xorshift64", Xorshift64(), "prng_cluster xorshift64_cpu"),
    Preset("prng_cluster.xorshift64_kernel", Xorshift64(out="full64"), "prng_cluster xorshift64 kernels"),
    Preset("prng_cluster.xorshift128", Xorshift128(), "prng_cluster xorshift128_cpu"),
    Preset("prng_cluster.pcg32", Pcg(PCG_DEFAULT_INC, "state"), "prng_cluster pcg32_cpu"),
    Preset("prng_cluster.pcg32_hybrid", Pcg(PCG_DEFAULT_INC, "state", "new"), "prng_cluster pcg32_hybrid kernel"),
    Preset("prng_cluster.mt19937", Mt19937(), "prng_cluster mt19937_cpu_simple"),
    Preset("prng_cluster.xoshiro256pp", Xoshiro256pp(), "prng_cluster xoshiro256pp_cpu"),
    Preset("prng_cluster.philox4x32", Philox4x32(), "prng_cluster philox4x32_cpu"),
    Preset("prng_cluster.sfc64", Sfc64(), "prng_cluster sfc64_cpu"),
)
PRESETS: dict[str, Preset] = {p.name: p for p in _PRESETS}
# The eleven registry keys of prng_registry.py, mapped to the preset that follows their CPU reference.
PRNG_CLUSTER_FAMILIES = (
    "java_lcg",
    "lcg32",
    "minstd",
    "xorshift32",
    "xorshift64",
    "xorshift128",
    "pcg32",
    "mt19937",
    "xoshiro256pp",
    "philox4x32",
    "sfc64",
)


def preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"generator {name!r} is unknown; choose one of {', '.join(PRESETS)}") from None
