// Fused filters of the families whose state is walked output by output (xorshift64, xorshift128, xoshiro256++,
// sfc64), and of Philox4x32, which is counter-based: each filter draw is computed from its own counter, nothing is
// walked. Same contract as sieve.cu. A 64-bit draw is reduced exactly by mod64 (no 64-bit division); a 32-bit one
// takes the divisibility test.

#define F_XS64 0
#define F_XS128 1
#define F_XOSHIRO 2
#define F_SFC64 3

// c0..c2: the family's constants (xorshift64: the multiplier; xorshift128, xoshiro256++, sfc64: the state words
// after the seed's); s1..s3: xorshift64's shifts; wide: the draw is 64 bits (d, m: mod64's divisor and multiplier).
template <int FAMILY>
__device__ __forceinline__ void stream_filter(u64 start, u32 n, const u32* first, const u32* tgt, u32 last, u64 c0,
                                              u64 c1, u64 c2, u32 s1, u32 s2, u32 s3, u32 wide, u64 d, u64 m, Div dv,
                                              u32* out, u32* count, u32 cap) {
    SEEDS(i, n) {
        u32 seed = (u32)(start + i);
        u64 x = seed, y = c0, z = c1, w = c2;
        bool hit = false;
        for (u32 p = 0; p <= last; p++) {
            u64 v;
            if (FAMILY == F_XS64) {
                x ^= x >> s1;
                x ^= x << s2;
                x ^= x >> s3;
                x *= c0;
                v = wide ? x : (x & 0xFFFFFFFFull);
            } else if (FAMILY == F_XS128) {  // 32-bit words in u64 registers: x, y, z, w
                u32 t = (u32)x ^ ((u32)x << 11);
                x = y;
                y = z;
                z = w;
                u32 ww = (u32)w;
                w = ww ^ (ww >> 19) ^ t ^ (t >> 8);
                v = w;
            } else if (FAMILY == F_XOSHIRO) {  // s0 = x, s1 = y, s2 = z, s3 = w
                v = rotl64(x + w, 23) + x;
                u64 t = y << 17;
                z ^= x;
                w ^= y;
                y ^= z;
                x ^= w;
                z ^= t;
                w = rotl64(w, 45);
            } else {  // sfc64: a = x, b = y, c = z, counter = w
                v = x + y + w;
                w += 1;
                x = y ^ (y >> 11);
                y = z + (z << 3);
                z = rotl64(z, 24) + v;
            }
            u32 e0 = first[p], e1 = first[p + 1];
            if (e0 == e1) continue;
            if (wide) {
                u32 r = mod64(v, d, m);
                for (u32 e = e0; e < e1; e++) hit |= r == tgt[e];
            } else {
                for (u32 e = e0; e < e1; e++) hit |= divides((u32)v, tgt[e], dv);
            }
        }
        if (hit) emit(seed, out, count, cap);
    }
}

#define STREAM_KERNEL(NAME, F)                                                                                        \
    extern "C" __global__ void NAME(u64 start, u32 n, const u32* first, const u32* tgt, u32 last, u64 c0, u64 c1,    \
                                    u64 c2, u32 s1, u32 s2, u32 s3, u32 wide, u64 d, u64 m, u32 inv, u32 k,          \
                                    u32 limit, u32* out, u32* count, u32 cap) {                                       \
        Div dv = {inv, k, limit};                                                                                     \
        stream_filter<F>(start, n, first, tgt, last, c0, c1, c2, s1, s2, s3, wide, d, m, dv, out, count, cap);       \
    }

STREAM_KERNEL(sieve_xorshift64, F_XS64)
STREAM_KERNEL(sieve_xorshift128, F_XS128)
STREAM_KERNEL(sieve_xoshiro256pp, F_XOSHIRO)
STREAM_KERNEL(sieve_sfc64, F_SFC64)

// Philox4x32: entry e is counter pos[e] (its output position), word 0 under key (seed, 0)
extern "C" __global__ void sieve_philox(u64 start, u32 n, const u32* pos, const u32* tgt, u32 n_entries, u32 rounds,
                                        u32 inv, u32 k, u32 limit, u32* out, u32* count, u32 cap) {
    Div dv = {inv, k, limit};
    SEEDS(i, n) {
        u32 seed = (u32)(start + i);
        bool hit = false;
        for (u32 e = 0; e < n_entries; e++) hit |= divides(philox_word0(pos[e], seed, rounds), tgt[e], dv);
        if (hit) emit(seed, out, count, cap);
    }
}
