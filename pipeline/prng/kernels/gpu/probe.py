"""One tiny Triton kernel, compiled and run to learn whether a device can run Triton at all
(pipeline.prng.kernels.gpu.usable says why this is asked). Import only where triton is installed."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

PROBE_VALUE = 0x5EED


@triton.jit
def _probe_kernel(out_ptr, value, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, (offs + value).to(tl.uint32) * 3, mask=offs < BLOCK)


def probe(device: str) -> str | None:
    """None when the probe kernel ran on `device` and wrote what it should; otherwise a one-line reason."""
    try:
        out = torch.zeros(64, dtype=torch.int64, device=device)
        _probe_kernel[(1,)](out, PROBE_VALUE, BLOCK=64)
        got = out.cpu().tolist()
    except Exception as exc:  # any compile, driver or launch failure: the device cannot run Triton
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return f"{type(exc).__name__}: {first}"
    want = [((i + PROBE_VALUE) * 3) & 0xFFFFFFFF for i in range(64)]
    return None if got == want else "the probe kernel wrote wrong values"
