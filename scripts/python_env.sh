# Sourced by scripts/run_example.sh and scripts/setup_tests.sh: a virtual environment and the CPU
# build of torch, the same way on any fresh Linux machine.
#
#   VENV=DIR        the environment (default .venv in the repository; an active one is used as is)
#   PYTHON=python3  the interpreter that creates it (3.10 or newer)
#   TORCH_INDEX=URL where torch comes from (default: PyTorch's CPU wheel index; for a CUDA build
#                   use https://download.pytorch.org/whl/cu126, or TORCH_INDEX=pypi for PyPI's
#                   default build, which is the CUDA one on Linux)
set -euo pipefail
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
VENV=${VIRTUAL_ENV:-${VENV:-.venv}}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.13.0
TORCH_INDEX=${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}

if ! command -v "$PYTHON" >/dev/null; then
  echo "setup: $PYTHON not found; expected Python 3.10 or newer on PATH (or PYTHON=/path/to/python3)" >&2
  exit 2
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "setup: $("$PYTHON" --version 2>&1) is too old; expected Python 3.10 or newer" >&2
  exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    # Debian/Ubuntu ship venv separately (python3-venv); pip into the system Python is refused there.
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends python3-venv
    rm -rf "$VENV"; "$PYTHON" -m venv "$VENV"
  fi
fi
VPY="$VENV/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first: a bare 'torch' requirement on PyPI is the multi-GB CUDA build on Linux.
if ! "$VPY" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  if [ "$TORCH_INDEX" = pypi ]; then
    "$VPY" -m pip install -q "torch==$TORCH_VERSION"
  else
    "$VPY" -m pip install -q "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX"
  fi
fi
