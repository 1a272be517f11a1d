#!/usr/bin/env bash
# GPU check in one go (target: under 5 minutes): the seven first families on the fused Triton path ("fast") and the
# portable torch path ("fallback"), each row's survivors checked against the reference, seeds/s per family and path;
# then every output mapping (bench/mappings.py: the Triton java.util.Random walk as "fast", torch otherwise),
# every survivor re-scored by the plain-Python oracle.
#   bench/gpu_check.sh [extra bench/sieve.py options]      exit status 1 if any row failed its check
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no GPU visible to torch')"
"$PY" -c "import triton" 2>/dev/null || echo "triton not installed: 'fast' rows fall back to torch" >&2
timeout 200 "$PY" bench/sieve.py --device cuda --variable '' --repeat 3 --size $((1 << 30)) \
  --generators java_lcg,lcg32,minstd,xorshift32,pcg32,mt19937,php_mt_rand --paths fast,fallback "$@"
exec timeout 90 "$PY" bench/mappings.py --device cuda --repeat 2 --size $((1 << 26))
