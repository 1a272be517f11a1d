"""A fake amdgpu sysfs tree for a fake rig (modelled on the operators' fake_amdgpu_sysfs.sh, copied to
tests/fixtures/fake_amdgpu_sysfs.sh): class/drm/card<i>/device -> devices/.../<pci bus>/ with
gpu_busy_percent, mem_info_vram_*, hwmon/hwmon<i>/{temp1_input,power1_average}, and the KFD topology
(class/kfd/kfd/topology/nodes/<n>/properties: node 0 the CPU, node i+1 card i, with its PCI location_id and
domain, as the amdgpu driver lists them). Per-GPU states:
healthy, ffff (all-ones values), eio / na (reads fail: directories in place of files), hang (a FIFO with
no writer: a read blocks, like a wedged SMU), missing (no card)."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from pathlib import Path

HEALTHY = {"busy": "97", "temp": "61000", "power": "98000000"}
ALL_ONES = {"busy": "4294967295", "temp": "4294967295", "power": "4294967295"}


def release(path: Path) -> None:
    """Let a reader blocked on a hang FIFO go (write to it), so no reader outlives its rig."""
    for fifo in path.rglob("*") if path.exists() else []:
        with contextlib.suppress(OSError):
            if stat.S_ISFIFO(fifo.lstat().st_mode):
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                os.write(fd, b"0\n")
                os.close(fd)


def _kfd_node(root: Path, number: int, bus: str | None) -> Path:
    """A KFD topology node: the CPU (bus None, no SIMDs) or the GPU at `bus`."""
    nodes = root / "class" / "kfd" / "kfd" / "topology" / "nodes"
    node = nodes / str(number)
    node.mkdir(parents=True, exist_ok=True)
    if bus is None:
        props = {"cpu_cores_count": 16, "simd_count": 0, "location_id": 0, "domain": 0}
    else:
        domain, bus_no, devfn = bus.split(":")
        dev_no, fn = devfn.split(".")
        location = int(bus_no, 16) << 8 | int(dev_no, 16) << 3 | int(fn, 16)
        props = {"cpu_cores_count": 0, "simd_count": 104, "location_id": location, "domain": int(domain, 16)}
    (node / "properties").write_text("".join(f"{k} {v}\n" for k, v in props.items()))
    for path in [node, *node.parents][: len(node.relative_to(root).parts)]:
        path.chmod(0o755)
    return node


def build_card(root: Path, index: int, bus: str, state: str) -> None:
    card = root / "class" / "drm" / f"card{index}"
    dev = root / "devices" / f"pci0000:00/0000:00:01.{index}" / bus
    _kfd_node(root, 0, None)
    kfd = _kfd_node(root, index + 1, bus)
    if state == "missing":
        shutil.rmtree(kfd)
    for old in (card, dev):
        release(old)
        if old.is_symlink() or old.is_file():
            old.unlink()
        elif old.exists():
            shutil.rmtree(old)
    if state == "missing":
        return
    hw = dev / "hwmon" / f"hwmon{index}"
    hw.mkdir(parents=True)
    card.mkdir(parents=True)
    (card / "device").symlink_to(dev)
    files = {
        dev / "vendor": "0x1002",
        dev / "mem_info_vram_total": "8573157376",
        dev / "mem_info_vram_used": "26214400",
        hw / "name": "amdgpu",
    }
    values = ALL_ONES if state == "ffff" else HEALTHY
    reads = {dev / "gpu_busy_percent": values["busy"], hw / "temp1_input": values["temp"],
             hw / "power1_average": values["power"]}  # fmt: skip
    for path, text in files.items():
        path.write_text(text + "\n")
    for path, text in reads.items():
        if state in {"eio", "na"}:
            path.mkdir()  # read() -> EISDIR, like a failing register read
        elif state == "hang" and path.name == "gpu_busy_percent":
            os.mkfifo(path, 0o644)
        else:
            path.write_text(text + "\n")
    for path in [card, dev, *dev.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)


def clear_cards(root: Path) -> None:
    release(root)
    shutil.rmtree(root, ignore_errors=True)
