// CPU shim: the GPU kernel source compiled as C++ by the system compiler (tests/pipeline/kernel_shim.py).
// A launch calls the kernel once per (block, thread) after shim_index() set the indices it reads; the kernels'
// grid-stride loops then cover every seed, whatever grid the test picks.
#include <cmath>

#define __global__
#define __device__
#define __forceinline__ inline

struct shim_dim3 {
    unsigned x, y, z;
};

static shim_dim3 threadIdx = {0, 0, 0}, blockIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};

extern "C" void shim_index(unsigned block, unsigned thread, unsigned block_dim, unsigned grid_dim) {
    blockIdx.x = block;
    threadIdx.x = thread;
    blockDim.x = block_dim;
    gridDim.x = grid_dim;
}

static inline unsigned atomicAdd(unsigned* p, unsigned v) {
    unsigned old = *p;
    *p = old + v;
    return old;
}

static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }

static inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
