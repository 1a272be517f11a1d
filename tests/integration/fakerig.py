"""Fake rigs for integration tests: each one a real OpenSSH `sshd` on 127.0.0.1.

What a rig is here:
- its own directory `root` with `bin/` (first on the PATH of every command: the fake `rocm-smi` and
  `dmesg` from tests/integration/rigbin/ are copied there), `ramdisk/`, `state/`, `sshd_config`, `sshd.log`;
- its own port, host key (written to the shared known_hosts file) and the session's authorized key;
- the test user `watchertest` (login shell /bin/sh: a root login shell with a heavy .bashrc costs 100+ ms
  a command), so commands run as on a real rig, without root; `make(n, own_users=True)` gives each rig its
  own user instead (`watchertest-rig01`, ...), as separate machines would have;
- an SFTP subsystem (OpenSSH's sftp-server, run through the same ForceCommand), for fabric's file copies;
- `venv(deps)`: a virtualenv of the rig's own (`<root>/venv`, owned by its user) that sees torch, pip and
  every other package of the test interpreter through a `.pth` line to `RigFactory.deps_dir()` (symlinks to
  that site-packages, watcher's own entries left out): a rig venv with torch but nothing of ours, made in a
  fraction of a second and without the network, whose torch files are the coordinator's (hash them to show
  that nothing touched them);
- switches to inject faults, read by `bin/rig-shell` (sshd's ForceCommand) on every command:
  `set_gpu(i, state)` (healthy | ffff | eio | na | missing, read by the fake rocm-smi from
  state/gpu/<i>; the fake dmesg's SMU line for a faulted GPU is stamped with the kernel uptime of the
  change), `down()`/`up()` (sshd stopped/started), `hang()`/`unhang()` (sshd SIGSTOPped: the
  kernel still accepts TCP, no banner ever comes), `slow(seconds)`, `fail_times(n)` (the next n commands
  exit 97 with a message, then commands succeed), `kernel_lines(lines)` (extra `dmesg` lines as given),
  `kernel_event(*texts)` (extra `dmesg` lines stamped now, as the kernel would);
- workers that die as on the rigs, after `worker_faults()` (the node's python is then `bin/rig-python`,
  which watches each slot worker): a slot's worker dies mid-chunk once its GPU is set to ffff / eio / na,
  and `fault_worker(i, "oom")` / `fault_worker(i, "gpu-hang")` make the next chunk on GPU i end in an
  OOM kill (kernel line naming the worker's PID, SIGKILL, nothing on stderr) or a GPU hang (kernel HW
  exception and ring-test lines, ROCr's message on stderr, abort).
Every command gets RIG_DIR=<root> in its environment. Every process started here is stopped by PID in
`stop()`; the pytest fixture in conftest.py calls it at teardown even when a test fails.

API: `RigFactory(base_dir).make(n, gpus=12, own_users=False) -> list[FakeRig]`; `FakeRig.node_config(**overrides)`;
`FakeRig.venv(RigFactory.deps_dir()) -> python path`; `cluster_config(rigs, **overrides) -> ClusterConfig`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

from cluster.config import ClusterConfig, NodeConfig

try:
    import fakesysfs
except ImportError:  # imported as tests.integration.fakerig
    from tests.integration import fakesysfs

REPO_ROOT = Path(__file__).resolve().parents[2]
RIGBIN = Path(__file__).resolve().parent / "rigbin"
TEST_USER = "watchertest"
SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"

RIG_SHELL = """#!/bin/sh
# ForceCommand of a fake rig: applies the fault switches, then runs what the client asked for.
S="$RIG_DIR/state"
if [ -f "$S/slow" ]; then sleep "$(cat "$S/slow")"; fi
if [ -f "$S/fail_times" ]; then
  n=$(cat "$S/fail_times" 2>/dev/null || echo 0)
  if [ "${n:-0}" -gt 0 ]; then
    echo $((n - 1)) > "$S/fail_times"
    echo "fakerig: injected failure on $(basename "$RIG_DIR") ($((n - 1)) more to come)" >&2
    exit 97
  fi
