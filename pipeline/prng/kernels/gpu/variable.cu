// Variable-skip ("hybrid") scans, as pipeline.prng.sieve.variable.scan_strategy computes them, for every
// (offset, strategy) pair of every seed: rows (seed, offset, strategy index, matches) of each pair that reaches
// `need` matches. A scan stops early once the draws left cannot bring it to `need` (such a pair is never a row).
//
// Per seed ONE residue stream serves every pair (as pipeline.prng.sieve.variable.reference_variable_rows): LINEAR
// residues from the smallest offset on, generated as far as the scans read. A pair that reads past them is scanned
// again with its own generator and a ring of residues: the window of draw j (skips lo .. hi around the expected
// skip) never starts before the previous window did and is at most 2*tolerance+1 wide, so a ring of
// RING >= 2*tolerance+1 residues holds every value a scan reads.
//
// gp: the generator's parameters (pipeline.prng.kernels.gpu.variable_plan.generator_params lays them out).

#define G_LCG 0
#define G_PCG 1
#define G_XS32 2
#define G_XS64 3
#define G_XS128 4
#define G_XOSHIRO 5
#define G_SFC64 6
#define G_PHILOX 7

struct Gen {
    u32 family, s1, s2, s3, out_shift, rounds, ctr;
    bool m31, draw_new, wide;
    u64 a, c, mask, out_mask, x, y, z, w;
};

__device__ __forceinline__ Gen gen_seed(const u64* gp, u32 seed) {
    Gen g;
    g.family = (u32)gp[0];
    g.a = gp[1];
    g.c = gp[2];
    g.mask = gp[3];
    g.m31 = gp[4] != 0ull;
    g.out_shift = (u32)gp[7];
    g.out_mask = gp[8];
    g.s1 = (u32)gp[9];
    g.s2 = (u32)gp[10];
    g.s3 = (u32)gp[11];
    g.wide = gp[15] != 0ull;
    g.draw_new = gp[16] != 0ull;
    g.rounds = (u32)gp[18];
    g.ctr = 0;
    g.x = seed;
    g.y = gp[12];
    g.z = gp[13];
    g.w = gp[14];
    if (g.family == G_LCG) {
        u64 s = (u64)seed ^ gp[5];
        s = g.m31 ? (u64)mod_m31_seed((u32)s) : (s & g.mask);
        if (gp[6] != 0ull && s == 0ull) s = 1;
        g.x = s;
    } else if (g.family == G_PCG && gp[17] != 0ull) {  // pcg32_srandom_r: state 0, step, + seed, step
        g.x = (g.c + seed) * g.a + g.c;
    }
    return g;
}

__device__ __forceinline__ u64 gen_next(Gen& g) {
    switch (g.family) {
        case G_LCG:
            g.x = g.m31 ? (u64)mod_m31(g.a * g.x + g.c) : ((g.a * g.x + g.c) & g.mask);
            return (g.x >> g.out_shift) & g.out_mask;
        case G_PCG: {
            u64 old = g.x;
            g.x = old * g.a + g.c;
            u64 src = g.draw_new ? g.x : old;
            return rotr32((u32)(((src >> 18) ^ src) >> 27), (u32)(src >> 59));
        }
        case G_XS32: {
            u32 x = (u32)g.x;
            x ^= x << g.s1;
            x ^= x >> g.s2;
            x ^= x << g.s3;
            g.x = x;
            return x;
        }
        case G_XS64:
            g.x ^= g.x >> g.s1;
            g.x ^= g.x << g.s2;
            g.x ^= g.x >> g.s3;
            g.x *= g.a;
            return g.wide ? g.x : (g.x & 0xFFFFFFFFull);
        case G_XS128: {
            u32 t = (u32)g.x ^ ((u32)g.x << 11);
            g.x = g.y;
            g.y = g.z;
            g.z = g.w;
            u32 w = (u32)g.w;
            g.w = w ^ (w >> 19) ^ t ^ (t >> 8);
            return g.w;
        }
        case G_XOSHIRO: {
            u64 v = rotl64(g.x + g.w, 23) + g.x;
            u64 t = g.y << 17;
            g.z ^= g.x;
            g.w ^= g.y;
            g.y ^= g.z;
            g.x ^= g.w;
            g.z ^= t;
            g.w = rotl64(g.w, 45);
            return v;
        }
        case G_SFC64: {
            u64 v = g.x + g.y + g.w;
            g.w += 1;
            g.x = g.y ^ (g.y >> 11);
            g.y = g.z + (g.z << 3);
            g.z = rotl64(g.z, 24) + v;
            return v;
        }
        default:
            return philox_word0(g.ctr++, (u32)g.x, g.rounds);
    }
}

