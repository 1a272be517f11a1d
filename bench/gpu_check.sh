#!/usr/bin/env bash
# GPU check in one go (target: under 5 minutes): the seven first families on the fused Triton path ("fast") and the
# portable torch path ("fallback"), each row's survivors checked against the reference, seeds/s per family and path;
# the other presets on the fused path;
# then every output mapping (bench/mappings.py: the fused Triton walks of java.util.Random's and MT19937's calls as
# "fast", torch as "fallback"), every survivor re-scored by the plain-Python oracle.
#   bench/gpu_check.sh [extra bench/sieve.py options]      exit status 1 if any row failed its check
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no GPU visible to torch')"
# Triton installed AND able to run here (its probe kernel; Triton 3.9 refuses RDNA2 gfx1030): else torch rows only
if "$PY" -c "import sys; from pipeline.prng.kernels.gpu import triton_usable; sys.exit(0 if triton_usable('cuda') else 1)"
then PATHS=fast,fallback
else PATHS=fallback; echo "Triton cannot run on this GPU (the warning above says why): torch rows only" >&2
fi
timeout 200 "$PY" bench/sieve.py --device cuda --variable '' --repeat 3 --size $((1 << 30)) \
  --generators java_lcg,lcg32,minstd,xorshift32,pcg32,mt19937,php_mt_rand --paths "$PATHS" "$@"
[ "$PATHS" = fallback ] && exec timeout 90 "$PY" bench/mappings.py --device cuda --repeat 2 --size $((1 << 24)) \
  --paths fallback
# every other preset (prng_cluster.*, minstd_rand0: the generic LCG kinds and the walked 64-bit / Philox kernels),
# fused path only, smaller blocks: each row verified the same way
OTHERS=$("$PY" -c "from pipeline.prng.generators.reference import GENERATORS as G
first = {'java_lcg', 'lcg32', 'minstd', 'xorshift32', 'pcg32', 'mt19937', 'php_mt_rand'}
print(','.join(g for g in G if g not in first))")
timeout 120 "$PY" bench/sieve.py --device cuda --variable '' --repeat 1 --size $((1 << 28)) --generators "$OTHERS" \
  --paths fast "$@"
exec timeout 90 "$PY" bench/mappings.py --device cuda --repeat 2 --size $((1 << 26))
