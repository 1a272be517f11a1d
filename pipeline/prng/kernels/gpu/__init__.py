"""The GPU kernels: one CUDA/HIP C source (the .cu files here, read as one by source.py) for every preset's filter,
the walks of library calls and variable skip; backend-neutral plans of each launch (filters, walks, variable_plan,
plan); launch.py runs them through CuPy (NVRTC on CUDA, hipRTC on ROCm) and answers whether a device can. Only
launch.py imports cupy, and only when asked."""

from pipeline.prng.kernels.gpu.source import source, source_hash

__all__ = ["source", "source_hash"]