// MT19937 (init_genrand): the 624-word state, twisted a block at a time (no cursor walk reaches past output 226)
struct MtGen {
    u32 mt[624];
    u32 idx, out_shift;
};

__device__ __forceinline__ void mt_seed(MtGen& g, u32 seed, u32 out_shift) {
    g.mt[0] = seed;
    for (u32 j = 1; j < 624u; j++) g.mt[j] = mt_init_step(g.mt[j - 1], j);
    g.idx = 624;
    g.out_shift = out_shift;
}

__device__ __forceinline__ u64 mt_next(MtGen& g) {
    if (g.idx == 624u) {
        for (u32 j = 0; j < 624u; j++) {  // in place, as the reference: j >= 227 reads words this twist wrote
            g.mt[j] = mt_twist(g.mt[j], g.mt[j == 623u ? 0u : j + 1u], g.mt[j < 227u ? j + 397u : j - 227u]);
        }
        g.idx = 0;
    }
    return mt_temper(g.mt[g.idx++]) >> g.out_shift;
}

__device__ __forceinline__ u64 gen_step(Gen& g) { return gen_next(g); }
__device__ __forceinline__ u64 gen_step(MtGen& g) { return mt_next(g); }

struct Residue {
    u32 d, magic, qshift;
    u64 m;
    bool wide;
};

__device__ __forceinline__ u32 residue(u64 v, Residue r) {
    return r.wide ? mod64(v, r.d, r.m) : fastmod((u32)v, r.d, r.magic, r.qshift);
}

// Where a scan reads residues. SharedSource: the seed's one stream for every (offset, strategy) pair, LINEAR
// residues from the smallest offset on, generated as far as any scan has read; a pair reading past its end is
// scanned again from a RingSource: its own generator and the last RING residues (see the top of this file).
#define LINEAR 1024

template <class G>
struct SharedSource {
    G* g;
    u32* buf;
    u64 base, made;
    Residue r;

    __device__ bool reach(u64 p) {
        if (p >= base + LINEAR) return false;
        for (; made <= p; made++) buf[made - base] = residue(gen_step(*g), r);
        return true;
    }

    __device__ u32 at(u64 p) const { return buf[p - base]; }
};

template <int RING, class G>
struct RingSource {
    G* g;
    u32* ring;
    u64 made;
    Residue r;

    __device__ bool reach(u64 p) {
        for (; made <= p; made++) ring[made & (RING - 1)] = residue(gen_step(*g), r);
        return true;
    }

    __device__ u32 at(u64 p) const { return ring[p & (RING - 1)]; }
};

#define CANNOT_PASS (-1)
#define OUT_OF_STREAM (-2)

// One scan (scan_strategy): the matches of the stream from `offset` under (misses, tolerance) and the rule
// (adaptive; a miss moves the stream by hi when miss_hi, plus miss_extra), stopped once it cannot reach need.
template <class S>
__device__ __forceinline__ int scan_pair(S& src, const u32* targets, u32 scan, u32 offset, u32 misses, u32 tol,
                                         u32 adaptive, u32 miss_hi, u32 miss_extra, u32 need) {
    u64 pos = offset;
    u32 e = 5, matches = 0, run = 0;
    for (u32 j = 0; j < scan; j++) {
        if (matches + (scan - j) < need) return CANNOT_PASS;
        u32 lo = e > tol ? e - tol : 0u, hi = e + tol;
        if (!src.reach(pos + hi)) return OUT_OF_STREAM;
        u32 found = 0xFFFFFFFFu;
        for (u32 s = lo; s <= hi; s++) {
            if (src.at(pos + s) == targets[j]) {
                found = s;
                break;
            }
        }
        if (found != 0xFFFFFFFFu) {
            matches++;
            run = 0;
            pos += found + 1u;
            if (adaptive) e = found;
            continue;
        }
        run++;
        pos += (miss_hi ? hi : 0u) + miss_extra;
        if (adaptive ? run >= misses : run > misses) break;
    }
    return matches >= need ? (int)matches : CANNOT_PASS;
}

