"""The parts of `watcher deploy` that need no rig: the wheel (same bytes every time, a valid RECORD, reused
from the cache), the probe's answer checked field by field, the dependency message, the dry run and the
CLI's argument errors. The deploy itself runs against real sshd rigs in tests/integration/test_deploy_rigs.py."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

from agents.cli import main
from cluster.config import ClusterConfig, NodeConfig, parse_config
from cluster.deploy import Plan, build_wheel, dry_run, runtime_requirements
from cluster.deploy.node import Outcome, StepFailed, _NodeRun
from cluster.deploy.probe import NO_PYTHON, NodeState, parse_state
from cluster.errors import ConfigError
from cluster.files import PACKAGES, installed_version, package_files


def _record_ok(archive: zipfile.ZipFile) -> list[str]:
    record = next(n for n in archive.namelist() if n.endswith(".dist-info/RECORD"))
    names = []
    for line in archive.read(record).decode().splitlines():
        name, digest, size = line.split(",")
        names.append(name)
        if name == record:
            continue
        data = archive.read(name)
        assert digest == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert int(size) == len(data)
    return names


def test_the_wheel_is_the_same_bytes_every_time_and_is_reused(tmp_path: Path) -> None:
    dry = build_wheel(None)
    assert dry.path is None and not list(tmp_path.iterdir())
    first = build_wheel(tmp_path / "cache")
    again = build_wheel(tmp_path / "cache")
    assert (first.sha256, first.identity) == (dry.sha256, installed_version()) and not first.reused
    assert again.reused and again.path == first.path and again.sha256 == first.sha256
    assert first.path is not None and hashlib.sha256(first.path.read_bytes()).hexdigest() == first.sha256
    with zipfile.ZipFile(first.path) as archive:
        names = _record_ok(archive)
        assert set(names) == set(archive.namelist())
        ours = {arcname for package in PACKAGES for arcname, _ in package_files(package)}
        assert ours <= set(names) and "cluster/deploy/wheel.py" in ours
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "watcher = agents.cli:main" in archive.read(entry_points).decode()


def test_the_requirements_checked_on_nodes_leave_extras_out() -> None:
    found = runtime_requirements()
    assert any(r.startswith("torch") for r in found) and not any("pytest" in r for r in found)


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        ("", None),
        ("Traceback (most recent call last):\n", None),
        ('{"identity": ["not", "a", "string"]}', None),
        (NO_PYTHON + "\n", NodeState(python_missing=True)),
        ('{"identity": "0.1.0+src.x", "venv": true, "unknown": 1}', NodeState(identity="0.1.0+src.x", venv=True)),
    ],
)
def test_the_probe_answer_is_checked_before_it_is_believed(stdout: str, expected: NodeState | None) -> None:
    assert parse_state(stdout) == expected


@pytest.mark.parametrize(
    ("torch", "cupy", "shown"),
    [
        ({"version": "2.4.1+rocm6.1", "hip": "6.1.40091", "cuda": None}, [], "2.4.1+rocm6.1 (ROCm 6.1.40091)"),
        ({"version": "2.4.1+cu121", "hip": None, "cuda": "12.1"}, ["cupy-cuda12x 13.3.0"],
         "2.4.1+cu121 (CUDA 12.1), cupy-cuda12x 13.3.0"),
        ({"version": "2.4.1+cpu", "hip": None, "cuda": None}, [], "2.4.1+cpu (CPU only)"),
        ({"version": None}, [], "no torch"),
    ],
)  # fmt: skip
def test_the_gpu_stack_is_shown_as_the_node_reports_it(torch: dict, cupy: list[str], shown: str) -> None:
    assert NodeState(torch=torch, cupy=cupy).gpu_stack == shown


def rig(**extra: object) -> NodeConfig:
    fields = {"name": "rig-a", "host": "10.0.0.5", "user": "op", "python": "/opt/w/venv/bin/python",
              "workdir": "/opt/w", "gpu_kind": "rocm", "gpu_count": 2, **extra}  # fmt: skip
    return NodeConfig.model_validate(fields)


def test_missing_requirements_name_the_pip_command_and_leave_torch_to_the_operator() -> None:
    plan = Plan(build_wheel(None), ["numba>=0.59", "torch<3,>=2.1"])
    run = _NodeRun(rig(), plan, link=None, say=lambda *_: None, out=Outcome("rig-a"))  # type: ignore[arg-type]
    lacking = [{"requirement": "numba>=0.59", "installed": None}, {"requirement": "torch<3,>=2.1", "installed": None}]
    run.state = NodeState(executable="/opt/w/venv/bin/python", prefix="/opt/w/venv", lacking=lacking)
    with pytest.raises(StepFailed) as failed:
        run.check_deps()
    assert failed.value.reason == "the venv lacks numba>=0.59 (missing), torch<3,>=2.1 (missing)"
    assert failed.value.fix.startswith("/opt/w/venv/bin/python -m pip install 'numba>=0.59' and install the rig's GPU")


def test_dry_run_lists_every_command_and_skips_local_nodes() -> None:
    plan = Plan(build_wheel(None), [])
    node = rig(deploy={"create_venv": True, "system_site_packages": True})
    steps = dry_run(node, plan)
    assert [s for s, _ in steps][:3] == ["connect", "probe", "venv"] and steps[-1][0] == "verify"
    assert "python3 -m venv --system-site-packages /opt/w/venv" in steps[2][1]
    assert any("/opt/w/venv/bin/python -m pip install --no-index --no-deps" in c for _, c in steps)
    local = NodeConfig(name="here", transport="local")
    assert dry_run(local, plan) == [("skip", "local node: runs the coordinator's own install")]
    assert [s for s, _ in dry_run(node, Plan(plan.wheel, [], check=True))] == ["connect", "probe", "venv"]


def test_create_venv_needs_a_venv_path_for_python() -> None:
    data = ClusterConfig(nodes=[rig()]).model_dump()
    data["nodes"][0].update(python="python3", deploy={"create_venv": True})
    with pytest.raises(ConfigError) as err:
        parse_config(data, "cluster.json")
    assert str(err.value).startswith("cluster.json: nodes[0]: deploy.create_venv needs python to be a virtualenv")


def test_cli_errors_and_a_cluster_of_local_nodes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = str(tmp_path / "state")
    assert main(["--state-dir", state, "deploy", "--nodes", "nosuch"]) == 78
    assert "unknown node 'nosuch'" in capsys.readouterr().err
    assert main(["--state-dir", state, "deploy", "--parallel", "0"]) == 2
    assert main(["--state-dir", state, "deploy"]) == 0  # the embedded config: one local node, skipped
    text = capsys.readouterr().out
    assert "local node: runs the coordinator's own install" in text and "skipped" in text
