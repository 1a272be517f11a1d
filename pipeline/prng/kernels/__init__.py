"""Compiled sieve kernels: numba here (the fast CPU path; numba is optional at run time), Triton in gpu/. Imported
lazily."""
