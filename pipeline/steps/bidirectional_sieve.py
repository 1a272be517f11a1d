"""Step 2: the best window of step 1 over the whole configured seed range, every offset and skip of the
envelope, forward then reverse, chunked across the cluster -> bidirectional_survivors.json."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from pipeline.context import StepContext
from pipeline.outputs import read_output, write_output
from pipeline.step import Step, StepParams, StepResult
from pipeline.steps.common import (
    BIDIRECTIONAL,
    TRAIN_FILE,
    WINDOW_CONFIG,
    expected_bidirectional,
    offsets,
    window_specs,
)


class SieveParams(StepParams):
    chunk_seeds: Annotated[int, Field(ge=1 << 10, le=1 << 32)] = 1 << 22


class BidirectionalSieve(Step):
    number = 2.0
    name = "bidirectional_sieve"
    Params = SieveParams
    inputs = (WINDOW_CONFIG,)
    outputs = (BIDIRECTIONAL,)
    ramdisk_files = (TRAIN_FILE,)

    def run(self, ctx: StepContext) -> StepResult:
        p: SieveParams = ctx.params  # type: ignore[assignment]
        data = ctx.spec.data
        hashes = ctx.input_hashes()
        config = read_output(ctx.output_dir / WINDOW_CONFIG, "window_config", hashes)
        window, threshold = int(config["window_size"]), float(config["threshold"])
        lo, hi = data.seed_range
        payloads = []
        for start in range(lo, hi, p.chunk_seeds):
            end = min(start + p.chunk_seeds, hi)
            tasks = []
            for offset in offsets(data):
                fwd, rev = window_specs(data, ctx.train, window, threshold, offset)
                tasks.append({"forward": fwd, "reverse": rev, "start": start, "end": end, "tag": offset})
            payloads.append({"kind": "window_batch", "tasks": tasks})
        results = ctx.run_jobs(payloads, label="sieve")
        survivors: dict[int, dict[str, Any]] = {}
        forward = 0
        for result in results:
            for task in result["tasks"]:
                forward += task["forward_count"]
                for seed, skip, fm, rm in task["survivors"]:
                    survivors.setdefault(
                        seed,
                        {
                            "seed": seed,
                            "skip": skip,
                            "offset": task["tag"],
                            "forward_matches": fm,
                            "reverse_matches": rm,
                        },
                    )
        expected = expected_bidirectional(data, hi - lo, window, threshold)
        rows = sorted(survivors.values(), key=lambda r: r["seed"])
        data_out = {
            "window_size": window,
            "threshold": threshold,
            "seed_range": [lo, hi],
            "forward_survivors": forward,
            "expected_chance": expected,
            "survivors": rows,
        }
        path = write_output(ctx.output_dir / BIDIRECTIONAL, "bidirectional_survivors", data_out, hashes)
        metrics = {
            "survivors": len(rows),
            "forward_survivors": forward,
            "expected_chance_survivors": expected,
            "seeds_tested": (hi - lo) * len(offsets(data)),
            "chunks": len(payloads),
        }
        return StepResult(metrics, {BIDIRECTIONAL: path})
