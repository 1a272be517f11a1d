"""What deploy asks a node before and after installing, in one read-only Python run on the node.

The script is sent whole (`files.identity_script` plus the part below), so a node with an old build, or
none, answers with what its files are: its build identity computed from the sources its `python -m`
finds in the workdir, as a worker would; torch's version and GPU backend read from torch's own metadata and
`torch/version.py` without importing torch (an import costs seconds and initialises the GPU runtime);
CuPy's distributions; which of watcher's requirements the node lacks; and the sha256 of the files deploy
keeps in the workdir, so an unchanged wheel is not sent again.
"""

from __future__ import annotations

import json
import shlex

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cluster.files import PACKAGE, PACKAGES, identity_script
from cluster.transport.ssh import remote_path

NO_PYTHON = "__watcher_deploy_no_python__"

_BODY = r"""
import hashlib, importlib.util, json, os, re, sys
from importlib.metadata import PackageNotFoundError, distributions, version
args = json.loads(sys.argv[1])
out = {"python": sys.version.split()[0], "executable": sys.executable, "venv": sys.prefix != sys.base_prefix,
       "prefix": sys.prefix, "pip": importlib.util.find_spec("pip") is not None}
home = os.path.expanduser("~")
out["workdir"] = os.path.normpath(os.path.join(home, os.path.expanduser(args["workdir"])))
out["identity"] = source_identity(args["dist"], tuple(args["packages"]))
spec = importlib.util.find_spec(args["packages"][0])
out["found_at"] = os.path.dirname(os.path.dirname(spec.origin)) if spec and spec.origin else None

def installed(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return None

torch = {"version": installed("torch")}
spec = importlib.util.find_spec("torch")
if spec is not None and spec.submodule_search_locations:
    try:
        path = os.path.join(list(spec.submodule_search_locations)[0], "version.py")
        names = {}
        exec(compile(open(path).read(), path, "exec"), names)
        torch.update(hip=names.get("hip"), cuda=names.get("cuda"))
    except Exception as err:
        torch["error"] = f"{type(err).__name__}: {err}"
out["torch"] = torch
out["cupy"] = sorted(f"{d.metadata['Name']} {d.version}" for d in distributions()
                     if (d.metadata["Name"] or "").lower().startswith("cupy"))
try:
    from packaging.requirements import Requirement
except ImportError:
    try:
        from pip._vendor.packaging.requirements import Requirement
    except ImportError:  # neither: only whether each is installed at all
        Requirement = None
lacking = []
for text in args["requirements"]:
    if Requirement is None:
        have = installed(re.match(r"[A-Za-z0-9._-]+", text).group(0))
        fits = have is not None
    else:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate():
            continue
        have = installed(req.name)
        fits = have is not None and req.specifier.contains(have, prereleases=True)
    if not fits:
        lacking.append({"requirement": text, "installed": have})
out["lacking"] = lacking
hashes = {}
for rel in args["hash"]:
    path = os.path.join(out["workdir"], rel)
    try:
        with open(path, "rb") as fh:
            hashes[rel] = hashlib.sha256(fh.read()).hexdigest()
    except OSError:
        hashes[rel] = None
out["hashes"] = hashes
print(json.dumps(out))
"""


def probe_script() -> str:
    return identity_script() + _BODY


class NodeState(BaseModel):
    """A node's answer to the probe, checked field by field (a node is not believed unchecked);
    `python_missing`: the node's `python` does not exist."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    python_missing: bool = False
    python: str = ""
    executable: str = ""
    venv: bool = False
    prefix: str = ""
    pip: bool = False
    workdir: str = ""
    identity: str | None = None
    found_at: str | None = None
    torch: dict[str, str | None] = Field(default_factory=dict)
    cupy: list[str] = Field(default_factory=list)
    lacking: list[dict[str, str | None]] = Field(default_factory=list)
    hashes: dict[str, str | None] = Field(default_factory=dict)

    @property
    def gpu_stack(self) -> str:
        """torch and its GPU backend as the node reports them, e.g. "2.4.1+rocm6.1 (ROCm 6.1.40091)"."""
        version = self.torch.get("version")
        if not version:
            return "no torch"
        if self.torch.get("hip"):
            backend = f"ROCm {self.torch['hip']}"
        elif self.torch.get("cuda"):
            backend = f"CUDA {self.torch['cuda']}"
        else:
            backend = "CPU only" if "error" not in self.torch else "backend unknown"
        return f"{version} ({backend})" + (f", {', '.join(self.cupy)}" if self.cupy else "")


def probe_command(python: str, workdir: str, requirements: list[str], hashed: list[str]) -> str:
    """The shell snippet: into the workdir when it exists, then the probe (or a marker: no such python)."""
    args = {"workdir": workdir, "dist": PACKAGE, "packages": list(PACKAGES), "requirements": requirements,
            "hash": hashed}  # fmt: skip
    py = shlex.quote(python)
    return (
        f"cd {remote_path(workdir)} 2>/dev/null; export PYTHONDONTWRITEBYTECODE=1; "
        f"command -v {py} >/dev/null 2>&1 || {{ echo {NO_PYTHON}; exit 0; }}; "
        f"exec {py} -c {shlex.quote(probe_script())} {shlex.quote(json.dumps(args))}"
    )


def parse_state(stdout: str) -> NodeState | None:
    """The probe's answer, or None when the node printed no JSON line (the caller reports its stderr)."""
    lines = stdout.strip().splitlines()
    if lines and lines[-1].strip() == NO_PYTHON:
        return NodeState(python_missing=True)
    try:
        data = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        return None
    try:
        return NodeState.model_validate(data)
    except ValidationError:
        return None
