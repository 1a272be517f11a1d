#!/usr/bin/env bash
# GPU check in one go, for an operator on one rig (or a session with a lent GPU): at most 5 minutes (the time limits
# of its steps add up to 300 s).
# Every preset (fixed skips), every output mapping and the variable-skip presets run through the C kernels (CuPy,
# "fast") and the torch path ("fallback") on the GPU, each row's survivors checked against the plain-Python
# reference; numba on this machine's CPU cores runs the same rows (smaller). Ends with one table: seeds/s per family
# for C kernels, torch and numba side by side (bench/gpu_table.py), and exit status 1 if any row failed its check.
#   bench/gpu_check.sh [extra bench/sieve.py options]
# A GPU the C kernels cannot run on (no CuPy, or its compiler refuses the source: the warning says why) gets the
# torch rows only. On a ROCm rig run it with the rig's env (HSA_OVERRIDE_GFX_VERSION=10.3.0 for an RX 6600).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export HSA_ENABLE_SDMA=${HSA_ENABLE_SDMA:-0}
OUT=$(mktemp -d "${TMPDIR:-/tmp}/watcher-gpu-check.XXXXXX")
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no GPU visible to torch')" || exit 1
# CuPy first (on ROCm importing torch first breaks CuPy's compiler), then the probe: compile + run on this GPU
if "$PY" -c "import importlib.util, sys
importlib.util.find_spec('cupy') and __import__('cupy')
from pipeline.prng.sieve.dispatch import gpu_kernels_available
sys.exit(0 if gpu_kernels_available('cuda') else 1)"; then
  PATHS=fast,fallback
else
  PATHS=fallback
  echo "the C kernels cannot run on this GPU (the warning above says why): torch rows only" >&2
fi
status=0
run() {  # run NAME SECONDS COMMAND...: JSON lines into $OUT/NAME.jsonl; a failed check or a timeout sets status 1
  local name=$1 limit=$2
  shift 2
  echo "== $name" >&2
  timeout "$limit" "$@" --json >"$OUT/$name.jsonl" || { echo "$name: a check failed or it ran out of time" >&2; status=1; }
}
VARIABLE=prng_cluster.java_lcg,prng_cluster.mt19937,prng_cluster.xoshiro256pp,prng_cluster.philox4x32
# fixed skips, every preset: C kernels on 2**30 seeds a row, torch on 2**24 (it is ~100x slower)
run gpu_fixed 120 "$PY" bench/sieve.py --device cuda --variable '' --repeat 2 --size $((1 << 30)) \
  --fallback-size $((1 << 24)) --paths "$PATHS" "$@"
run gpu_variable 30 "$PY" bench/sieve.py --device cuda --generators '' --variable "$VARIABLE" --repeat 1 \
  --variable-size $((1 << 24)) --paths "$PATHS"
run gpu_mapped_fast 20 "$PY" bench/mappings.py --device cuda --repeat 2 --size $((1 << 28)) --paths fast
run gpu_mapped_torch 20 "$PY" bench/mappings.py --device cuda --repeat 1 --size $((1 << 22)) --paths fallback
# numba on this machine's cores: the same rows, smaller
run cpu_fixed 70 "$PY" bench/sieve.py --device cpu --variable '' --repeat 1 --size $((1 << 22)) --paths fast \
  --no-ceiling
run cpu_variable 20 "$PY" bench/sieve.py --device cpu --generators '' --variable "$VARIABLE" --repeat 1 --paths fast
run cpu_mapped 20 "$PY" bench/mappings.py --device cpu --repeat 1 --size $((1 << 22)) --paths fast
"$PY" bench/gpu_table.py "$OUT"/*.jsonl || status=1
echo "JSON lines of every row: $OUT" >&2
exit $status
