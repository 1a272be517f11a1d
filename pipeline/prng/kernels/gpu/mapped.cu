// Walks of library calls (data.mapping): each lane follows its seed's calls output by output in registers,
// applying the library's rejection loop, and compares every call the filter checks. A call's output position depends
// on the seed (a rejected output moves every later call on), so it is only known by walking.
//
// tbl[s * n_calls + c]: the value call c must give under skip s, NOT_CHECKED where the filter does not look.
// A seed is a candidate when a checked call matches, or when its step budget ran out before the last filter call
// (unusually many rejections): the exact scoring decides those. pipeline.prng.kernels.gpu.mapped_plans builds the
// tables.

#define NOT_CHECKED 0xFFFFFFFFu

__device__ __forceinline__ bool call_hit(const u32* tbl, u32 n_skips, u32 n_calls, u32 call, u32 value) {
    bool hit = false;
    for (u32 s = 0; s < n_skips; s++) {
        u32 tg = tbl[s * n_calls + call];
        hit |= tg != NOT_CHECKED && tg == value;
    }
    return hit;
}

// java.util.Random: KIND 0 nextInt(bound) with rejection, 1 nextInt(power of two), 2 floor(nextDouble() * bound)
// (two steps a call). steps: LCG steps to walk at most.
template <int KIND>
__device__ __forceinline__ void java_walk(u64 start, u32 n, const u32* tbl, u32 n_skips, u32 n_calls, u32 steps,
                                          u32 bound, u32 magic, u32 qshift, u32 pow2_shift, u32* out, u32* count,
                                          u32 cap) {
    SEEDS(i, n) {
        u32 seed = (u32)(start + i);
        u64 state = ((u64)seed ^ 0x5DEECE66Dull) & 0xFFFFFFFFFFFFull;
        u32 calls = 0, half = 0;
        bool hit = false;
        for (u32 t = 0; t < steps && calls < n_calls; t++) {
            state = (state * 0x5DEECE66Dull + 0xBull) & 0xFFFFFFFFFFFFull;
            u32 value;
            if (KIND == 2) {
                if ((t & 1u) == 0u) {
                    half = (u32)(state >> 22);  // next(26)
                    continue;
                }
                u64 word = ((u64)half << 27) + (state >> 21);  // 53 bits, exact in a double
                // the product is >= 0, so truncation is Java's floor
                value = (u32)((double)word * 1.1102230246251565e-16 * (double)bound);
            } else {
                u32 u = (u32)(state >> 17);  // next(31)
                if (KIND == 1) {
                    value = u >> pow2_shift;
                } else {
                    value = fastmod(u, bound, magic, qshift);
                    if (u - value + (bound - 1u) >= 0x80000000u) continue;  // Java's int overflow: redrawn
                }
            }
            hit |= call_hit(tbl, n_skips, n_calls, calls, value);
            calls++;
        }
        if (hit || calls < n_calls) emit(seed, out, count, cap);
    }
}

#define JAVA_KERNEL(K)                                                                                               \
    extern "C" __global__ void walk_java_##K(u64 start, u32 n, const u32* tbl, u32 n_skips, u32 n_calls, u32 steps,  \
                                             u32 bound, u32 magic, u32 qshift, u32 pow2_shift, u32* out, u32* count, \
                                             u32 cap) {                                                              \
        java_walk<K>(start, n, tbl, n_skips, n_calls, steps, bound, magic, qshift, pow2_shift, out, count, cap);     \
    }

JAVA_KERNEL(0)
JAVA_KERNEL(1)
JAVA_KERNEL(2)

// CPython's init_by_array([seed]): the first loop's word a[j] and the second loop's b[j] from a[j-1], b[j-1]
// (j >= 2), f(x) = x ^ (x >> 30): a[j] = (base[j] ^ f(a[j-1]) * 1664525) + seed, b[j] = (a[j] ^ f(b[j-1]) *
// 1566083941) - j. base: init_genrand(19650218)'s words.
__device__ __forceinline__ void by_array_step(u32& a, u32& b, const u32* base, u32 j, u32 key) {
    a = (base[j] ^ ((a ^ (a >> 30)) * 1664525u)) + key;
    b = (a ^ ((b ^ (b >> 30)) * 1566083941u)) - j;
}

