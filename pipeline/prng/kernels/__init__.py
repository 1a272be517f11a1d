"""Compiled (numba) sieve kernels: the fast CPU path. Imported lazily; numba is optional at run time."""
