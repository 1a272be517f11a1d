"""Every GPU reader under one contract: rocm-smi (5.x JSON and 6.x concise captures), nvidia-smi and amd-smi turn
their recorded output of the same three states of a node (healthy; one GPU whose SMU stopped answering; one
GPU the driver lost) into the same verdicts, with readings under the same names and the same kind of
evidence. A new reader is proved by adding it to `READERS` with its recordings (tests/fixtures).

Also here: a node without rocm-smi is read with amd-smi by the real probe (a local node whose PATH has only a
recorded amd-smi)."""

from __future__ import annotations

import json
import re
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cluster.config import HealthPolicy, NodeConfig
from cluster.gpu.amd_smi import parse_amd_smi, reading
from cluster.gpu.health import READING_NAMES, GpuHealth, HealthStatus
from cluster.gpu.nvidia_smi import parse_nvidia_csv
from cluster.gpu.probe import probe_node_full
from cluster.gpu.rocm_smi import parse_concise, parse_rocm_json
from cluster.transport.local import LocalExecutor

FIX = Path(__file__).resolve().parents[1] / "fixtures"
STATES = ("healthy", "unanswering", "missing")


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^--- (.+?) ---$", text, flags=re.MULTILINE)
    return {name.split()[0]: body for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def rocm_smi_5(state: str) -> tuple[list[GpuHealth], int]:
    """rocm-smi 5.2.3 `--showtemp --showpower --showuse --json`, captured (missing: card1 dropped from it)."""
    mode = {"healthy": "healthy", "unanswering": "ffff", "missing": "healthy"}[state]
    base = FIX / "rocm-smi-5.2.3" / mode / "showtemp_showpower_showuse_json"
    out, err = base.with_suffix(".out").read_text(), base.with_suffix(".err").read_text()
    if state == "missing":
        cards = json.loads(out)
        del cards["card1"]
        out = json.dumps(cards)
    return parse_rocm_json("rig", out, err, 2), 1


def rocm_smi_6(state: str) -> tuple[list[GpuHealth], int]:
    """rocm-smi 6.x concise table of three real 8-GPU rigs (missing: GPU 7's row dropped)."""
    capture = _sections((FIX / "rocm-smi-6-concise-3-rigs-one-faulted.txt").read_text())
    text = capture["rig-6600b" if state == "unanswering" else "rig-6600c"]
    if state == "missing":
        text = "\n".join(line for line in text.splitlines() if not line.startswith("7 "))
    return parse_concise("rig", text, text, 8), 7


def nvidia_smi(state: str) -> tuple[list[GpuHealth], int]:
    name = {"healthy": "healthy", "unanswering": "faulted", "missing": "missing"}[state]
    return parse_nvidia_csv("rig", (FIX / "nvidia-smi" / f"{name}.csv").read_text(), 2), 1


def amd_smi(state: str) -> tuple[list[GpuHealth], int]:
    folder = FIX / "amd-smi-6" / {"healthy": "healthy", "unanswering": "na", "missing": "missing"}[state]
    return parse_amd_smi("rig", (folder / "list.json").read_text(), (folder / "metric.json").read_text(), 2), 1


# Every reader: a state of the node -> (its GPUs' health, the index of the GPU that state is about).
READERS: dict[str, Callable[[str], tuple[list[GpuHealth], int]]] = {
    "rocm-smi 5.x": rocm_smi_5, "rocm-smi 6.x": rocm_smi_6, "nvidia-smi": nvidia_smi, "amd-smi": amd_smi,
}  # fmt: skip
SHARED = {"temp_edge", "power_w", "use_pct"}  # what every reader reads of a healthy GPU


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_healthy_node_reads_ok_with_the_shared_readings(reader: str) -> None:
    gpus, _ = READERS[reader]("healthy")
    assert [g.status for g in gpus] == [HealthStatus.OK] * len(gpus) and all(not g.evidence for g in gpus)
    for gpu in gpus:
        numbers = {k: v for k, v in gpu.readings.items() if isinstance(v, float)}
        assert set(numbers) >= SHARED, f"{reader} GPU {gpu.index} lacks {SHARED - set(numbers)}"
        assert set(numbers) <= set(READING_NAMES), f"{reader} names a reading its own way: {set(numbers)}"
        assert 0 < numbers["temp_edge"] < 120 and 0 <= numbers["use_pct"] <= 100 and 0 < numbers["power_w"] < 1000
        if "vram_total" in numbers:  # bytes, from whatever unit the tool prints
            assert 1 << 30 < numbers["vram_total"] < 1 << 40 and 0 <= numbers["vram_used"] <= numbers["vram_total"]


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_gpu_whose_smu_stopped_answering_is_faulted_with_evidence(reader: str) -> None:
    gpus, sick = READERS[reader]("unanswering")
    assert [g.index for g in gpus if g.status is HealthStatus.FAULTED] == [sick]
    assert gpus[sick].evidence and all(isinstance(e, str) and e for e in gpus[sick].evidence)
    assert not any(isinstance(v, float) for k, v in gpus[sick].readings.items() if k.startswith("temp")), (
        "a reading the tool could not take must not pass for a temperature"
    )


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_gpu_the_driver_lost_is_faulted_and_named_missing(reader: str) -> None:
    gpus, lost = READERS[reader]("missing")
    assert [g.index for g in gpus if g.status is HealthStatus.FAULTED] == [lost]
    (evidence,) = gpus[lost].evidence
    assert re.fullmatch(rf"GPU {lost} missing from .+ output", evidence), evidence


def test_amd_smi_values_plain_or_with_units_and_both_json_shapes() -> None:
    assert reading({"value": 8176, "unit": "MB"}) == 8176 * 2**20 and reading("45 C") == 45.0
    assert reading(97) == 97.0 and reading("N/A") == "N/A" and reading({"value": "N/A", "unit": "W"}) == "N/A"
    listing = '[{"gpu": 0, "bdf": "0000:03:00.0"}]'
    plain = '{"gpu_data": [{"gpu": 0, "temperature": {"edge": 51}, "power": {"socket_power": "96 W"}, ' \
            '"usage": {"gfx_activity": 99}}]}'  # fmt: skip
    (gpu,) = parse_amd_smi("rig", "WARNING: a notice first\n" + listing, plain, 1)
    assert gpu.status is HealthStatus.OK and gpu.pci_bus == "0000:03:00.0"
    assert (gpu.readings["temp_edge"], gpu.readings["power_w"], gpu.readings["use_pct"]) == (51.0, 96.0, 99.0)
    assert parse_amd_smi("rig", "", "amd-smi: error", 1)[0].status is HealthStatus.FAULTED


def test_a_node_without_rocm_smi_is_read_with_amd_smi(tmp_path: Path) -> None:
    """The real probe on a local node whose PATH has a recorded amd-smi and no rocm-smi."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "amd-smi"
    folder = FIX / "amd-smi-6" / "na"
    tool.write_text(f'#!/bin/sh\ncase "$1" in list) cat "{folder}/list.json";; metric) cat "{folder}/metric.json";; '
                    'esac\n')  # fmt: skip
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    node = NodeConfig(name="rig", transport="local", gpu_kind="rocm", gpu_count=2, python=sys.executable,
                      workdir=str(tmp_path), sysfs_root=str(tmp_path / "no-sysfs"),
                      env={"PATH": f"{bin_dir}:/usr/bin:/bin"})  # fmt: skip
    probe = probe_node_full(LocalExecutor(node), node, HealthPolicy(min_probe_interval_s=0))
    assert [g.status for g in probe.gpus] == [HealthStatus.OK, HealthStatus.FAULTED]
    assert "every amd-smi reading of GPU 1 is N/A" in probe.gpus[1].evidence[0]
    assert probe.gpus[0].pci_bus == "0000:03:00.0" and probe.gpus[0].readings["vram_used"] == 1844 * 2**20
    tool.unlink()
    with pytest.raises(Exception, match="neither rocm-smi nor amd-smi"):
        probe_node_full(LocalExecutor(node), node, HealthPolicy(min_probe_interval_s=0))
