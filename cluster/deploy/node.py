"""Deploy on one node: connect, probe, (create the venv), check dependencies, upload, install, verify.

Every step that fails ends this node's deploy with one line naming the node, the step and the fix
(`Outcome.line`); nothing raises past `deploy_node`, so one node's failure never stops the others.
A node already at the build (and holding the files deploy ships) is left alone.
"""

from __future__ import annotations

import posixpath
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from loguru import logger

from cluster.config import NodeConfig, Timeouts
from cluster.deploy import steps
from cluster.deploy.link import NodeLink
from cluster.deploy.probe import NodeState, parse_state, probe_command
from cluster.deploy.wheel import Wheel
from cluster.errors import AuthenticationError, HostKeyError, TransportError
from cluster.files import sha256_file

Say = Callable[[str, str, str], None]  # (node, step, what happened)
INSTALL_TIMEOUT_S = 600.0  # pip and venv creation; the probes use timeouts.command
GPU_STACK = ("torch", "cupy")  # never installed by deploy: the operator's build for the rig's GPUs


@dataclass(frozen=True)
class Plan:
    """What every node gets: the wheel, the requirements to check, the files to ship into the workdir
    (path under the workdir -> local file), and whether to only report (`check`)."""

    wheel: Wheel
    requirements: list[str]
    files: dict[str, Path] = field(default_factory=dict)
    timeouts: Timeouts = field(default_factory=Timeouts)
    check: bool = False


@dataclass
class Outcome:
    node: str
    result: str = "failed"  # installed | up to date | out of date | skipped | failed
    before: str | None = None
    after: str | None = None
    gpu_stack: str = ""
    seconds: float = 0.0
    step: str = ""
    reason: str = ""
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.result in {"installed", "up to date", "skipped"}

    def line(self) -> str:
        """One line: node, failed step, why, and the fix."""
        fix = f"; fix: {self.fix}" if self.fix else ""
        return f"{self.node}: {self.step}: {self.reason}{fix}"


class StepFailed(Exception):
    def __init__(self, reason: str, fix: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


class _AtStep(Exception):
    """A StepFailed with the name of the step it happened in."""

    def __init__(self, step: str, failed: StepFailed) -> None:
        super().__init__(step)
        self.step = step
        self.failed = failed


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("ERROR", "error"))]
    return (errors or lines or ["(no output)"])[-1][:300]


def deploy_node(node: NodeConfig, plan: Plan, say: Say) -> Outcome:
    out = Outcome(node.name)
    started = time.monotonic()
    step = "connect"
    try:
        with NodeLink(node, plan.timeouts) as link:
            say(node.name, step, f"ok ({node.address})")
            _NodeRun(node, plan, link, say, out).go()
    except _AtStep as at:
        out.step, out.reason, out.fix = at.step, at.failed.reason, at.failed.fix
    except TransportError as err:
        out.step, out.reason, out.fix = step, err.reason, _transport_fix(node, err)
    except Exception as err:  # a bug must not stop the other nodes: reported like any failure, logged in full
        logger.exception(f"deploy on {node.name}")
        out.step, out.reason = out.step or step, f"{type(err).__name__}: {err}"
        out.fix = "a bug in watcher deploy (its traceback is logged above): please report it"
    out.seconds = time.monotonic() - started
    return out


def _transport_fix(node: NodeConfig, err: TransportError) -> str:
    if isinstance(err, HostKeyError | AuthenticationError):
        return ""  # their message already says what to run
    login = f"{node.user}@{node.host}" if node.user else node.host
    return f"is the rig up? try: ssh -p {node.port} {login} true"


