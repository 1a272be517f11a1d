"""GPU cleanup between batches: which function to call, and running it on several nodes at once.

The cleanup itself (scripts/cleanup_gpus.sh through cluster/gpu/cleanup.py) belongs to the GPU layer;
the scheduler only decides when. A failed cleanup is logged, never fatal: the next chunk's own result
and the health probes decide whether the GPU is still fit.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from loguru import logger

from cluster.config import ClusterConfig
from cluster.gpu.health import GpuHealth, HealthStatus
from cluster.gpu.ledger import HealthLedger
from cluster.scheduler.options import CleanupFn
from cluster.transport.base import Executor


def resolve_cleanup(cleanup: Any, config: ClusterConfig, ledger: HealthLedger | None = None) -> CleanupFn | None:
    """The cleanup to run: None when the policy turns it off; "auto" means the GPU layer's
    (scripts/cleanup_gpus.sh through cluster.gpu.cleanup), bound to the ledger so every result is stored."""
    if not config.scheduler.run_cleanup or cleanup is None:
        return None
    if cleanup != "auto":
        return cleanup  # type: ignore[no-any-return]
    from cluster.gpu.cleanup import batch_cleanup

    return batch_cleanup(ledger, config.scheduler.cleanup_script)


def faulted_in(found: Any) -> list[GpuHealth]:
    """The faulted GPUs in what a cleanup returned (cluster.gpu.cleanup returns a list of GpuHealth)."""
    if not isinstance(found, list | tuple):
        return []
    return [h for h in found if isinstance(h, GpuHealth) and h.status == HealthStatus.FAULTED]


def run_cleanups(cleanup: CleanupFn | None, executors: Mapping[str, Executor]) -> list[GpuHealth]:
    """Run the cleanup on every given node in parallel; log each failure with the node named; return the
    GPUs the cleanup found faulted (the caller quarantines them)."""
    found: list[GpuHealth] = []
    if cleanup is None or not executors:
        return found

    def one(name: str, executor: Executor) -> None:
        try:
            faulted = faulted_in(cleanup(executor))
            found.extend(faulted)
            logger.debug(f"GPU cleanup done on {name}" + (f": {len(faulted)} GPU(s) faulted" if faulted else ""))
        except Exception as err:  # any failure here is reported, not raised: see module docstring
            logger.warning(f"GPU cleanup on {name} failed: {err}")

    threads = [threading.Thread(target=one, args=item, daemon=True) for item in executors.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return found
