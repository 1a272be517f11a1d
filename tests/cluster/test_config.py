"""Config validation: every mistake is one line naming the field, and the CLIs exit 78."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.cli import main as watcher_main
from cluster.config import ClusterConfig, load_config
from cluster.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "distributed_config.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def _node(**kw: object) -> dict[str, object]:
    return {"name": "rig-a", "host": "127.0.0.1", "gpu_kind": "rocm", "gpu_count": 4, **kw}


def test_shipped_configs_load() -> None:
    default = load_config(REPO / "distributed_config.json")
    assert [n.transport for n in default.nodes] == ["local"]
    assert default.nodes[0].slot_count >= 1
    rigs = load_config(REPO / "examples" / "distributed_config.rigs.json")
    # the operators' record of bad GPUs (known-bad-gpus.md): rig-6600b (192.168.3.154) GPU[4] at 0F:00.0
    # excluded, rig-6600 (192.168.3.120) GPU[10] at 22:00.0 watchlisted, both by PCI address
    excluded = {n.name: [(g.index, g.pci) for g in n.excluded_gpus] for n in rigs.nodes}
    assert excluded == {"coordinator": [], "rig-6600": [], "rig-6600b": [(4, "0000:0f:00.0")]}
    assert {n.name: n.host for n in rigs.nodes if n.transport == "ssh"} == {
        "rig-6600": "192.168.3.120",
        "rig-6600b": "192.168.3.154",
    }
    assert [(w.node, w.gpu, w.pci) for w in rigs.watchlist] == [("rig-6600", 10, "0000:22:00.0")]
    assert [n.gpu_count for n in rigs.nodes] == [2, 12, 12]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"nodes": [_node(colour="red")]}, "nodes[0].colour: unknown key"),
        (
            {"nodes": [_node(excluded_gpus=[{"index": 1, "reason": "x", "pci": "22:00"}])]},
            "nodes[0].excluded_gpus[0].pci: String should match pattern",
        ),
        ({"nodes": [_node()], "health": {"min_probe_interval_s": -1}}, "health.min_probe_interval_s"),
        ({"nodes": [_node(port="twenty-two")]}, "nodes[0].port: "),
        ({"nodes": [_node(), _node()]}, "duplicates nodes[0]"),
        ({"nodes": [_node(excluded_gpus=[{"index": 4, "reason": "smu"}])]}, "index 4 is out of range"),
        ({"nodes": [_node(excluded_gpus=[{"index": 1}])]}, "excluded_gpus[0].reason: required field is missing"),
        ({"nodes": [_node(gpu_count=None)]}, "gpu_count is required"),
        ({"nodes": [_node(host="a b")]}, "nodes[0].host"),
        ({"nodes": [_node(env={"BAD-NAME": "x"})]}, "not a valid identifier"),
        ({"nodes": []}, "nodes: "),
        ({"nodes": [_node()], "watchlist": [{"node": "nope", "gpu": 1}]}, "watchlist[0].node 'nope'"),
        ({"nodes": [_node()], "timeouts": {"connect": -1}}, "timeouts.connect"),
        (
            {"nodes": [_node()], "scheduler": {"rocm_smi_min_interval_s": 5}},
            "scheduler: rocm_smi_min_interval_s was replaced by health.min_probe_interval_s",
        ),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path: Path, data: object, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, data))
    message = str(info.value)
    assert expected in message
    assert "\n" not in message and str(tmp_path) in message


def test_bad_json_names_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, '{"nodes": [\n  {"name": "a",}\n]}')
    with pytest.raises(ConfigError, match=r"invalid JSON at line 2 column 16"):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.json")


def test_cli_exits_78_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, {"nodes": [_node(bogus=1)]})
    assert watcher_main(["validate-config", "--config", str(path)]) == 78
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nodes[0].bogus: unknown key" in err
    ok = _write(tmp_path, {"nodes": [_node(excluded_gpus=[{"index": 1, "reason": "SMU"}])]})
    assert watcher_main(["validate-config", "--config", str(ok)]) == 0
    assert "3 usable slot(s)" in capsys.readouterr().out


def test_config_objects_are_immutable() -> None:
    config = ClusterConfig.model_validate({"nodes": [_node()]})
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises its ValidationError for frozen models
        config.nodes[0].port = 2  # type: ignore[misc]
