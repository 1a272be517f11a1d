// Shared helpers of the sieve kernels (CUDA C in the subset NVRTC and hipRTC both accept, no #include).
//
// Every kernel covers seeds start .. start+n-1 with a grid-stride loop, so any grid runs it: the GPU launches one
// thread a seed, the tests' CPU shim runs one "thread" over the whole block. Hits are appended to out[] with one
// atomicAdd on count each (candidates are rare: about one seed in modulus per filter draw); count keeps counting
// past cap so the caller can rerun with room for all. Seeds are 32-bit, so out[] holds u32.

typedef unsigned int u32;
typedef unsigned long long u64;

#define SEEDS(i, n) for (u32 i = blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += blockDim.x * gridDim.x)

#define MT_UPPER 0x80000000u
#define MT_LOWER 0x7FFFFFFFu
#define MT_MATRIX_A 0x9908B0DFu
#define MT_INIT_MULT 1812433253u
#define M31 0x7FFFFFFFu

// x mod d for a 32-bit residue test: (x - t) is divisible by d exactly when rotr(((x - t) * inv), k) <= limit
// (modulus = 2**k * odd, inv = odd**-1 mod 2**32; pipeline.prng.kernels.common.divisibility_params). It also passes
// the rare x < t with (x - t + 2**32) % d == 0: the exact scoring drops those.
struct Div {
    u32 inv, k, limit;
};

__device__ __forceinline__ u32 rotr32(u32 x, u32 k) { return (x >> k) | (x << ((32u - k) & 31u)); }

__device__ __forceinline__ bool divides(u32 x, u32 t, Div v) { return rotr32((x - t) * v.inv, v.k) <= v.limit; }

// exact x mod d for 32-bit x: magic and qshift from pipeline.prng.kernels.common.fastmod_params (shift - 32)
__device__ __forceinline__ u32 fastmod(u32 x, u32 d, u32 magic, u32 qshift) {
    u32 r = x - (__umulhi(x, magic) >> qshift) * d;
    return r >= d ? r - d : r;
}

// exact x mod d for 64-bit x without a 64-bit division: m = floor((2**64 - 1) / d) underestimates the quotient by
// at most two
__device__ __forceinline__ u32 mod64(u64 x, u64 d, u64 m) {
    u64 r = x - __umul64hi(x, m) * d;
    if (r >= d) r -= d;
    if (r >= d) r -= d;
    return (u32)r;
}

__device__ __forceinline__ void emit(u32 seed, u32* out, u32* count, u32 cap) {
    u32 slot = atomicAdd(count, 1u);
    if (slot < cap) out[slot] = seed;
}

__device__ __forceinline__ u32 mt_init_step(u32 prev, u32 i) { return (prev ^ (prev >> 30)) * MT_INIT_MULT + i; }

__device__ __forceinline__ u32 mt_twist(u32 cur, u32 nxt, u32 far) {
    u32 y = (cur & MT_UPPER) | (nxt & MT_LOWER);
    return far ^ (y >> 1) ^ ((y & 1u) ? MT_MATRIX_A : 0u);
}

__device__ __forceinline__ u32 mt_temper(u32 y) {
    y ^= y >> 11;
    y ^= (y << 7) & 0x9D2C5680u;
    y ^= (y << 15) & 0xEFC60000u;
    return y ^ (y >> 18);
}

// seed mod (2**31 - 1) for a 32-bit seed (one fold suffices: seed < 2**32 = 2*M31 + 2)
__device__ __forceinline__ u32 mod_m31_seed(u32 s) {
    u32 r = (s & M31) + (s >> 31);
    return r >= M31 ? r - M31 : r;
}

// (a * s + c) mod (2**31 - 1) for a, s, c < 2**31: two folds and one subtraction
__device__ __forceinline__ u32 mod_m31(u64 x) {
    x = (x & M31) + (x >> 31);
    x = (x & M31) + (x >> 31);
    return (u32)(x >= M31 ? x - M31 : x);
}

__device__ __forceinline__ u64 rotl64(u64 x, u32 k) { return (x << k) | (x >> ((64u - k) & 63u)); }

// Philox4x32-R word 0 of counter block (ctr, 0, 0, 0) under key (k0, 0)
__device__ __forceinline__ u32 philox_word0(u32 ctr, u32 k0, u32 rounds) {
    u32 a0 = ctr, a1 = 0u, a2 = 0u, a3 = 0u, k1 = 0u;
    for (u32 r = 0; r < rounds; r++) {
        if (r) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        u32 hi0 = __umulhi(a0, 0xD2511F53u), lo0 = a0 * 0xD2511F53u;
        u32 hi1 = __umulhi(a2, 0xCD9E8D57u), lo1 = a2 * 0xCD9E8D57u;
        a0 = hi1 ^ a1 ^ k0;
        a1 = lo1;
        a2 = hi0 ^ a3 ^ k1;
        a3 = lo0;
    }
    return a0;
}
