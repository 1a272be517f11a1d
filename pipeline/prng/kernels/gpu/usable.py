"""Whether the Triton kernels can run on a device: installed is not enough.

A Triton wheel compiles only for the architectures its backend knows. Triton 3.9 refuses RDNA2 (gfx1030, the rigs'
RX 6600 run as gfx1030 through HSA_OVERRIDE_GFX_VERSION=10.3.0) with "unsupported target" at the first launch, so a
sieve that trusted `import triton` would fail every chunk on such a rig. The answer comes from compiling and
running one tiny kernel on the device (probe.py), once per process and device; a device that cannot run it gets the
portable torch path, with one warning that says why. Kept free of a top-level triton import: hosts without it ask
too.
"""

from __future__ import annotations

import functools
import importlib.util

from loguru import logger


def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


@functools.cache
def triton_usable(device: str) -> bool:
    """Triton is installed and its probe kernel compiled and ran on `device` (a torch device string)."""
    if not triton_installed():
        return False
    from pipeline.prng.kernels.gpu.probe import probe

    problem = probe(device)
    if problem is not None:
        logger.warning(f"Triton cannot run on {device} ({problem}); the sieve takes the portable torch path there")
        return False
    return True
