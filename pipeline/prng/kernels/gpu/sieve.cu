// Fused filters of the jumped and 32-bit families: seed -> the outputs at the filter draws -> residue test -> hit,
// in registers, writing only candidate seeds (pipeline.prng.kernels.gpu.plans builds every table read here).
//
// Filter entries: e = 0 .. n_entries-1, each a (position, target) pair. The jumped kinds read the affine map of the
// entry's position (A, C: pipeline.prng.generators.jump), the walked ones list targets by position:
// first[p] .. first[p+1] are the entries of output p, p = 0 .. last.

// KIND: pipeline.prng.generators.jump's kinds (0 lcg32, 1 java, 2 minstd, 3 pcg32, 4 any power-of-two modulus with
// pmask / pshift / pout, 5 any modulus 2**31-1 with an increment)
template <int KIND>
__device__ __forceinline__ void jump_filter(u64 start, u32 n, const u64* coef_a, const u64* coef_c, const u32* tgt,
                                            u32 n_entries, Div dv, u64 pmask, u32 pshift, u64 pout, u32* out,
                                            u32* count, u32 cap) {
    SEEDS(i, n) {
        u32 seed = (u32)(start + i);
        u64 s = seed;
        u32 s32 = seed;
        if (KIND == 1) s = (s ^ 0x5DEECE66Dull) & 0xFFFFFFFFFFFFull;
        if (KIND == 2 || KIND == 5) {
            s32 = mod_m31_seed(seed);
            if (KIND == 2 && s32 == 0u) s32 = 1u;
        }
        bool hit = false;
        for (u32 e = 0; e < n_entries; e++) {
            u64 a = coef_a[e], c = coef_c[e];
            u32 v;
            if (KIND == 0) {
                v = seed * (u32)a + (u32)c;
            } else if (KIND == 1) {
                v = (u32)(((a * s + c) & 0xFFFFFFFFFFFFull) >> 16);
            } else if (KIND == 2) {
                v = mod_m31(a * (u64)s32);
            } else if (KIND == 3) {
                u64 old = a * s + c;
                v = rotr32((u32)(((old >> 18) ^ old) >> 27), (u32)(old >> 59));
            } else if (KIND == 4) {
                v = (u32)((((a * s + c) & pmask) >> pshift) & pout);
            } else {
                v = mod_m31(a * (u64)s32 + c);
            }
            hit |= divides(v, tgt[e], dv);
        }
        if (hit) emit(seed, out, count, cap);
    }
}

#define JUMP_KERNEL(K)                                                                                               \
    extern "C" __global__ void sieve_jump_##K(u64 start, u32 n, const u64* coef_a, const u64* coef_c, const u32* tgt, \
                                              u32 n_entries, u32 inv, u32 k, u32 limit, u64 pmask, u32 pshift,        \
                                              u64 pout, u32* out, u32* count, u32 cap) {                              \
        Div dv = {inv, k, limit};                                                                                     \
        jump_filter<K>(start, n, coef_a, coef_c, tgt, n_entries, dv, pmask, pshift, pout, out, count, cap);          \
    }

JUMP_KERNEL(0)
JUMP_KERNEL(1)
JUMP_KERNEL(2)
JUMP_KERNEL(3)
JUMP_KERNEL(4)
JUMP_KERNEL(5)

extern "C" __global__ void sieve_xorshift32(u64 start, u32 n, const u32* first, const u32* tgt, u32 last, u32 s1,
                                            u32 s2, u32 s3, u32 inv, u32 k, u32 limit, u32* out, u32* count,
                                            u32 cap) {
    Div dv = {inv, k, limit};
    SEEDS(i, n) {
        u32 seed = (u32)(start + i);
        u32 x = seed;
        bool hit = false;
        for (u32 p = 0; p <= last; p++) {
            x ^= x << s1;
            x ^= x >> s2;
            x ^= x << s3;
            for (u32 e = first[p]; e < first[p + 1]; e++) hit |= divides(x, tgt[e], dv);
        }
        if (hit) emit(seed, out, count, cap);
    }
}

