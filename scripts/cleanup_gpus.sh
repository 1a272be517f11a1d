#!/usr/bin/env bash
# Clean a rig's GPUs after a job batch; usable by hand:
#   scripts/cleanup_gpus.sh [--dry-run] [--expect-count N] [--expect-pci IDX=PCI,...]
#  1. reset clocks (rocm-smi --resetclocks); a failed reset is reported
#  2. clear the HIP / comgr kernel caches
#  3. verify every expected GPU is there and answers (one rocm-smi --showuse --showmeminfo vram --showbus
#     --json call); the expected GPUs come from the coordinator's config (--expect-count, --expect-pci),
#     never from rocm-smi's own output, so a GPU that vanished is caught
#  4. VRAM in use on a GPU no compute process holds (rocm-smi --showpidgpus) is reported as orphaned
#  5. report SMU kernel lines newer than the last cleanup
# Report lines: "FAULTED gpu=<i> reason=...", "MISSING gpu=<i> reason=...", "ORPHANED_VRAM gpu=<i> used=<MiB>
# MiB ...", "CLOCKS reason=...", "KERNEL <line>". Exit 3 when a GPU is faulted or missing, 4 for orphaned
# VRAM or a failed clock reset only, 1 on other errors, 0 with "cleanup: ok".
set -euo pipefail

dry_run=0
expect_count=""
expect_pci=""
while (($#)); do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --expect-count) expect_count="$2"; shift ;;
    --expect-pci) expect_pci="$2"; shift ;;
    *) echo "cleanup: unknown argument $1" >&2; exit 1 ;;
  esac
  shift
done
state_dir="${WATCHER_CLEANUP_STATE:-${XDG_STATE_HOME:-$HOME/.local/state}/watcher}"
stamp="$state_dir/last_cleanup_kernel_lines"
orphan_mib="${WATCHER_ORPHAN_VRAM_MIB:-256}"

run() {
  if ((dry_run)); then echo "would run: $*"; else "$@"; fi
}

if ! command -v rocm-smi >/dev/null 2>&1; then
  echo "cleanup: rocm-smi not found on this node" >&2
  exit 1
fi

findings=0
warnings=0
if ((dry_run)); then
  run rocm-smi --resetclocks
elif ! rocm-smi --resetclocks >/dev/null 2>&1; then
  echo "CLOCKS reason=rocm-smi --resetclocks failed"
  warnings=1
fi
for cache in "$HOME/.cache/comgr" "$HOME/.cache/hip" "$HOME/.cache/miopen"; do
  if [[ -d "$cache" ]]; then run rm -rf -- "$cache"; fi
done

if ((dry_run)); then
  echo "would run: rocm-smi --showuse --showmeminfo vram --showbus --json (verify every expected GPU answers)"
else
  # rocm-smi's exit code is not a health signal (a healthy --showuse exits 2): read the content.
  use_json=$(rocm-smi --showuse --showmeminfo vram --showbus --json 2>/dev/null || true)
  pids=$(rocm-smi --showpidgpus 2>/dev/null || true)
  report=$(USE_JSON="$use_json" PIDS="$pids" EXPECT_COUNT="$expect_count" EXPECT_PCI="$expect_pci" \
    ORPHAN_MIB="$orphan_mib" python3 - <<'PY'
import json, os, re
raw = os.environ["USE_JSON"]
try:
    data = json.loads(raw[raw.find("{"):]) if "{" in raw else {}
except ValueError:
    data = {}
cards = {int(k[4:]): v for k, v in data.items() if k.startswith("card") and k[4:].isdigit() and isinstance(v, dict)}
count = int(os.environ["EXPECT_COUNT"]) if os.environ["EXPECT_COUNT"] else len(cards)
pci_of = {}
for item in filter(None, os.environ["EXPECT_PCI"].split(",")):
    idx, _, pci = item.partition("=")
    pci_of[int(idx)] = pci.lower()
busy = set()
for line in os.environ["PIDS"].splitlines():
    m = re.search(r"PID\s+\d+\s+is using\s+\d+\s+DRM device\(s\):?\s*([\d\s]*)", line)
    if m:
        busy.update(int(t) for t in m.group(1).split())
buses = {str(c.get("PCI Bus", "")).lower(): i for i, c in cards.items()}
for i in range(count):
    card = cards.get(i)
    if card is None:
        print(f"MISSING gpu={i} reason=GPU {i} not reported by rocm-smi (expected {count} from the config)")
        continue
    want = pci_of.get(i)
    if want and str(card.get("PCI Bus", "")).lower() != want:
        other = buses.get(want)
        now = f"GPU {other}" if other is not None else "no GPU"
        print(f"MISSING gpu={i} reason=GPU {i} is at {card.get('PCI Bus')}, config says {want} ({now} is there now)")
    if "GPU use (%)" not in card or str(card.get("GPU use (%)")) in {"N/A", "4294967295"}:
        print(f"FAULTED gpu={i} reason=no GPU use reading after cleanup (SMU not answering)")
        continue
    try:
        used = int(card.get("VRAM Total Used Memory (B)", 0)) >> 20
    except ValueError:
        used = 0
    if used > int(os.environ["ORPHAN_MIB"]) and i not in busy:
        print(f"ORPHANED_VRAM gpu={i} used={used} MiB with no compute process on it")
PY
  ) || { echo "cleanup: cannot read rocm-smi's answer" >&2; exit 1; }
  if [[ -n "$report" ]]; then
    printf '%s\n' "$report"
    if grep -qE '^(FAULTED|MISSING) ' <<<"$report"; then findings=1; else warnings=1; fi
  fi
fi

mkdir -p "$state_dir"
current=$(dmesg 2>/dev/null | grep -E "SMU: response:0xFFFFFFFF|I'm not done with your previous command|No response msg_reg|SMC is not ready|GPU reset begin|GPU Hang|ring .* test failed" || true)
previous=""
[[ -f "$stamp" ]] && previous=$(cat "$stamp")
new_lines=$(comm -13 <(printf '%s\n' "$previous" | sort) <(printf '%s\n' "$current" | sort) | sed '/^$/d' || true)
if [[ -n "$new_lines" ]]; then
  echo "SMU kernel lines since the last cleanup:"
  printf '%s\n' "$new_lines" | sed 's/^/KERNEL /'
fi
((dry_run)) || printf '%s\n' "$current" >"$stamp"

if ((findings)); then
  exit 3
fi
if ((warnings)); then
  exit 4
fi
echo "cleanup: ok"