fi
exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
"""


def available() -> str | None:
    """Why fake rigs cannot run here, or None when they can."""
    if not Path(SSHD).exists():
        return f"{SSHD} not found (apt-get install -y openssh-server)"
    if os.geteuid() != 0:
        return "fake rigs need root (to create the test user and run sshd)"
    if shutil.which("ssh-keygen") is None:
        return "ssh-keygen not found (apt-get install -y openssh-client)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _let_others_traverse(target: Path) -> None:
    for parent in [target, *target.parents]:
        mode = parent.stat().st_mode
        if parent.is_dir() and not mode & 0o001:
            parent.chmod(mode | 0o001)


def _descendants(pid: int) -> list[int]:
    """All processes below `pid`, children first listed last (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def uptime() -> float:
    """Seconds since boot, the clock of dmesg's timestamps."""
    return float(Path("/proc/uptime").read_text().split()[0])


def ensure_test_user(user: str = TEST_USER) -> None:
    """Create the unprivileged rig user once, and let it reach the interpreter the tests run with
    (pyenv lives under /root, which is 0700 on these machines: it needs o+x, nothing more)."""
    try:
        pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", user], check=True, capture_output=True)
    # useradd leaves the account locked ("!"), and sshd without PAM refuses locked accounts even for
    # key logins; "*" means "no password login" without the lock.
    subprocess.run(["usermod", "-p", "*", user], check=True, capture_output=True)
    for target in (Path(sys.executable).resolve(), REPO_ROOT):
        _let_others_traverse(target)


class FakeRig:
    def __init__(
        self,
        name: str,
        root: Path,
        gpus: int,
        client_key: Path,
        known_hosts: Path,
        switches: bool = True,
        user: str = TEST_USER,
    ) -> None:
        self.name = name
        self.user = user  # the rig's login user (its files are owned by it)
        self.switches = switches  # False: no ForceCommand wrapper (transport benchmarks measure sshd alone)
        self.root = root
        self.gpus = gpus
        self.client_key = client_key
        self.known_hosts = known_hosts
        self.port = free_port()
        self.bin = root / "bin"
        self.state = root / "state"
        self.ramdisk = root / "ramdisk"
        self.python = sys.executable  # the node's interpreter (worker_faults(): the rig's wrapper)
        self.proc: subprocess.Popen[bytes] | None = None
        self._build()

    # -- set-up --------------------------------------------------------------------------------------
    def _build(self) -> None:
        for path in (self.bin, self.state / "gpu", self.state / "since", self.state / "worker_fault", self.ramdisk,
                     self.root / "work"):  # fmt: skip
            path.mkdir(parents=True, exist_ok=True)
        if RIGBIN.is_dir():
            for tool in RIGBIN.iterdir():
                if tool.is_file():
                    shutil.copy(tool, self.bin / tool.name)
                    (self.bin / tool.name).chmod(0o755)
        shell = self.bin / "rig-shell"
        shell.write_text(RIG_SHELL)
        shell.chmod(0o755)
        (self.state / "gpus").write_text(f"{self.gpus}\n")
        for i in range(self.gpus):
            (self.state / "gpu" / str(i)).write_text("healthy\n")
        self.sysfs = self.root / "sys"
        self.sysfs.mkdir(exist_ok=True)
        for i in range(self.gpus):
            fakesysfs.build_card(self.sysfs, i, self.pci(i), "healthy")
        self.sysfs.chmod(0o755)
        (self.state / "kernel.log").write_text("")
        (self.state / "python").write_text(sys.executable + "\n")  # what bin/rig-python runs
        hostkey = self.root / "ssh_host_ed25519_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hostkey)], check=True)
        pub = (self.root / "ssh_host_ed25519_key.pub").read_text().split()
        with self.known_hosts.open("a") as fh:
            fh.write(f"[127.0.0.1]:{self.port} {pub[0]} {pub[1]}\n")
        authorized = self.root / "authorized_keys"
        shutil.copy(self.client_key.with_suffix(".pub"), authorized)
        path = f"{self.bin}:/usr/local/bin:/usr/bin:/bin"
        (self.root / "sshd_config").write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {hostkey}",
                    f"PidFile {self.root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized}",
                    "StrictModes no",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "PermitRootLogin no",
                    f"AllowUsers {self.user}",
                    f"Subsystem sftp {SFTP_SERVER}",
                    f"SetEnv PATH={path} RIG_DIR={self.root}",
                    f"ForceCommand {shell}" if self.switches else "",
                    "MaxSessions 64",
                    "MaxStartups 200:30:400",
                    "UseDNS no",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        owner = f"{self.user}:{self.user}"
        subprocess.run(["chown", "-R", owner, str(self.state), str(self.ramdisk)], check=True)
        subprocess.run(["chown", owner, str(self.root / "work")], check=True)
        for path in (self.root, self.bin):
            path.chmod(0o755)

    # -- lifecycle -----------------------------------------------------------------------------------
    def up(self, wait: float = 10.0) -> FakeRig:
        if self.proc is not None and self.proc.poll() is None:
            return self
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-f", str(self.root / "sshd_config"), "-E", str(self.root / "sshd.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.root / "sshd.log").read_text(errors="replace")
                raise RuntimeError(f"sshd for {self.name} exited {self.proc.returncode}: {log[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.settimeout(1.0)
                    if sock.recv(4).startswith(b"SSH-"):
                        return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"sshd for {self.name} did not answer on port {self.port} within {wait:g} s")

    def down(self) -> None:
        """Kill sshd and every session and command under it: the node is gone, like a powered-off rig
        (open connections drop too, which is what a coordinator sees when a rig dies mid-chunk)."""
        if self.proc is None:
            return
        self.unhang()
        for pid in [*_descendants(self.proc.pid), self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=5)
        self.proc = None

    def hang(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def unhang(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.down()
        fakesysfs.release(self.sysfs)  # a sysfs reader left blocked on a hang FIFO ends now

    # -- fault switches ------------------------------------------------------------------------------
    def _write_state(self, name: str, text: str) -> None:
        path = self.state / name
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.chown(tmp, pwd.getpwnam(self.user).pw_uid, pwd.getpwnam(self.user).pw_gid)
        os.replace(tmp, path)

    def set_gpu(self, index: int, state: str) -> None:
        """GPU state for rocm-smi, dmesg and the sysfs; `hang`: rocm-smi blocks and the GPU's sysfs reads
        block; `sysfs-hang`: only its sysfs reads block."""
        if state not in {"healthy", "ffff", "eio", "na", "missing", "hang", "sysfs-hang"}:
            raise ValueError(f"unknown GPU state {state!r}")
        if not 0 <= index < self.gpus:
            raise ValueError(f"{self.name} has GPUs 0-{self.gpus - 1}, not {index}")
        if state in {"ffff", "eio", "na", "hang"}:  # the fake dmesg's SMU line for the GPU, stamped now
            self._write_state(f"since/{index}", f"{uptime():12.6f}\n")
        else:
            (self.state / "since" / str(index)).unlink(missing_ok=True)
        self._write_state(f"gpu/{index}", ("healthy" if state == "sysfs-hang" else state) + "\n")
        fakesysfs.build_card(self.sysfs, index, self.pci(index), "hang" if state == "sysfs-hang" else state)

    def pci(self, index: int) -> str:
        path = self.state / "pci" / str(index)
        return path.read_text().strip() if path.exists() else f"0000:{3 + 3 * index:02x}:00.0"

    def set_pci(self, index: int, bus: str) -> None:
        """Move GPU `index` to another PCI address (a card reseated in another slot)."""
        (self.state / "pci").mkdir(exist_ok=True)
        state = (self.state / "gpu" / str(index)).read_text().strip()
        fakesysfs.build_card(self.sysfs, index, self.pci(index), "missing")
        self._write_state(f"pci/{index}", bus + "\n")
        fakesysfs.build_card(self.sysfs, index, bus, state)

    def set_vram_used(self, index: int, nbytes: int) -> None:
        (self.state / "vram").mkdir(exist_ok=True)
        self._write_state(f"vram/{index}", f"{nbytes}\n")

    def deny_dmesg(self, denied: bool = True) -> None:
        """dmesg refused for lack of permission (kernel.dmesg_restrict=1)."""
        if denied:
            self._write_state("dmesg_denied", "1\n")
        else:
            (self.state / "dmesg_denied").unlink(missing_ok=True)

    def slow(self, seconds: float) -> None:
        if seconds <= 0:
            (self.state / "slow").unlink(missing_ok=True)
        else:
            self._write_state("slow", f"{seconds}\n")

    def fail_times(self, n: int) -> None:
        self._write_state("fail_times", f"{n}\n")

    def kernel_lines(self, lines: list[str]) -> None:
        with (self.state / "kernel.log").open("a") as fh:
            fh.writelines(line.rstrip("\n") + "\n" for line in lines)

    def kernel_event(self, *texts: str) -> list[str]:
        """Kernel log lines stamped with the kernel's uptime now (rigs share this machine's kernel)."""
        stamp = uptime()
        lines = [f"[{stamp + i * 1e-6:12.6f}] {text}" for i, text in enumerate(texts)]
        self.kernel_lines(lines)
        return lines

    def worker_faults(self) -> FakeRig:
        """From now on node_config() names bin/rig-python, so the fault_worker() switches reach the workers."""
        self.python = str(self.bin / "rig-python")
        return self

    def fault_worker(self, index: int, kind: str) -> None:
        """The next chunk in flight on GPU `index` ends in `kind`: "oom" or "gpu-hang" (see bin/rig-python)."""
        if kind not in {"oom", "gpu-hang"}:
            raise ValueError(f"unknown worker fault {kind!r}")
        if self.python != str(self.bin / "rig-python"):
            raise RuntimeError(f"{self.name}: call worker_faults() before making the config")
        self._write_state(f"worker_fault/{index}", kind + "\n")

    def worker_fault_pending(self, index: int) -> bool:
        return (self.state / "worker_fault" / str(index)).exists()

    def rocm_smi_calls(self) -> list[str]:
        path = self.state / "rocm-smi.calls"
        return path.read_text().splitlines() if path.exists() else []

    def venv(self, deps: Path) -> str:
        """A virtualenv at <root>/venv owned by the rig's user, seeing `deps` (RigFactory.deps_dir()) through a
        .pth line: torch and pip, nothing of watcher's. Returns its python."""
        venv = self.root / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
        site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
        (site / "_fakerig_deps.pth").write_text(f"{deps}\n")
        subprocess.run(["chown", "-R", f"{self.user}:{self.user}", str(venv)], check=True)
        return str(venv / "bin" / "python")

    # -- config ----------------------------------------------------------------------------------------
    def node_config(self, **overrides: Any) -> NodeConfig:
        data: dict[str, Any] = {
            "name": self.name,
            "transport": "ssh",
            "host": "127.0.0.1",
            "port": self.port,
            "user": self.user,
            "key_file": str(self.client_key),
            "known_hosts": str(self.known_hosts),
            "python": self.python,
            "workdir": str(REPO_ROOT),
            "ramdisk_path": str(self.ramdisk),
            "gpu_kind": "rocm",
            "gpu_count": self.gpus,
            "env": {"NUMBA_CACHE_DIR": str(self.root / "work" / "numba"), "WATCHER_RIG": self.name},
            "sysfs_root": str(self.sysfs),
        }
        data.update(overrides)
        return NodeConfig.model_validate(data)


class RigFactory:
    """Makes rigs under one directory, sharing one client key and one known_hosts file."""

    def __init__(self, base: Path) -> None:
        reason = available()
        if reason:
            raise RuntimeError(reason)
        ensure_test_user()
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o755)
        _let_others_traverse(base)  # pytest's tmp root is 0700; sshd reads keys as the rig user
        self.client_key = base / "client_ed25519"
        if not self.client_key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.client_key)], check=True)
        self.known_hosts = base / "known_hosts"
        self.known_hosts.touch()
        self.rigs: list[FakeRig] = []

    def make(
        self, n: int, gpus: int = 12, start: bool = True, switches: bool = True, own_users: bool = False
    ) -> list[FakeRig]:
        made = []
        for _ in range(n):
            name = f"rig{len(self.rigs) + 1:02d}"
            user = f"{TEST_USER}-{name}" if own_users else TEST_USER
            if own_users:
                ensure_test_user(user)
            rig = FakeRig(name, self.base / name, gpus, self.client_key, self.known_hosts, switches, user)
            self.rigs.append(rig)
            made.append(rig)
        if start:
            for rig in made:
                rig.up()
        return made

    def deps_dir(self) -> Path:
        """Symlinks to every package of the test interpreter's site-packages except watcher's own (its
        metadata and editable-install hooks), made once: what a rig venv sees besides its own packages."""
        deps = self.base / "rigdeps"
        if deps.exists():
            return deps
        tmp = self.base / "rigdeps.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        site = Path(sysconfig.get_paths()["purelib"])
        for entry in site.iterdir():
            name = entry.name
            if name.startswith(("rig_watcher", "__editable__", "__pycache__")) or name.endswith(".pth"):
                continue
            (tmp / name).symlink_to(entry)
        tmp.chmod(0o755)
        tmp.rename(deps)
        return deps

    def stop_all(self, remove: bool = False) -> None:
        for rig in self.rigs:
            try:
                rig.stop()
            except Exception as err:  # teardown must go on to the next rig
                print(f"fakerig: stopping {rig.name}: {err}", file=sys.stderr)
        if remove:
            shutil.rmtree(self.base, ignore_errors=True)


def private_base(prefix: str) -> Path:
    """A directory of our own for rigs (not pytest's tmp root, whose old sessions a concurrent pytest
    run may prune while our sshd still reads keys from them)."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix=f"watcher-{prefix}-"))


def cluster_config(rigs: list[FakeRig], **overrides: Any) -> ClusterConfig:
    data: dict[str, Any] = {
        "nodes": [rig.node_config().model_dump() for rig in rigs],
        "timeouts": {"connect": 2.0, "command": 30.0, "job": 120.0, "preflight": 15.0},
        # The rigs run the coordinator's CPU torch: the torch-sees-its-GPUs check would (rightly) fail.
        "health": {"check_torch_devices": False},
    }
    data.update(overrides)
    # The rigs' "GPUs" are CPU slots of this machine: no need to space out slot worker starts.
    data["scheduler"] = {"worker_start_stagger_s": 0, **(data.get("scheduler") or {})}
    # Tests check a rig many times a second; real rigs keep the default spacing (health.min_probe_interval_s).
    data["health"] = {"min_probe_interval_s": 0, **(data.get("health") or {})}
    return ClusterConfig.model_validate(data)