__device__ __forceinline__ void start_gen(Gen& g, const u64* gp, u32 seed) { g = gen_seed(gp, seed); }
__device__ __forceinline__ void start_gen(MtGen& g, const u64* gp, u32 seed) { mt_seed(g, seed, (u32)gp[7]); }

__device__ __forceinline__ void emit_row(u32 seed, u32 offset, u32 strategy, u32 matches, u32* out, u32* count,
                                         u32 cap) {
    u32 slot = atomicAdd(count, 1u);
    if (slot < cap) {
        out[4u * slot] = seed;
        out[4u * slot + 1u] = offset;
        out[4u * slot + 2u] = strategy;
        out[4u * slot + 3u] = matches;
    }
}

// rule: (adaptive, miss_hi, miss_extra); strategies: n_strategies (misses, tolerance) pairs, flat
template <int RING, class G>
__device__ __forceinline__ void variable_scan(u64 start, u32 n, const u64* gp, const u32* targets, u32 scan,
                                              const u32* offsets, u32 n_offsets, const u32* strategies,
                                              u32 n_strategies, u32 adaptive, u32 miss_hi, u32 miss_extra, u32 need,
                                              Residue r, u32* out, u32* count, u32 cap) {
    u32 buf[LINEAR], ring[RING];
    u32 base = offsets[0];
    for (u32 o = 1; o < n_offsets; o++) base = offsets[o] < base ? offsets[o] : base;
    SEEDS(i, n) {
        u32 seed = (u32)(start + i);
        G g;
        start_gen(g, gp, seed);
        for (u32 k = 0; k < base; k++) (void)gen_step(g);
        SharedSource<G> shared = {&g, buf, base, base, r};
        for (u32 o = 0; o < n_offsets; o++) {
            for (u32 s = 0; s < n_strategies; s++) {
                u32 misses = strategies[2u * s], tol = strategies[2u * s + 1u];
                int m = scan_pair(shared, targets, scan, offsets[o], misses, tol, adaptive, miss_hi, miss_extra, need);
                if (m == OUT_OF_STREAM) {
                    G own;
                    start_gen(own, gp, seed);
                    for (u32 k = 0; k < offsets[o]; k++) (void)gen_step(own);
                    RingSource<RING, G> rs = {&own, ring, offsets[o], r};
                    m = scan_pair(rs, targets, scan, offsets[o], misses, tol, adaptive, miss_hi, miss_extra, need);
                }
                if (m >= 0) emit_row(seed, offsets[o], s, (u32)m, out, count, cap);
            }
        }
    }
}

#define VARIABLE_KERNEL(NAME, RING, G)                                                                                 \
    extern "C" __global__ void NAME(u64 start, u32 n, const u64* gp, const u32* targets, u32 scan, const u32* offsets, \
                                    u32 n_offsets, const u32* strategies, u32 n_strategies, u32 adaptive,              \
                                    u32 miss_hi, u32 miss_extra, u32 need, u32 d, u32 magic, u32 qshift, u64 m,        \
                                    u32 wide, u32* out, u32* count, u32 cap) {                                         \
        Residue r = {d, magic, qshift, m, wide != 0u};                                                                 \
        variable_scan<RING, G>(start, n, gp, targets, scan, offsets, n_offsets, strategies, n_strategies, adaptive,    \
                               miss_hi, miss_extra, need, r, out, count, cap);                                         \
    }

VARIABLE_KERNEL(variable_128, 128, Gen)
VARIABLE_KERNEL(variable_512, 512, Gen)
VARIABLE_KERNEL(variable_2048, 2048, Gen)
VARIABLE_KERNEL(variable_mt_128, 128, MtGen)
VARIABLE_KERNEL(variable_mt_512, 512, MtGen)
VARIABLE_KERNEL(variable_mt_2048, 2048, MtGen)
