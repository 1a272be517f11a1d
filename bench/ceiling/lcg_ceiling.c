/*
 * lcg_ceiling.c - CPU ceiling for a "first draw" LCG sieve.
 *
 * For every seed in [0, N) jump the generator to output position P with one
 * precomputed affine map x -> A*x + C, take the 32-bit output, and count the
 * seeds whose output % 1000 equals TARGET.  OpenMP parallel-for + reduction.
 *
 * Families (position P is 0-based: P = 0 is the first draw, i.e. the output
 * read after P + 1 generator steps):
 *   lcg32  Numerical Recipes: x' = 1664525*x + 1013904223 mod 2^32,
 *          state0 = seed (32 bits), output = x.
 *   java   java.util.Random: state0 = (seed ^ 0x5DEECE66D) & (2^48-1),
 *          x' = 0x5DEECE66D*x + 11 mod 2^48, output = (uint32)(x >> 16),
 *          i.e. nextInt() & 0xffffffffL; the residue is that unsigned value
 *          % 1000 (the "java_nextint_raw" mapping in
 *          tests/fixtures/mappings/vectors.json).
 *
 * usage:  lcg_ceiling FAMILY N P TARGET      (N may be written 2^K)
 * prints: {"family": ..., "seeds": N, "seconds": ..., "seeds_per_s": ..., "hits": ...}
 * build:  cc -O3 -march=native -fopenmp -o lcg_ceiling lcg_ceiling.c
 */
#include <errno.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODULUS 1000u

#define LCG32_A 1664525u
#define LCG32_C 1013904223u

#define JAVA_A UINT64_C(0x5DEECE66D)
#define JAVA_C UINT64_C(11)
#define JAVA_MASK ((UINT64_C(1) << 48) - 1)

/* Affine map x -> a*x + c modulo 2^bits (bits <= 64). */
typedef struct {
    uint64_t a, c;
} affine;

/* Compose: (g after f)(x) = g.a*(f.a*x + f.c) + g.c. */
static affine compose(affine g, affine f, uint64_t mask) {
    affine r;
    r.a = (g.a * f.a) & mask;
    r.c = (g.a * f.c + g.c) & mask;
    return r;
}

/* The map applied `steps` times, by square-and-multiply. */
static affine affine_pow(affine step, uint64_t steps, uint64_t mask) {
    affine result = {1, 0};
    while (steps) {
        if (steps & 1) result = compose(step, result, mask);
        step = compose(step, step, mask);
        steps >>= 1;
    }
    return result;
}

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    if (strncmp(s, "2^", 2) == 0) {
        unsigned long k = strtoul(s + 2, &end, 10);
        if (errno || *end || end == s + 2 || k > 63) return -1;
        *out = UINT64_C(1) << k;
        return 0;
    }
    if (*s == '-') return -1;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end || end == s) return -1;
    *out = v;
    return 0;
}

static uint64_t sieve_lcg32(uint64_t n, affine jump, uint32_t target) {
    const uint32_t a = (uint32_t)jump.a, c = (uint32_t)jump.c;
    uint64_t hits = 0;
#pragma omp parallel for schedule(static) reduction(+ : hits)
    for (uint64_t seed = 0; seed < n; seed++) {
        uint32_t x = a * (uint32_t)seed + c;
        hits += (x % MODULUS) == target;
    }
    return hits;
}

static uint64_t sieve_java(uint64_t n, affine jump, uint32_t target) {
    const uint64_t a = jump.a, c = jump.c;
    uint64_t hits = 0;
#pragma omp parallel for schedule(static) reduction(+ : hits)
    for (uint64_t seed = 0; seed < n; seed++) {
        uint64_t x = (a * ((seed ^ JAVA_A) & JAVA_MASK) + c) & JAVA_MASK;
        uint32_t out = (uint32_t)(x >> 16);
        hits += (out % MODULUS) == target;
    }
    return hits;
}

int main(int argc, char **argv) {
    uint64_t n, p, target;
    if (argc != 5 || parse_u64(argv[2], &n) || parse_u64(argv[3], &p) ||
        parse_u64(argv[4], &target) || target >= MODULUS || p == UINT64_MAX) {
        fprintf(stderr, "usage: %s lcg32|java N P TARGET   (N may be 2^K; 0 <= TARGET < %u)\n",
                argv[0], MODULUS);
        return 2;
    }
    const char *family = argv[1];
    uint64_t hits;
    double t0, t1;
    if (strcmp(family, "lcg32") == 0) {
        if (n > (UINT64_C(1) << 32)) {
            fprintf(stderr, "lcg32 seeds are 32-bit: N must be <= 2^32\n");
            return 2;
        }
        affine jump = affine_pow((affine){LCG32_A, LCG32_C}, p + 1, UINT64_C(0xFFFFFFFF));
        t0 = omp_get_wtime();
        hits = sieve_lcg32(n, jump, (uint32_t)target);
        t1 = omp_get_wtime();
    } else if (strcmp(family, "java") == 0) {
        affine jump = affine_pow((affine){JAVA_A, JAVA_C}, p + 1, JAVA_MASK);
        t0 = omp_get_wtime();
        hits = sieve_java(n, jump, (uint32_t)target);
        t1 = omp_get_wtime();
    } else {
        fprintf(stderr, "unknown family '%s' (lcg32|java)\n", family);
        return 2;
    }
    double secs = t1 - t0;
    printf("{\"family\": \"%s\", \"seeds\": %llu, \"seconds\": %.6f, \"seeds_per_s\": %.6g, "
           "\"hits\": %llu}\n",
           family, (unsigned long long)n, secs, secs > 0 ? (double)n / secs : 0.0,
           (unsigned long long)hits);
    return 0;
}
