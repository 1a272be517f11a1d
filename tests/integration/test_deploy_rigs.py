"""`watcher deploy` on two fake SSH rigs, each with its own unprivileged user and a venv that holds torch
but nothing of watcher's (fakerig's `venv()`: torch, pip and the other packages come through a .pth line
to the test interpreter's site-packages, so no rig reaches the network and its torch files can be hashed).

The coordinator is a copy of the repository's packages in a temporary directory, run with the test
virtualenv's interpreter from that directory (`python -m` puts it first on sys.path), so a "one-line change
to the coordinator's code" edits the copy, never the repository. One journey through the CLI is shared by
the assertions below (module-scoped): preflight fails before deploy, deploy installs, preflight passes;
a change makes preflight fail naming both builds, `--check` reports it, deploy fixes it; a deploy with
nothing to do skips both rigs quickly; a rig whose disk write fails, then whose pip fails, is one line
while the other rig succeeds (exit 69); an unknown host key is refused with the ssh-keyscan fix.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import fakerig
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("agents", "cluster", "pipeline", "preflight")
TORCH_FACTS = r"""
import hashlib, json, importlib.util, os
from importlib.metadata import distribution
root = list(importlib.util.find_spec("torch").submodule_search_locations)[0]
dist = distribution("torch")
def sha(data): return hashlib.sha256(data).hexdigest()
files = {name: sha(open(os.path.join(root, name), "rb").read()) for name in ("__init__.py", "version.py")}
files["RECORD"] = sha(dist.read_text("RECORD").encode())
print(json.dumps({"version": dist.version, "root": root, "files": files}))
"""


@dataclass
class Journey:
    rigs: list[fakerig.FakeRig]
    coordinator: Path
    config: Path
    steps: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    builds: dict[str, str] = field(default_factory=dict)
    torch: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    homes: dict[str, list[set[str]]] = field(default_factory=dict)
    stage_after_dry_run: list[bool] = field(default_factory=list)

    def cli(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        state = str(self.coordinator / ".watcher")
        if args[0] == "preflight":
            argv = ["-m", "agents.commands.preflight", "check", "--state-dir", state, *args[1:]]
        else:
            argv = ["-m", "agents.cli", "--state-dir", state, *args]
        argv += [] if "--config" in args else ["--config", str(self.config)]
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, *argv], cwd=self.coordinator, capture_output=True, text=True, timeout=120
        )
        self.seconds[name] = time.monotonic() - started
        self.steps[name] = proc
        return proc

    def build(self) -> str:
        code = "from cluster.files import installed_version; print(installed_version())"
        out = subprocess.run([sys.executable, "-c", code], cwd=self.coordinator, capture_output=True, text=True)
        return out.stdout.strip()

    def change_code(self, note: str) -> None:
        with (self.coordinator / "cluster" / "text.py").open("a") as fh:
            fh.write(f"# {note}\n")

    def rig_facts(self) -> None:
        for rig in self.rigs:
            python = str(rig.root / "venv" / "bin" / "python")
            out = subprocess.run([python, "-B", "-c", TORCH_FACTS], capture_output=True, text=True, check=True)
            self.torch.setdefault(rig.name, []).append(json.loads(out.stdout))
            home = Path(os.path.expanduser(f"~{rig.user}"))
            self.homes.setdefault(rig.name, []).append({str(p.relative_to(home)) for p in home.rglob("*")})


def _copy_coordinator(dest: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(REPO / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "scripts").mkdir()
    shutil.copy2(REPO / "scripts" / "cleanup_gpus.sh", dest / "scripts" / "cleanup_gpus.sh")


def _set_owner(path: Path, user: str) -> None:
    shutil.chown(path, user, user)


@pytest.fixture(scope="module")
def journey() -> Iterator[Journey]:
    reason = fakerig.available()
    if reason:
        pytest.skip(reason)
    factory = fakerig.RigFactory(fakerig.private_base("deploy"))
    try:
        rigs = factory.make(2, gpus=2, own_users=True)
        deps = factory.deps_dir()
        nodes = [r.node_config(python=r.venv(deps), workdir=str(r.root / "work")).model_dump() for r in rigs]
        config = factory.base / "cluster.json"
        config.write_text(json.dumps({**fakerig.cluster_config(rigs).model_dump(), "nodes": nodes}))
        coordinator = factory.base / "coordinator"
        _copy_coordinator(coordinator)
        j = Journey(rigs, coordinator, config)
        _walk(j)
        yield j
    finally:
        factory.stop_all(remove=True)


def _walk(j: Journey) -> None:
    a, b = j.rigs
    j.rig_facts()
    j.builds["first"] = j.build()
    j.cli("preflight_before", "preflight")
    j.cli("dry_run", "deploy", "--dry-run")
    j.stage_after_dry_run = [(r.root / "work" / ".watcher-deploy").exists() for r in j.rigs]
    j.cli("deploy", "deploy")
    _venv_cases(j)
    j.cli("preflight_after", "preflight")
    j.change_code("a one-line change")
    j.builds["second"] = j.build()
    j.cli("preflight_stale", "preflight")
    j.cli("check", "deploy", "--check")
    j.cli("redeploy", "deploy")
    j.cli("preflight_fixed", "preflight")
    j.cli("nothing_to_do", "deploy")
    # rig02 cannot write into its workdir's deploy folder (as a full or read-only disk would refuse)
    j.change_code("another one-line change")
    j.builds["third"] = j.build()
    stage = b.root / "work" / ".watcher-deploy"
    _set_owner(stage, "root")
    j.cli("disk_fails", "deploy")
    _set_owner(stage, b.user)
    # then rig02's pip cannot write into its venv
    site = next((b.root / "venv" / "lib").glob("python3*/site-packages"))
    _set_owner(site, "root")
    j.cli("pip_fails", "deploy")
    _set_owner(site, b.user)
    j.cli("recovered", "deploy")
    empty = j.config.with_name("empty_known_hosts")
    empty.touch()
    strange = json.loads(j.config.read_text())
    strange["nodes"][0]["known_hosts"] = str(empty)
    unknown = j.config.with_name("unknown_key.json")
    unknown.write_text(json.dumps(strange))
    j.cli("unknown_key", "deploy", "--nodes", a.name, "--config", str(unknown))
    j.rig_facts()


def _venv_cases(j: Journey) -> None:
    """rig01 twice more under other names: a venv deploy creates (with a base python whose venvs get no pip,
    so the next check fails on it), and a python that is missing where the config does not ask for one."""
    a = j.rigs[0]
    base = a.bin / "venv-python"
    base.write_text(f'#!/bin/sh\nexec {sys.executable} "$@" --without-pip\n')
    base.chmod(0o755)
    work = a.root / "work"
    made = a.node_config(name="rig01-new", python=str(work / "fresh" / "bin" / "python"), workdir=str(work),
                         deploy={"create_venv": True, "base_python": str(base)})  # fmt: skip
    missing = a.node_config(name="rig01-none", python=str(work / "none" / "bin" / "python"), workdir=str(work))
    data = json.loads(j.config.read_text())
    data["nodes"] = [made.model_dump(), missing.model_dump()]
    cases = j.config.with_name("venv_cases.json")
    cases.write_text(json.dumps(data))
    j.cli("venv_cases", "deploy", "--config", str(cases))


def out(j: Journey, step: str) -> str:
    proc = j.steps[step]
    return proc.stdout + proc.stderr


def fail_lines(j: Journey, step: str) -> list[str]:
    return [line.removeprefix("FAIL ") for line in j.steps[step].stderr.splitlines() if line.startswith("FAIL ")]


def test_preflight_fails_before_deploy_and_names_the_fix(journey: Journey) -> None:
    j = journey
    assert j.steps["preflight_before"].returncode == 69, out(j, "preflight_before")
    lines = fail_lines(j, "preflight_before")
    assert len(lines) == 2, lines
    for rig, line in zip(j.rigs, lines, strict=True):
        assert line.startswith(f"{rig.name}: watcher is not installed"), line
        assert j.builds["first"] in line and f"watcher deploy --nodes {rig.name}" in line


def test_dry_run_prints_the_commands_and_touches_nothing(journey: Journey) -> None:
    j = journey
    text = out(j, "dry_run")
    assert j.steps["dry_run"].returncode == 0, text
    for rig in j.rigs:
        assert f"ssh -p {rig.port} {rig.user}@127.0.0.1" in text
        assert f"{rig.root / 'venv' / 'bin' / 'python'} -m pip install --no-index --no-deps" in text
    assert "sftp put" in text and "scripts/cleanup_gpus.sh" in text
    assert j.stage_after_dry_run == [False, False]


def test_deploy_installs_the_coordinator_build_and_preflight_then_passes(journey: Journey) -> None:
    j = journey
    text = out(j, "deploy")
    assert j.steps["deploy"].returncode == 0, text
    first = j.builds["first"]
    assert f"build {first}, sha256 " in text and "(built, " in text
    for rig in j.rigs:
        assert f"{rig.name}: verify: build {first}" in text
        assert (rig.root / "work" / "scripts" / "cleanup_gpus.sh").exists()  # the batch cleanup's script
    assert text.count("installed") >= 2
    assert j.steps["preflight_after"].returncode == 0, out(j, "preflight_after")
    assert f"build {first}" in out(j, "preflight_after")


def test_a_code_change_fails_preflight_naming_both_builds_and_deploy_fixes_it(journey: Journey) -> None:
    j = journey
    first, second = j.builds["first"], j.builds["second"]
    assert first != second and first.split("+")[0] == second.split("+")[0]  # same version, another build
    assert j.steps["preflight_stale"].returncode == 69
    lines = fail_lines(j, "preflight_stale")
    assert len(lines) == 2 and all(f"worker build {first} != coordinator {second}" in line for line in lines), lines
    assert all("watcher deploy --nodes rig0" in line for line in lines)
    assert j.steps["check"].returncode == 69 and out(j, "check").count("out of date") >= 2, out(j, "check")
    assert j.steps["redeploy"].returncode == 0, out(j, "redeploy")
    assert all(f"{r.name}: verify: build {second}" in out(j, "redeploy") for r in j.rigs)
    assert j.steps["preflight_fixed"].returncode == 0, out(j, "preflight_fixed")


def test_a_second_deploy_skips_both_rigs_in_under_5_s(journey: Journey) -> None:
    j = journey
    text = out(j, "nothing_to_do")
    assert j.steps["nothing_to_do"].returncode == 0, text
    assert text.count("up to date") == 2 and "(reused, " in text and "upload" not in text, text
    assert j.seconds["nothing_to_do"] < 5.0, j.seconds


def test_one_rig_failing_is_one_line_and_the_other_still_succeeds(journey: Journey) -> None:
    j = journey
    a, b = j.rigs
    third = j.builds["third"]
    for step, where in (("disk_fails", "upload"), ("pip_fails", "install")):
        text = out(j, step)
        assert j.steps[step].returncode == 69, text
        (line,) = fail_lines(j, step)
        assert line.startswith(f"{b.name}: {where}: ") and "Permission denied" in line and "; fix: " in line, line
        assert f"{a.name}: verify: build {third}" in text or step == "pip_fails"
    assert "writable by watchertest-rig02" in fail_lines(j, "disk_fails")[0]
    assert "to see pip's whole output" in fail_lines(j, "pip_fails")[0]
    assert j.steps["recovered"].returncode == 0 and f"{b.name}: verify: build {third}" in out(j, "recovered")


def test_unknown_host_key_is_refused_with_the_keyscan_fix(journey: Journey) -> None:
    j = journey
    a = j.rigs[0]
    assert j.steps["unknown_key"].returncode == 69
    (line,) = fail_lines(j, "unknown_key")
    assert line.startswith(f"{a.name}: connect: unknown host key ssh-ed25519 SHA256:"), line
    assert f"ssh-keyscan -p {a.port} 127.0.0.1 >> " in line


def test_deploy_creates_a_venv_only_where_the_config_asks(journey: Journey) -> None:
    j = journey
    work = j.rigs[0].root / "work"
    assert j.steps["venv_cases"].returncode == 69
    made, missing = fail_lines(j, "venv_cases")
    assert (work / "fresh" / "bin" / "python").exists() and "rig01-new: venv: created" in out(j, "venv_cases")
    fresh = work / "fresh"
    assert made == f"rig01-new: venv: pip is missing from {fresh}; fix: {fresh / 'bin' / 'python'} -m ensurepip"
    assert missing.startswith(f"rig01-none: venv: {work / 'none' / 'bin' / 'python'} does not exist; fix: create")
    assert missing.endswith("or set deploy.create_venv: true for rig01-none") and not (work / "none").exists()


def test_the_rigs_torch_is_untouched_and_nothing_is_written_outside_workdir_and_venv(journey: Journey) -> None:
    for rig in journey.rigs:
        before, after = journey.torch[rig.name]
        assert before == after and before["version"], (before, after)
        home_before, home_after = journey.homes[rig.name]
        assert home_before == home_after, home_after - home_before
