"""Which Ray node is which configured node (pure rules, no Ray), and the `slot_mode: ray` config at load."""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import pytest

from cluster.config import load_config, parse_config
from cluster.errors import ConfigError
from cluster.scheduler.ray_slots.nodes import RayNode, match_nodes

HOSTS = {"rig-a.lan": {"10.0.0.5"}, "rig-b.lan": {"10.0.0.6"}}


def _config(*nodes: dict[str, Any], **extra: Any) -> Any:
    base = {"transport": "ssh", "gpu_kind": "rocm", "gpu_count": 2}
    return parse_config({"nodes": [{**base, **n} for n in nodes], **extra})


def _resolve(host: str) -> set[str]:
    return HOSTS.get(host, {host})


RIGS = _config({"name": "rig-a", "host": "rig-a.lan"}, {"name": "rig-b", "host": "rig-b.lan"},
               {"name": "coord", "transport": "local"})  # fmt: skip


def test_nodes_are_matched_by_label_by_address_and_the_coordinators_own() -> None:
    ray = [
        RayNode("id-a", "10.0.0.5", True),
        RayNode("id-b", "10.0.0.99", True, {"watcher-node": "rig-b"}),  # the label wins over the address
        RayNode("id-c", "10.0.0.1", True),
        RayNode("id-old", "10.0.0.6", False),  # a dead raylet is nobody
    ]
    assert match_nodes(RIGS.nodes, ray, "id-c", _resolve) == {"rig-a": "id-a", "rig-b": "id-b", "coord": "id-c"}
    assert match_nodes(RIGS.nodes, ray[:1], "id-c", _resolve) == {"rig-a": "id-a"}  # the others: no Ray node


@pytest.mark.parametrize(
    ("ray", "said"),
    [
        ([RayNode("id-x", "10.0.0.7", True)], "Ray node id-x at 10.0.0.7 has no entry in distributed_config.json"),
        ([RayNode("id-x", "10.0.0.5", True, {"watcher-node": "rig-z"})], "labelled watcher-node='rig-z', which is no"),
        ([RayNode("id-1", "10.0.0.5", True), RayNode("id-2", "10.0.0.5", True)], "both stand for node 'rig-a'"),
    ],
)
def test_a_ray_node_no_configured_node_accounts_for_is_refused_in_one_line(ray: list[RayNode], said: str) -> None:
    with pytest.raises(ConfigError) as err:
        match_nodes(RIGS.nodes, ray, None, _resolve)
    assert said in str(err.value) and "\n" not in str(err.value) and "fix:" in str(err.value)


def test_one_address_for_two_configured_nodes_needs_labels() -> None:
    same = _config({"name": "r1", "host": "127.0.0.1", "port": 2201}, {"name": "r2", "host": "127.0.0.1", "port": 2202})
    with pytest.raises(ConfigError, match=r"could be any of r1, r2 .*watcher-node"):
        match_nodes(same.nodes, [RayNode("id-1", "127.0.0.1", True)], None, _resolve)
    labelled = [RayNode("id-1", "127.0.0.1", True, {"watcher-node": "r2"})]
    assert match_nodes(same.nodes, labelled, None, _resolve) == {"r2": "id-1"}


def test_ray_nodes_come_from_rays_own_entries() -> None:
    entry = {"NodeID": "abc", "NodeManagerAddress": "10.0.0.5", "Alive": True, "Labels": {"watcher-node": "rig-a"}}
    assert RayNode.from_ray(entry) == RayNode("abc", "10.0.0.5", True, {"watcher-node": "rig-a"})
    assert str(RayNode.from_ray({"NodeID": "0123456789", "NodeManagerAddress": "h"})) == "Ray node 01234567 at h"


# --- the config at load ----------------------------------------------------------------------------------------
def test_slot_mode_ray_without_ray_installed_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        _config({"name": "rig-a"}, scheduler={"slot_mode": "ray"})
    assert "scheduler.slot_mode" in str(err.value) and "pip install 'rig-watcher[ray]'" in str(err.value)
    assert _config({"name": "rig-a"}).scheduler.slot_mode == "workers"  # nothing asked of Ray otherwise


def test_the_ray_section_is_checked_at_load(tmp_path: Any) -> None:
    config = _config({"name": "rig-a"}, scheduler={"slot_mode": "ray"}, ray={"address": "10.0.0.1:6379"})
    assert (config.scheduler.slot_mode, config.ray.address) == ("ray", "10.0.0.1:6379")
    assert _config({"name": "rig-a"}).ray.address == "auto"
    for bad, said in [({"address": "http://head"}, "ray.address"), ({"adress": "auto"}, "ray.adress: unknown key")]:
        path = tmp_path / "c.json"
        path.write_text(json.dumps({"nodes": [{"name": "a", "transport": "local"}], "ray": bad}))
        with pytest.raises(ConfigError, match=said):
            load_config(path)
