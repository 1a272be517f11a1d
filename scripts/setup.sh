#!/usr/bin/env bash
# Install watcher into ./.venv on a fresh Debian/Ubuntu machine.
#   scripts/setup.sh          the application (CPU torch unless a torch is already installed in .venv)
#   scripts/setup.sh --test   plus what the test suite needs: openssh-server (fake rigs are real sshd),
#                             chromium (the HTML report is rendered headless), g++ (the GPU kernels run on the
#                             CPU through a shim), clang-19 and lld-19 (the kernels compiled for gfx1030 / gfx1100)
#                             and the `test` extra (NVRTC compiles them for sm_80 / sm_90).
# WATCHER_TORCH overrides the torch requirement (e.g. a ROCm wheel index is set up by the operator).
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
[[ "${1:-}" == "--test" ]] && with_tests=1

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  ((${#missing[@]} == 0)) && return 0
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}

if ((with_tests)); then
  apt_install openssh-server chromium g++
  # a clang that knows gfx1030 and gfx1100, for the HIP compile tests (they skip, naming this, without one)
  apt_install clang-19 lld-19 || echo "clang-19 is not available here: the HIP compile tests will skip" >&2
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # A plain `torch` requirement pulls a multi-GB CUDA build; CPU machines and CI take the CPU build.
  .venv/bin/python -m pip install -q "${WATCHER_TORCH:-torch==2.13.0}"
fi
if ((with_tests)); then
  .venv/bin/python -m pip install -q -e '.[test]'
else
  .venv/bin/python -m pip install -q -e .
fi
echo "watcher installed in $(pwd)/.venv"
