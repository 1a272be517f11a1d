#!/usr/bin/env bash
# Clean a rig's GPUs after a job batch; usable by hand:  scripts/cleanup_gpus.sh [--dry-run]
#  1. reset clocks (rocm-smi --resetclocks)
#  2. clear the HIP / comgr kernel caches
#  3. verify every GPU still answers (one rocm-smi --showuse --json call)
#  4. report SMU kernel lines newer than the last cleanup
# Prints "FAULTED gpu=<i> reason=..." lines and exits 3 when a GPU is faulted (1 on other errors).
set -euo pipefail

dry_run=0
[[ "${1:-}" == "--dry-run" ]] && dry_run=1
state_dir="${WATCHER_CLEANUP_STATE:-${XDG_STATE_HOME:-$HOME/.local/state}/watcher}"
stamp="$state_dir/last_cleanup_kernel_lines"

run() {
  if ((dry_run)); then echo "would run: $*"; else "$@"; fi
}

if ! command -v rocm-smi >/dev/null 2>&1; then
  echo "cleanup: rocm-smi not found; nothing to clean on this node"
  exit 0
fi

run rocm-smi --resetclocks || echo "cleanup: rocm-smi --resetclocks failed (continuing)" >&2
for cache in "$HOME/.cache/comgr" "$HOME/.cache/hip" "$HOME/.cache/miopen"; do
  [[ -d "$cache" ]] && run rm -rf -- "$cache"
done

faulted=0
if ((dry_run)); then
  echo "would run: rocm-smi --showuse --json (verify every GPU answers)"
else
  # rocm-smi's exit code is not a health signal (a healthy --showuse exits 2): read the content.
  use_json=$(rocm-smi --showuse --json 2>/dev/null || true)
  expected=$(rocm-smi --showuse 2>/dev/null | grep -c "GFX Activity" || true)
  for ((i = 0; i < expected; i++)); do
    card=$(printf '%s' "$use_json" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("ok" if "GPU use (%)" in d.get("card'"$i"'", {}) else "bad")' 2>/dev/null || echo bad)
    if [[ "$card" != ok ]]; then
      echo "FAULTED gpu=$i reason=no GPU use reading after cleanup (SMU not answering)"
      faulted=1
    fi
  done
fi

mkdir -p "$state_dir"
current=$(dmesg 2>/dev/null | grep -E "SMU: response:0xFFFFFFFF|I'm not done with your previous command|No response msg_reg|SMC is not ready|GPU reset begin" || true)
previous=""
[[ -f "$stamp" ]] && previous=$(cat "$stamp")
new_lines=$(comm -13 <(printf '%s\n' "$previous" | sort) <(printf '%s\n' "$current" | sort) | sed '/^$/d' || true)
if [[ -n "$new_lines" ]]; then
  echo "SMU kernel lines since the last cleanup:"
  printf '%s\n' "$new_lines" | sed 's/^/KERNEL /'
fi
((dry_run)) || printf '%s\n' "$current" >"$stamp"

if ((faulted)); then
  exit 3
fi
echo "cleanup: ok"
