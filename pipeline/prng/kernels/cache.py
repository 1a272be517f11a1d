"""Where compiled CPU kernels are kept: one folder of the installation, shared by the CLI and every worker it
starts on this machine, so numba compiles each kernel once per installation instead of once per process.

Every kernel is decorated `cache=True`; numba would otherwise put its cache next to each source file (or in
the user's home when that is read-only), per process the same, but a worker started with another HOME, a
read-only checkout or a fresh clone each compile again (seconds of two busy cores before the first chunk).
`use_project_cache` must run before the decorators do: kernels/common.py calls it first thing, and every
kernel module imports common. An operator's NUMBA_CACHE_DIR (the test rigs set one each) is kept.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "NUMBA_CACHE_DIR"


def project_cache_dir() -> Path:
    """<install>/.cache/numba (ignored by git), or NUMBA_CACHE_DIR when the environment names one."""
    named = os.environ.get(CACHE_ENV)
    return Path(named) if named else Path(__file__).resolve().parents[3] / ".cache" / "numba"


def use_project_cache() -> Path:
    """Point numba's cache at the project's folder, for this process and the workers it starts."""
    path = project_cache_dir()
    os.environ.setdefault(CACHE_ENV, str(path))
    try:
        from numba.core import config
    except ImportError:  # no numba here: nothing is compiled
        return path
    config.CACHE_DIR = str(path)
    return path
