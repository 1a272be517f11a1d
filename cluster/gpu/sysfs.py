"""The amdgpu sysfs of a node, read per GPU under a deadline that a hung GPU cannot stretch.

A GPU whose SMU stopped answering can block any read of its sysfs files, in uninterruptible sleep where
not even SIGKILL ends the reader. So the node-side script (SYSFS_SCRIPT, run with the node's Python)
starts one reader process per card, in its own session, with only a pipe to the script; it waits for
all of them until the deadline, sends SIGTERM to the ones still reading, does not wait for them, and
prints one JSON line per card: the readings, or `"hung": true`. The coordinator's own command timeout
sits just past that deadline, so a script that itself cannot finish costs the deadline and no more.

`parse_sysfs` turns that output into GpuHealth: hung or unreadable reads, all-ones and physically
impossible values are fault evidence ("SMU hang suspected" for a hung read). The script also lists the
KFD topology's GPU nodes with their PCI addresses (`parse_kfd_nodes`), which maps kernel lines naming
"GPU node-N" to a GPU.
"""

from __future__ import annotations

import json
import math

from cluster.gpu.health import GpuHealth, HealthStatus, impossible_readings
from cluster.gpu.kernel_log import normalise_bus

ALL_ONES = {"4294967295", "0xffffffff", "18446744073709551615"}
HANG_REASON = "SMU hang suspected"

# argv: sysfs root, deadline in seconds, cards to leave alone (comma-separated card orders or PCI addresses:
# excluded GPUs get no reads of their own). WATCHER_SYSFS_READER_PREFIX (node env): a command the reader runs
# under (tests use one that ignores SIGTERM, like a reader stuck in the kernel).
SYSFS_SCRIPT = r"""
import glob, json, os, re, shlex, signal, subprocess, sys, time
root, deadline = sys.argv[1], float(sys.argv[2])
skip = set(sys.argv[3].split(",")) if len(sys.argv) > 3 and sys.argv[3] else set()
READER = r'''
import glob, json, os, sys
card = sys.argv[1]
dev = os.path.join(card, "device")
out = {"bus": os.path.basename(os.path.realpath(dev))}
def rd(name, path):
    try:
        with open(path) as fh:
            out[name] = fh.read().strip()
    except OSError as e:
        out[name] = "ERR " + (e.strerror or type(e).__name__)
rd("vendor", os.path.join(dev, "vendor"))
if out["vendor"] == "0x1002":
    rd("busy", os.path.join(dev, "gpu_busy_percent"))
    rd("vram_used", os.path.join(dev, "mem_info_vram_used"))
    rd("vram_total", os.path.join(dev, "mem_info_vram_total"))
    hw = sorted(glob.glob(os.path.join(dev, "hwmon", "hwmon*")))
    if hw:
        rd("temp_mc", os.path.join(hw[0], "temp1_input"))
        rd("power_uw", os.path.join(hw[0], "power1_average"))
print(json.dumps(out))
'''
prefix = shlex.split(os.environ.get("WATCHER_SYSFS_READER_PREFIX", ""))
cards = glob.glob(os.path.join(root, "class", "drm", "card*"))
cards = [c for c in cards if re.fullmatch(r"card\d+", os.path.basename(c))]
cards.sort(key=lambda c: int(os.path.basename(c)[4:]))
procs = []
for order, card in enumerate(cards):
    bus = os.path.basename(os.path.realpath(os.path.join(card, "device")))
    if str(order) in skip or bus in skip:
        print(json.dumps({"card": os.path.basename(card), "bus": bus, "skipped": True}), flush=True)
        continue
    p = subprocess.Popen([*prefix, sys.executable, "-c", READER, card], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    procs.append((card, p, time.monotonic()))
end = time.monotonic() + deadline
while time.monotonic() < end and any(p.poll() is None for _, p, _ in procs):
    time.sleep(0.02)
for card, p, began in procs:
    name = os.path.basename(card)
    if p.poll() is None:
        try:
            os.kill(p.pid, signal.SIGTERM)
        except OSError:
            pass
        bus = os.path.basename(os.path.realpath(os.path.join(card, "device")))
        print(json.dumps({"card": name, "bus": bus, "hung": True, "seconds": deadline}), flush=True)
        continue
    try:
        data = json.loads(p.stdout.read().decode() or "{}")
    except ValueError:
        data = {"error": "reader printed no JSON"}
    data["card"] = name
    print(json.dumps(data), flush=True)
# the KFD topology (static, kept by the driver: no read reaches a GPU): which PCI address each KFD node is,
# so a kernel line naming "GPU node-N" is mapped to its GPU
for node in glob.glob(os.path.join(root, "class", "kfd", "kfd", "topology", "nodes", "*")):
    try:
        with open(os.path.join(node, "properties")) as fh:
            props = dict(line.split(None, 1) for line in fh if len(line.split(None, 1)) == 2)
        loc, simd, domain = (int(props.get(k, "0")) for k in ("location_id", "simd_count", "domain"))
    except (OSError, ValueError):
        continue
    if simd > 0 and os.path.basename(node).isdigit():
        bus = "%04x:%02x:%02x.%x" % (domain, loc >> 8 & 0xFF, loc >> 3 & 0x1F, loc & 0x7)
        print(json.dumps({"kfd_node": int(os.path.basename(node)), "bus": bus}), flush=True)
print(json.dumps({"done": True, "cards": len(cards)}), flush=True)
sys.stdout.flush()
os._exit(0)
"""


