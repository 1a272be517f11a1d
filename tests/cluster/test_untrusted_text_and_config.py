"""Text from nodes made printable, output from nodes bounded, and the config holes closed (pure, local)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cluster.config import ClusterConfig, load_config
from cluster.errors import AuthenticationError, ConfigError
from cluster.text import one_line, printable
from cluster.transport.base import CappedBytes, LineSplitter
from cluster.transport.local import LocalExecutor
from cluster.transport.ssh import SSHExecutor

NASTY = "\x1b[31mRED\x1b[0m \x1b]0;owned\x07 [/x] \x9b2J\x7f"


def test_control_characters_are_shown_not_executed() -> None:
    shown = printable(NASTY + "\nnext line\ttab")
    assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown and "\x7f" not in shown
    assert shown.startswith("\\x1b[31mRED") and "\nnext line\ttab" in shown and "[/x]" in shown
    assert "\n" not in one_line("a\nb") and one_line("x" * 600).endswith("[... 100 characters cut]")


def test_node_output_is_capped_head_and_tail() -> None:
    buf = CappedBytes(head=10, tail=20)
    for _ in range(10_000):
        buf.feed(b"0123456789")
    value = buf.value()
    assert value.startswith(b"0123456789") and value.endswith(b"0123456789" * 2)
    assert b"[... 99970 bytes cut by watcher ...]" in value and len(value) < 100
    lines: list[str] = []
    splitter = LineSplitter(lambda _kind, line: lines.append(line), "out", limit=64)
    splitter.feed(b"short\n" + b"y" * 10_000)
    splitter.feed(b"y" * 10_000 + b"\nafter\n")
    assert lines[0] == "short" and lines[1].startswith("y" * 64) and "bytes cut by watcher" in lines[1]
    assert lines[2] == "after"


def test_a_local_command_flooding_stdout_keeps_its_last_line(tmp_path: Path) -> None:
    cfg = ClusterConfig.model_validate({"nodes": [{"name": "n", "transport": "local", "workdir": str(tmp_path)}]})
    res = LocalExecutor(cfg.nodes[0]).run(
        [
            "sh",
            "-c",
            'head -c 40000000 /dev/zero | tr "\\0" x; echo; echo "{\\"ok\\": true}"; head -c 5000000 /dev/zero >&2',
        ],
        timeout=60,
    )
    assert res.ok and res.stdout.rstrip().endswith('{"ok": true}') and "bytes cut by watcher" in res.stdout
    assert len(res.stdout) < 20 << 20 and len(res.stderr) < 300 << 10


def node(**extra: object) -> dict:
    return {"name": "rig", "transport": "ssh", "host": "127.0.0.1", "gpu_kind": "rocm", "gpu_count": 4, **extra}


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"env": {"A\n": "1"}}, "env"),
        ({"port": True}, "port"),
        ({"transport": "local", "gpu_kind": "cpu", "gpu_count": None,
          "excluded_gpus": [{"index": 999, "reason": "x"}]}, "excluded_gpus[0].index 999 is out of range"),
    ],
    ids=["env-key-with-newline", "port-true", "cpu-exclusion-out-of-range"],
)  # fmt: skip
def test_config_holes_are_closed(tmp_path: Path, extra: dict, words: str) -> None:
    path = tmp_path / "c.json"
    import json

    path.write_text(json.dumps({"nodes": [node(**extra)]}))
    with pytest.raises(ConfigError, match=r"rig|nodes") as err:
        load_config(path)
    assert words in str(err.value) and "\n" not in str(err.value).strip()


def test_a_private_key_others_can_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    key.write_text("not a key")
    key.chmod(0o644)
    cfg = ClusterConfig.model_validate({"nodes": [node(key_file=str(key), port=1)]})
    with pytest.raises(AuthenticationError, match=rf"mode 644\); fix: chmod 600 {key}"):
        SSHExecutor(cfg.nodes[0]).connect()


def test_tilde_is_resolved_once_for_every_command(tmp_path: Path) -> None:
    cfg = ClusterConfig.model_validate({"nodes": [{"name": "n", "transport": "local", "ramdisk_path": "~/rd"}]})
    ex = LocalExecutor(cfg.nodes[0])
    assert ex.node_path("~/rd") == os.path.expanduser("~/rd") and ex.node_path("/abs") == "/abs"
