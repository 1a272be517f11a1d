"""GPU cleanup between batches: which function to call, when a node's cleanup is due (`CleanupPacer`), and
running it on several nodes at once.

The cleanup itself (scripts/cleanup_gpus.sh through cluster/gpu/cleanup.py) belongs to the GPU layer;
the scheduler only decides when: a node that ran chunks is due after every `cleanup_batch_size` completed
chunks (counted across the calls of a worker pool), once rocm-smi may run there again, and owes one at the
end of the call. The pacer holds all of that; `SlotScheduler.clean` is the one place a call runs cleanups
(and a pool's close the one place an owed one runs). A failed cleanup is logged, never fatal: the next
chunk's own result and the health probes decide whether the GPU is still fit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
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


class CleanupPacer:
    """Which nodes owe a GPU cleanup in one call (under the scheduler's lock). took_part: nodes that ran chunks
    since their last cleanup (from the pool across calls); completed_before: chunks completed through the
    pool before this call, so batches count across calls."""

    def __init__(
        self, cleanup: CleanupFn | None, batch: int, completed_before: int = 0, took_part: Iterable[str] = ()
    ) -> None:
        self.cleanup = cleanup
        self.batch = batch
        self.completed_before = completed_before
        self.took_part: set[str] = set(took_part)
        self.due: set[str] = set()
        self.cleaning: set[str] = set()

    def ran_chunk(self, node: str) -> None:
        self.took_part.add(node)

    def completed(self, completed: int, tripped: Iterable[str], smi_free: Callable[[str], bool]) -> None:
        """A chunk completed (`completed` in this call): at a batch boundary, every node that took part and may
        run rocm-smi now comes due."""
        if self.cleanup is None or (self.completed_before + completed) % self.batch:
            return
        due = {node for node in self.took_part - set(tripped) if smi_free(node)}
        self.due |= due
        self.took_part -= due

    def claim(self, node: str, inflight: int) -> bool:
        """True: the asking slot runs `node`'s cleanup now (it is due, nothing runs there, nobody cleans it)."""
        if node in self.due and inflight == 0 and node not in self.cleaning:
            self.cleaning.add(node)
            return True
        return False

    def finished(self, node: str) -> None:
        self.cleaning.discard(node)
        self.due.discard(node)

    def owed(self, tripped: Iterable[str]) -> set[str]:
        """Nodes that ran chunks since their last cleanup, or came due, and are still in the call."""
        return (self.took_part | self.due) - set(tripped)
