#!/usr/bin/env bash
# The recipe of the shipped prior (diffusion_core/priors/default.*), on one CUDA GPU.
# Stage 1: 128x128 crops, batch 64, torch.compile; stage 2 resumes at 256x256, batch 32.
# The shipped run: 8.4 + 8.3 minutes on one H100 (9,810 steps), niivue_FLAIR held out.
# The data are read by path from ../shared/data/train_volumes (never copied into the repository).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/train_volumes}
OUT=${OUT:-out/default}
COMMON=(--data "$DATA" --out "$OUT" --steps 200000 --lr 3e-4 --bf16 --device cuda
        --validate-every 500 --checkpoint-every 500 --validation-subject niivue_FLAIR)
python -m diffusion_core.training "${COMMON[@]}" --batch-size 64 --crop 128 --compile --max-minutes 8.4
python -m diffusion_core.training "${COMMON[@]}" --batch-size 32 --crop 256 --resume --max-minutes 8.3
echo "then: cp $OUT.safetensors diffusion_core/priors/default.safetensors; cp $OUT.json diffusion_core/priors/default.json"
