#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian/Ubuntu machine: a virtual environment (.venv),
# the CPU build of torch first (scripts/python_env.sh), the project with its test extras, and the
# Debian tools the tests drive (BART, ismrmrd-tools, the C++ ISMRMRD library and a compiler).
# Then run the tests with: .venv/bin/python -m pytest -q
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
DEBIAN_PACKAGES=(bart ismrmrd-tools libismrmrd-dev g++ pkg-config)
missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
source scripts/python_env.sh
"$VPY" -m pip install -q -e ".[test]"
