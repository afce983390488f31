#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine: the CPU build of torch first
# (a bare 'torch' requirement could pull a multi-GB CUDA build), then the project with its
# test extras, then the Debian tools the tests drive (BART, ismrmrd-tools, and the C++ ISMRMRD
# library with g++, with which a test reads the replay's output as C++ clients do).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! command -v bart >/dev/null || ! command -v ismrmrd_generate_cartesian_shepp_logan >/dev/null \
  || ! command -v g++ >/dev/null || [ ! -f /usr/include/ismrmrd/dataset.h ]; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends bart ismrmrd-tools libismrmrd-dev g++
fi
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test]"
