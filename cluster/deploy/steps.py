"""The shell commands of deploy's steps on one node: built in one place so that a dry run prints exactly
what a real run executes (`shown` is the command with the long probe script abbreviated).

Nothing here writes outside the node's workdir and venv: files go to `<workdir>/.watcher-deploy` (pip's
temporary files too, through TMPDIR), pip runs with no cache, no index, no config file and no version check,
and installs only watcher itself (`--no-deps`): the rig's torch and CuPy are never replaced.
"""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass

from cluster.config import NodeConfig
from cluster.transport.ssh import remote_path

STAGE = ".watcher-deploy"  # under the node's workdir: the wheel, and pip's temporary files while it installs
PIP_FLAGS = (
    "--no-index --no-deps --force-reinstall --no-cache-dir --disable-pip-version-check --no-input "
    "--no-warn-script-location --quiet"
)


@dataclass(frozen=True)
class Shell:
    """One command: the shell snippet run on the node, and how it is shown to the operator."""

    body: str
    shown: str


def q(path: str) -> str:
    return remote_path(path)


def venv_dir(python: str) -> str:
    """The virtualenv a `DIR/bin/python` belongs to."""
    return posixpath.dirname(posixpath.dirname(python))


def create_venv(node: NodeConfig) -> Shell:
    opts = node.deploy
    site = " --system-site-packages" if opts.system_site_packages else ""
    line = f"{shlex.quote(opts.base_python)} -m venv{site} {q(venv_dir(node.python))}"
    return Shell(f"mkdir -p {q(node.workdir)} && cd {q(node.workdir)} && {line}", f"(in {node.workdir}) {line}")


def make_stage(workdir: str) -> Shell:
    line = f"mkdir -p {q(posixpath.join(workdir, STAGE, 'tmp'))}"
    return Shell(line, line)


def place(workdir: str, rel: str, executable: bool) -> Shell:
    """Move an uploaded `<file>.part` into place (the rename is atomic: a reader never sees half a file)."""
    target = posixpath.join(workdir, rel)
    mode = "755" if executable else "644"
    line = f"chmod {mode} {q(target + '.part')} && mv -f {q(target + '.part')} {q(target)}"
    return Shell(line, line)


def upload_dir(workdir: str, rel: str) -> Shell:
    line = f"mkdir -p {q(posixpath.dirname(posixpath.join(workdir, rel)))}"
    return Shell(line, line)


def pip_install(python: str, workdir: str, wheel: str) -> Shell:
    stage = posixpath.join(workdir, STAGE)
    env = f"TMPDIR={q(stage + '/tmp')} PIP_CONFIG_FILE=/dev/null PYTHONNOUSERSITE=1"
    line = f"{env} {shlex.quote(python)} -m pip install {PIP_FLAGS} {q(posixpath.join(stage, wheel))}"
    return Shell(f"cd {q(stage)} && {line}", line)


def clear_tmp(workdir: str) -> Shell:
    line = f"rm -rf {q(posixpath.join(workdir, STAGE, 'tmp'))}"
    return Shell(line, line)
