"""GPU health parsers on real captures (tests/fixtures): every fixture, healthy noise, exit codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cluster.gpu.health import HealthStatus
from cluster.gpu.kernel_log import parse_kernel_lines
from cluster.gpu.nvidia_smi import parse_nvidia_csv
from cluster.gpu.rocm_smi import apply_kernel_faults, parse_concise, parse_rocm_json, parse_showuse_text

FIX = Path(__file__).resolve().parents[1] / "fixtures"
SMI = FIX / "rocm-smi-5.2.3"
JSON_COMMANDS = ["showtemp_showpower_showuse_json", "showuse_json", "showuse_json_loglevel_error"]


def read(mode: str, cmd: str) -> tuple[str, str, int]:
    base = SMI / mode / cmd
    return (
        base.with_suffix(".out").read_text(),
        base.with_suffix(".err").read_text(),
        int(base.with_suffix(".rc").read_text().strip() or 0),
    )


@pytest.mark.parametrize("cmd", JSON_COMMANDS)
@pytest.mark.parametrize(("mode", "gpu1"), [("healthy", "ok"), ("ffff", "faulted"), ("eio", "faulted")])
def test_json_fixtures(mode: str, gpu1: str, cmd: str) -> None:
    out, err, _rc = read(mode, cmd)
    gpus = parse_rocm_json("rig", out, err, 2)
    assert [g.status.value for g in gpus] == ["ok", gpu1]
    if gpu1 == "faulted":
        assert gpus[1].evidence, "a fault must carry its evidence"


def test_healthy_showuse_exits_2_and_is_still_healthy() -> None:
    out, err, rc = read("healthy", "showuse_json")
    assert rc == 2
    assert all(g.status is HealthStatus.OK for g in parse_rocm_json("rig", out, err, 2))


def test_all_ones_power_is_named_in_the_evidence() -> None:
    out, err, _ = read("ffff", "showtemp_showpower_showuse_json")
    gpu = parse_rocm_json("rig", out, err, 2)[1]
    assert any("4294.967295" in e for e in gpu.evidence)


@pytest.mark.parametrize("mode", ["healthy", "ffff", "eio"])
def test_single_device_json(mode: str) -> None:
    out, err, _ = read(mode, "d_1_showuse_json")
    (gpu,) = parse_rocm_json("rig", out, err, 2, indices=[1])
    assert gpu.status.value == ("ok" if mode == "healthy" else "faulted")


@pytest.mark.parametrize(("mode", "gpu1"), [("healthy", "ok"), ("ffff", "faulted"), ("eio", "faulted")])
def test_concise_and_text_fixtures(mode: str, gpu1: str) -> None:
    out, err, _ = read(mode, "concise")
    assert [g.status.value for g in parse_concise("rig", out, err, 2)] == ["ok", gpu1]
    out, err, _ = read(mode, "showuse")
    assert [g.status.value for g in parse_showuse_text("rig", out, 2)] == ["ok", gpu1]


def test_missing_card_in_json_is_faulted() -> None:
    gpus = parse_rocm_json("rig", '{"card0": {"GPU use (%)": "5"}}', "", 3)
    assert [g.status.value for g in gpus] == ["ok", "faulted", "faulted"]
    assert "GPU 1 missing from rocm-smi's JSON output" in gpus[1].evidence[0]
    assert parse_rocm_json("rig", "", "rocm-smi: command failed", 1)[0].status is HealthStatus.FAULTED


def sections(text: str) -> dict[str, str]:
    parts = re.split(r"^--- (.+?) ---$", text, flags=re.MULTILINE)
    return {name.split()[0]: body for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def test_real_three_rig_capture_has_exactly_one_faulted_gpu() -> None:
    capture = sections((FIX / "rocm-smi-6-concise-3-rigs-one-faulted.txt").read_text())
    faulted = []
    for name in ("rig-6600", "rig-6600b", "rig-6600c"):
        gpus = parse_concise(name, capture[name], capture[name], 8)
        assert len(gpus) == 8
        faulted += [(g.node, g.index) for g in gpus if g.status is HealthStatus.FAULTED]
    assert faulted == [("rig-6600b", 7)]
    gpu7 = parse_concise("rig-6600b", capture["rig-6600b"], capture["rig-6600b"], 8)[7]
    assert any("unknown" in e for e in gpu7.evidence) and any("Expected integer" in e for e in gpu7.evidence)
    cuda = parse_nvidia_csv("Zeus", capture["Zeus"], 2)
    assert [g.status.value for g in cuda] == ["ok", "ok"] and cuda[1].readings["power_w"] == 32.21


def test_kernel_lines_map_to_gpus_and_ignore_healthy_noise() -> None:
    faults = parse_kernel_lines((FIX / "kernel-smu-lines.txt").read_text())
    buses = {f.pci_bus for f in faults}
    assert {"0000:0f:00.0", "0000:0d:00.0", "0000:22:00.0", "0000:0b:00.0", "0000:03:00.0"} <= buses
    assert not any("initialized successfully" in f.line or "Initialized amdgpu" in f.line for f in faults)
    healthy = parse_rocm_json(
        "rig", '{"card0": {"GPU use (%)": "1", "PCI Bus": "0000:0f:00.0"}, "card1": {"GPU use (%)": "1", '
        '"PCI Bus": "0000:10:00.0"}}', "", 2,
    )  # fmt: skip
    marked = apply_kernel_faults(healthy, faults)
    assert [g.status.value for g in marked] == ["faulted", "ok"]
    assert "SMU: response:0xFFFFFFFF" in marked[0].evidence[0]


def test_nvidia_bad_rows() -> None:
    text = "0, 50, 26.34 W, 25 MiB, 12288 MiB, 0 %\n1, [GPU requires reset], [Unknown Error], 0 MiB, 0 MiB, ERR!\n"
    gpus = parse_nvidia_csv("cuda", text, 3, max_temp_c=45)
    assert [g.status.value for g in gpus] == ["degraded", "faulted", "faulted"]