class _NodeRun:
    """The steps after the connection is up; each raises StepFailed, reported with its step's name."""

    def __init__(self, node: NodeConfig, plan: Plan, link: NodeLink, say: Say, out: Outcome) -> None:
        self.node, self.plan, self.link, self.say, self.out = node, plan, link, say, out
        self.wheel_rel = posixpath.join(steps.STAGE, plan.wheel.name)
        self.state = NodeState()

    def step(self, name: str, action: Callable[[], None]) -> None:
        self.out.step = name  # where an unexpected error is reported
        try:
            action()
        except StepFailed as failed:
            raise _AtStep(name, failed) from None
        except TransportError as err:
            raise _AtStep(name, StepFailed(err.reason, _transport_fix(self.node, err))) from None

    def go(self) -> None:
        self.step("probe", self.probe)
        if self.state.python_missing:
            self.step("venv", self.create_venv)
            self.step("probe", self.probe)
        self.out.before, self.out.gpu_stack = self.state.identity, self.state.gpu_stack
        self.say(self.node.name, "probe", f"build {self.state.identity or 'none'}, torch {self.state.gpu_stack}")
        self.step("venv", self.check_venv)
        if self.current(self.state):
            self.out.result, self.out.after = "up to date", self.state.identity
            return
        if self.plan.check:
            self.out.result, self.out.after = "out of date", self.state.identity
            self.out.step, self.out.reason = "check", f"runs build {self.state.identity or 'none'}"
            self.out.fix = f"watcher deploy --nodes {self.node.name}"
            return
        self.step("deps", self.check_deps)
        self.step("upload", self.upload)
        self.step("install", self.install)
        self.step("verify", self.verify)
        self.out.result = "installed"

    def run(self, shell: steps.Shell, timeout: float | None = None) -> str:
        res = self.link.run(shell.body, timeout=timeout or self.plan.timeouts.command, shown=shell.shown)
        if not res.ok:
            raise StepFailed(f"{last_line(res.stderr + res.stdout)} (exit {res.exit_code})")
        return res.stdout

    def probe(self) -> None:
        hashed = [self.wheel_rel, *self.plan.files]
        body = probe_command(self.node.python, self.node.workdir, self.plan.requirements, hashed)
        res = self.link.run(body, timeout=self.plan.timeouts.command, shown=f"{self.node.python} -c <probe>")
        state = parse_state(res.stdout)
        if state is None:
            why = last_line(res.stderr) if res.stderr.strip() else "no answer"
            raise StepFailed(f"{self.node.python} exited {res.exit_code}: {why}", f"run {self.node.python} on the rig")
        self.state = state

    def create_venv(self) -> None:
        opts, python = self.node.deploy, self.node.python
        if self.plan.check and opts.create_venv:
            raise StepFailed(f"{python} does not exist yet", f"watcher deploy --nodes {self.node.name} creates it")
        if not opts.create_venv:
            raise StepFailed(
                f"{python} does not exist",
                f"create the venv ({opts.base_python} -m venv {steps.venv_dir(python)}) with the rig's GPU build of "
                f"torch, or set deploy.create_venv: true for {self.node.name}",
            )
        self.run(steps.create_venv(self.node), INSTALL_TIMEOUT_S)
        self.say(self.node.name, "venv", f"created {steps.venv_dir(python)}")

    def check_venv(self) -> None:
        state = self.state
        if not state.venv:
            raise StepFailed(
                f"{state.executable} is not a virtualenv's python (deploy installs only into one)",
                f"point {self.node.name}'s python at DIR/bin/python of a venv (deploy.create_venv: true creates it)",
            )
        if not state.pip:
            raise StepFailed(f"pip is missing from {state.prefix}", f"{state.executable} -m ensurepip")

    def current(self, state: NodeState) -> bool:
        shipped = all(state.hashes.get(rel) == _sha(path) for rel, path in self.plan.files.items())
        return state.identity == self.plan.wheel.identity and shipped

    def check_deps(self) -> None:
        lacking = self.state.lacking
        if not lacking:
            return
        said = ", ".join(f"{d.get('requirement')} ({d.get('installed') or 'missing'})" for d in lacking)
        names = [str(d.get("requirement")) for d in lacking]
        ours = [r for r in names if not r.lower().startswith(GPU_STACK)]
        fixes = [f"{self.state.executable} -m pip install {' '.join(shlex.quote(r) for r in ours)}"] if ours else []
        if len(ours) < len(names):
            fixes.append(f"install the rig's GPU build of torch into {self.state.prefix} (deploy never replaces it)")
        raise StepFailed(f"the venv lacks {said}", " and ".join(fixes))

    def upload(self) -> None:
        workdir, sent = self.state.workdir, 0
        try:
            self.run(steps.make_stage(workdir))
            for rel, local, sha, executable in self.uploads():
                if self.state.hashes.get(rel) == sha:
                    continue
                if posixpath.dirname(rel) != steps.STAGE:
                    self.run(steps.upload_dir(workdir, rel))
                self.link.put(local, posixpath.join(workdir, rel) + ".part")
                self.run(steps.place(workdir, rel, executable))
                sent += local.stat().st_size
        except (StepFailed, TransportError) as err:
            reason = err.reason
            user = self.node.user or "the login user"
            raise StepFailed(
                reason, f"make {workdir} writable by {user} and check its free space (df -h {workdir})"
            ) from None
        self.say(self.node.name, "upload", f"ok ({sent / 1024:.0f} KiB sent)")

    def uploads(self) -> list[tuple[str, Path, str, bool]]:
        wheel = self.plan.wheel
        assert wheel.path is not None  # a real run always has the wheel on disk
        out = [(self.wheel_rel, wheel.path, wheel.sha256, False)]
        return out + [(rel, p, _sha(p), bool(p.stat().st_mode & 0o111)) for rel, p in self.plan.files.items()]

    def install(self) -> None:
        shell = steps.pip_install(self.state.executable, self.state.workdir, self.plan.wheel.name)
        try:
            self.run(shell, INSTALL_TIMEOUT_S)
        except StepFailed as failed:
            raise StepFailed(
                failed.reason, f"run it on {self.node.name} to see pip's whole output: {shell.shown}"
            ) from None
        finally:
            self.link.run(steps.clear_tmp(self.state.workdir).body, timeout=self.plan.timeouts.command, shown="rm")
        self.say(self.node.name, "install", "ok")

    def verify(self) -> None:
        before = self.state
        self.probe()
        self.out.after = after = self.state.identity
        if after == self.plan.wheel.identity:
            self.say(self.node.name, "verify", f"build {after}")
            return
        found = self.state.found_at or "nowhere"
        shadowed = bool(self.state.found_at) and not found.startswith(before.prefix.rstrip("/") + "/")
        raise StepFailed(
            f"after the install {self.node.name} runs build {after}, not {self.plan.wheel.identity} "
            f"(its python finds watcher in {found})",
            f"remove the copy of watcher in {found}: it shadows the venv's" if shadowed else "run deploy again",
        )


def _sha(path: Path) -> str:
    return sha256_file(path)
