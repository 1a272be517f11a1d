"""Compiled sieve kernels: numba here (the fast CPU path; numba is optional at run time), the CUDA/HIP C kernels in
gpu/ (the fast GPU path, through CuPy). Imported lazily."""
