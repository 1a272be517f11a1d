"""The Triton kernels (GPUs through torch's `cuda` device, ROCm included): fused filters per family (sieve.py,
stream.py), the MT init chain (mt_words.py), the walks of library calls (mapped.py); usable.py says whether they
can run on a device. Only the kernel modules import triton."""

from pipeline.prng.kernels.gpu.usable import triton_installed, triton_usable

__all__ = ["triton_installed", "triton_usable"]
