// HIP shim for clang's HIP front end without the ROCm headers (-nogpuinc): what hipRTC has built in, from clang's
// AMDGPU builtins, so `clang -x hip --offload-arch=gfx1030 -nogpulib -nogpuinc --cuda-device-only` compiles the
// kernel source as a rig's hipRTC would (tests/pipeline/test_gpu_compile.py).
#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __forceinline__ __attribute__((always_inline)) inline

struct shim_dim3 {
    unsigned x, y, z;
};

#define threadIdx (shim_dim3{__builtin_amdgcn_workitem_id_x(), 0u, 0u})
#define blockIdx (shim_dim3{__builtin_amdgcn_workgroup_id_x(), 0u, 0u})
#define blockDim (shim_dim3{(unsigned)__builtin_amdgcn_workgroup_size_x(), 1u, 1u})
#define gridDim (shim_dim3{__builtin_amdgcn_grid_size_x() / (unsigned)__builtin_amdgcn_workgroup_size_x(), 1u, 1u})

__device__ static inline unsigned atomicAdd(unsigned* p, unsigned v) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

__device__ static inline unsigned __umulhi(unsigned a, unsigned b) {
    return (unsigned)(((unsigned long long)a * b) >> 32);
}

__device__ static inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
