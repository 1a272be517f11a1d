"""The constants the residue tests need, computed once per spec: pure Python, so every path can import them (the
numba kernels through pipeline.prng.kernels.common, the GPU kernels' plans, which must not need numba)."""

from __future__ import annotations

MASK64 = (1 << 64) - 1


def fastmod_params(modulus: int) -> tuple[int, int, int]:
    """(d, magic, shift) so that v mod d = v - ((v*magic) >> shift)*d, corrected by one subtraction.

    With s = floor(log2 d) and magic = min(floor(2**(32+s)/d), 2**32-1) the quotient estimate for a 32-bit
    v is q or q-1. Keeping magic below 2**32 lets LLVM use one 32x32->64 vpmuludq per 4 lanes instead of an
    emulated 64-bit multiply; a hardware divide would not vectorise at all.
    """
    s = modulus.bit_length() - 1
    return modulus, min((1 << (32 + s)) // modulus, (1 << 32) - 1), 32 + s


def divisibility_params(modulus: int) -> tuple[int, int, int]:
    """(inv, k, limit) so that n % modulus == 0 exactly when rotr32(n * inv, k) <= limit, for every uint32 n.

    modulus = 2**k * odd; inv is odd**-1 mod 2**32 and limit = (2**32 - 1) // modulus (Granlund-Montgomery /
    Hacker's Delight 10-17). The filter asks `x % d == t` as `(x - t) % d == 0` (mod 2**32): one 32-bit multiply,
    a rotate and an unsigned compare per lane, all single AVX-512 instructions (vpmulld, vprorvd, vpcmpud), where
    fastmod needs a widening multiply, a shift, a multiply and a fix-up. The only extra seeds it passes are those
    with x < t and (x - t + 2**32) % d == 0, about t/2**32 of them; the exact scoring drops them.
    """
    if not 2 <= modulus <= 1 << 31:
        raise ValueError(f"modulus {modulus} must be in [2, 2**31]")
    k = (modulus & -modulus).bit_length() - 1
    odd = modulus >> k
    return pow(odd, -1, 1 << 32), k, ((1 << 32) - 1) // modulus


def mod64_params(modulus: int) -> int:
    """m = floor((2**64 - 1) / modulus): x mod modulus for a 64-bit x is x - umulhi64(x, m) * modulus, less the
    modulus at most twice (m underestimates 2**64 / modulus), so no 64-bit division runs per draw."""
    return MASK64 // modulus
