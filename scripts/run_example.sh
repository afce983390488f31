#!/usr/bin/env bash
# The main job on a fresh machine: a virtual environment (.venv), the CPU build of torch, the
# project, then the replay of the bundled example file with the bundled prior. Writes
# out/example.h5 (ISMRMRD images: posterior mean, series 1; posterior std, series 2) and PNG
# previews in out/png/. Extra arguments go to 'gadgetron-diffusion replay' (e.g. --device cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python_env.sh
"$VPY" -m pip install -q -e .
mkdir -p out
exec "$VENV/bin/gadgetron-diffusion" replay gadget/examples/brain_t1_8ch_r4.h5 out/example.h5 \
  --png out/png --overwrite "$@"