def _number(value: object) -> float | None:
    try:
        return float(str(value))
    except ValueError:
        return None


def parse_sysfs(node: str, stdout: str) -> tuple[list[dict], bool]:
    """(the card records with a vendor of AMD or a hung read, in card order; whether the script finished)."""
    records, done = [], False
    for line in stdout.splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        if data.get("done"):
            done = True
        elif data.get("hung") or data.get("skipped") or data.get("vendor") == "0x1002":
            records.append(data)
    return records, done


def parse_kfd_nodes(stdout: str) -> dict[int, str]:
    """KFD topology node -> the PCI address of its GPU, from the sysfs script's output."""
    out: dict[int, str] = {}
    for line in stdout.splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("kfd_node"), int) and isinstance(data.get("bus"), str):
            bus = normalise_bus(data["bus"])
            if bus:
                out[data["kfd_node"]] = bus
    return out


def sysfs_health(node: str, index: int, record: dict) -> GpuHealth:
    """One card's sysfs record -> GpuHealth with evidence."""
    bus = normalise_bus(str(record.get("bus") or "")) or None
    where = f"GPU {index}" + (f" ({bus})" if bus else "")
    if record.get("hung"):
        seconds = record.get("seconds")
        return GpuHealth(
            node, index, HealthStatus.FAULTED,
            (f"{HANG_REASON}: sysfs reads of {where} did not finish within {seconds:g} s",), bus,
        )  # fmt: skip
    evidence: list[str] = []
    readings: dict[str, float | str | None] = {}
    for key, label in (("busy", "gpu_busy_percent"), ("temp_mc", "temp1_input"), ("power_uw", "power1_average"),
                       ("vram_used", "mem_info_vram_used"), ("vram_total", "mem_info_vram_total")):  # fmt: skip
        raw = record.get(key)
        if raw is None:
            continue
        text = str(raw)
        if text.startswith("ERR "):
            evidence.append(f"sysfs {label} unreadable: {text[4:]}")
            continue
        if text.lower() in ALL_ONES:
            evidence.append(f"all-ones sysfs {label} = {text}")
            continue
        value = _number(text)
        if value is None:
            evidence.append(f"sysfs {label} is not a number: {text[:40]!r}")
            continue
        if key == "busy":
            readings["use_pct"] = value
        elif key == "temp_mc":
            readings["temp_edge"] = value / 1000.0 if math.isfinite(value) else value
        elif key == "power_uw":
            readings["power_w"] = value / 1e6 if math.isfinite(value) else value
        else:
            readings[key] = value
    evidence.extend(impossible_readings(readings))
    if evidence:
        evidence.insert(0, f"{HANG_REASON}: {where} sysfs reads fail" if any("unreadable" in e for e in evidence)
                        else f"{where} sysfs readings are not physical")  # fmt: skip
    status = HealthStatus.FAULTED if evidence else HealthStatus.OK
    return GpuHealth(node, index, status, tuple(evidence), bus, readings)