// MT19937's calls with two cursors on the seeding chain (no state: sieve.cu's sieve_mt_cursor says how), so at most
// 227 outputs. KIND: 0 numpy randint (param: mask), 1 Python randrange (param: shift), 2 PHP mt_rand (param: the
// redraw limit), 3 PHP with a power-of-two bound, 4 mod. BY_ARRAY: CPython's seeding, where w[1] is written last
// (from b[623]), so one pass over both chains finds it and the high cursor's start before the walk.
template <int KIND, int BY_ARRAY>
__device__ __forceinline__ void mt_walk(u64 start, u32 n, const u32* tbl, u32 n_skips, u32 n_calls, u32 steps,
                                        u32 bound, u32 magic, u32 qshift, u32 param, const u32* base, u32* out,
                                        u32* count, u32 cap) {
    SEEDS(i, n) {
        u32 seed = (u32)(start + i);
        u32 lo, hi, w1 = 0, lo_a = 0, lo_b = 0, hi_a = 0, hi_b = 0;
        if (BY_ARRAY) {
            u32 a1 = (base[1] ^ ((base[0] ^ (base[0] >> 30)) * 1664525u)) + seed;
            u32 a = a1;
            for (u32 j = 2; j < 624u; j++) a = (base[j] ^ ((a ^ (a >> 30)) * 1664525u)) + seed;
            u32 a1b = (a1 ^ ((a ^ (a >> 30)) * 1664525u)) + seed;  // mt[1] rewritten from mt[0] = a[623]
            lo_a = hi_a = a1;
            lo_b = hi_b = a1b;
            for (u32 j = 2; j < 398u; j++) by_array_step(hi_a, hi_b, base, j, seed);
            u32 ea = hi_a, eb = hi_b;
            for (u32 j = 398; j < 624u; j++) by_array_step(ea, eb, base, j, seed);
            w1 = (a1b ^ ((eb ^ (eb >> 30)) * 1566083941u)) - 1u;
            lo = MT_UPPER;  // w[0]
            hi = hi_b;      // w[397]
        } else {
            lo = hi = seed;
            for (u32 j = 1; j < 398u; j++) hi = mt_init_step(hi, j);
        }
        u32 calls = 0;
        bool hit = false;
        for (u32 t = 0; t < steps && calls < n_calls; t++) {
            u32 nxt;
            if (BY_ARRAY) {
                if (t == 0u) {
                    nxt = w1;
                } else {
                    by_array_step(lo_a, lo_b, base, t + 1u, seed);
                    nxt = lo_b;
                }
            } else {
                nxt = mt_init_step(lo, t + 1u);
            }
            u32 u = mt_temper(mt_twist(lo, nxt, hi));
            lo = nxt;
            if (t + 1u < steps) {
                if (BY_ARRAY) {
                    by_array_step(hi_a, hi_b, base, t + 398u, seed);
                    hi = hi_b;
                } else {
                    hi = mt_init_step(hi, t + 398u);
                }
            }
            u32 v;
            bool ok = true;
            if (KIND == 0) {
                v = u & param;
                ok = v < bound;
            } else if (KIND == 1) {
                v = u >> param;
                ok = v < bound;
            } else if (KIND == 2) {
                ok = u <= param;
                v = fastmod(u, bound, magic, qshift);
            } else if (KIND == 3) {
                v = u & (bound - 1u);
            } else {
                v = fastmod(u, bound, magic, qshift);
            }
            if (!ok) continue;
            hit |= call_hit(tbl, n_skips, n_calls, calls, v);
            calls++;
        }
        if (hit || calls < n_calls) emit(seed, out, count, cap);
    }
}

#define MT_WALK_KERNEL(K, B)                                                                                          \
    extern "C" __global__ void walk_mt_##K##_##B(u64 start, u32 n, const u32* tbl, u32 n_skips, u32 n_calls,        \
                                                 u32 steps, u32 bound, u32 magic, u32 qshift, u32 param,              \
                                                 const u32* base, u32* out, u32* count, u32 cap) {                    \
        mt_walk<K, B>(start, n, tbl, n_skips, n_calls, steps, bound, magic, qshift, param, base, out, count, cap);   \
    }

MT_WALK_KERNEL(0, 0)
MT_WALK_KERNEL(1, 0)
MT_WALK_KERNEL(2, 0)
MT_WALK_KERNEL(3, 0)
MT_WALK_KERNEL(4, 0)
MT_WALK_KERNEL(0, 1)
MT_WALK_KERNEL(1, 1)
MT_WALK_KERNEL(2, 1)
MT_WALK_KERNEL(3, 1)
MT_WALK_KERNEL(4, 1)
