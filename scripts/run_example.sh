#!/usr/bin/env bash
# Install gadgetron-diffusion (CPU torch pinned first) and reconstruct the bundled example file:
# writes out/example.h5 (ISMRMRD images: posterior mean, series 1; posterior std, series 2)
# and PNG previews in out/png/.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0  # pinned first, as in scripts/setup_tests.sh
python -m pip install -q -e .
mkdir -p out
gadgetron-diffusion replay gadget/examples/brain_t1_8ch_r4.h5 out/example.h5 --png out/png --overwrite "$@"