// MT19937 outputs 0 .. last (last < 227) with two cursors on the seeding chain and no state: output t is
// temper(twist(w[t], w[t+1], w[t+397])) of the init words w, so a low cursor at w[t] and a high one at w[t+397]
// each move one chain step an output. The first output costs the 397 steps to w[397], each later one two steps.
extern "C" __global__ void sieve_mt_cursor(u64 start, u32 n, const u32* first, const u32* tgt, u32 last,
                                           u32 out_shift, u32 inv, u32 k, u32 limit, u32* out, u32* count, u32 cap) {
    Div dv = {inv, k, limit};
    SEEDS(i, n) {
        u32 seed = (u32)(start + i);
        u32 lo = seed, hi = seed;
        for (u32 j = 1; j < 398u; j++) hi = mt_init_step(hi, j);
        bool hit = false;
        for (u32 t = 0; t <= last; t++) {
            u32 nxt = mt_init_step(lo, t + 1u);
            u32 y = mt_temper(mt_twist(lo, nxt, hi)) >> out_shift;
            for (u32 e = first[t]; e < first[t + 1]; e++) hit |= divides(y, tgt[e], dv);
            lo = nxt;
            if (t < last) hi = mt_init_step(hi, t + 398u);
        }
        if (hit) emit(seed, out, count, cap);
    }
}

// MT19937 at any positions: the words pipeline.prng.generators.mt_plan.mt_program names, in a scratch table of
// [n_slots][n] words (coalesced: seed i's slot s at s*n + i). need: the sorted init-word indices (slots
// 0 .. n_need-1); ops: rows (dst, a, b, c) of twisted words; slot[e]: the word behind filter entry e.
extern "C" __global__ void sieve_mt_program(u64 start, u32 n, const u32* need, u32 n_need, const u32* ops,
                                            u32 n_ops, const u32* slot, const u32* tgt, u32 n_entries,
                                            u32 out_shift, u32 inv, u32 k, u32 limit, u32* scratch, u32* out,
                                            u32* count, u32 cap) {
    Div dv = {inv, k, limit};
    SEEDS(i, n) {
        u32 seed = (u32)(start + i);
        u32 x = seed;
        u32 kk = 0;
        if (need[0] == 0u) scratch[(u64)(kk++) * n + i] = x;
        for (u32 j = 1; kk < n_need; j++) {
            x = mt_init_step(x, j);
            if (need[kk] == j) scratch[(u64)(kk++) * n + i] = x;
        }
        for (u32 o = 0; o < n_ops; o++) {
            const u32* op = ops + 4u * o;
            scratch[(u64)op[0] * n + i] =
                mt_twist(scratch[(u64)op[1] * n + i], scratch[(u64)op[2] * n + i], scratch[(u64)op[3] * n + i]);
        }
        bool hit = false;
        for (u32 e = 0; e < n_entries; e++) {
            u32 y = mt_temper(scratch[(u64)slot[e] * n + i]) >> out_shift;
            hit |= divides(y, tgt[e], dv);
        }
        if (hit) emit(seed, out, count, cap);
    }
}

// The MT19937 init words the torch scoring of candidates asks for (pipeline.prng.generators.torch_gen's MtWords):
// word j of seed i goes to out[slot_of[j] * n + i] for the j with slot_of[j] != NO_SLOT, j = 0 .. wmax. One kernel
// instead of the ~1600 element-wise torch ops of the 397-step chain.
#define NO_SLOT 0xFFFFFFFFu

extern "C" __global__ void mt_words(const u32* seeds, u32 n, const u32* slot_of, u32 wmax, u32* out) {
    SEEDS(i, n) {
        u32 x = seeds[i];
        if (slot_of[0] != NO_SLOT) out[(u64)slot_of[0] * n + i] = x;
        for (u32 j = 1; j <= wmax; j++) {
            x = mt_init_step(x, j);
            if (slot_of[j] != NO_SLOT) out[(u64)slot_of[j] * n + i] = x;
        }
    }
}
