#!/usr/bin/env bash
# Leave-one-subject-out on one CUDA GPU: priors each trained without one subject, in parallel
# processes on the one GPU (a 3.1 M-parameter U-Net does not fill it), then the generalization
# benchmark on each held-out subject with its own prior (benchmarks/generalization.py
# --checkpoint-dir), the shipped prior on the same cases, and benchmarks/loso_summary.py's table.
#
# Variants: "aug" (--augment, one prior per subject in SUBJECTS), "plain" (the shipped recipe's
# augmentation, for PLAIN_SUBJECTS: the control at the same budget) and "patch" (a PaDIS patch prior,
# --augment --patch PATCH: the same U-Net on PATCH x PATCH tiles with their positions, for
# PATCH_SUBJECTS). colin27 is one subject with two files, held out together
# (diffusion_core.training.data.DEFAULT_SUBJECT_ALIASES).
#
# Wall time: bank loading (~20 s) + TRAIN_MINUTES (6.5) + final save + BENCH_SECONDS (120) +
# summary: about 9.3 minutes, under the device's 600 s per command. For longer training split it
# into two calls back to back: PHASE=train TRAIN_MINUTES=7.5, then PHASE=bench.
# Each process logs to LOSO_DIR/logs/; a prior that dies is reported and the benchmark goes on
# with the checkpoints that exist (written atomically every CHECKPOINT_EVERY steps).
# On the device machine, carry the data (25 MB, e.g. carry [".gpu/data"] after
#   mkdir -p .gpu/data/eval && cp -r ../shared/data/train_volumes .gpu/data/ &&
#   cp ../shared/data/eval/brain8ch_full_c_y_x.npy .gpu/data/eval/)
# and write into $OUT so that whatever exists comes back even if the call is cut:
#   DATA_DIR=.gpu/data LOSO_DIR=$OUT/loso RESULT_DIR=$OUT/results bash scripts/gpu_loso.sh
# CPU check of the whole flow (a few steps, tiny crops and network, one case per subject):
#   TINY=1 nice -n 10 bash scripts/gpu_loso.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python}
DATA_DIR=${DATA_DIR:-../shared/data}
LOSO_DIR=${LOSO_DIR:-out/loso}
RESULT_DIR=${RESULT_DIR:-benchmarks/results}
TAG=${TAG:-h200}
PHASE=${PHASE:-all}
TINY=${TINY:-0}
SUBJECTS=${SUBJECTS:-niivue_FLAIR niivue_chris_t1 niivue_otsu_t1 colin27}
PLAIN_SUBJECTS=${PLAIN_SUBJECTS:-niivue_FLAIR}
PATCH_SUBJECTS=${PATCH_SUBJECTS:-niivue_FLAIR niivue_chris_t1}
PATCH=${PATCH:-64}
TRAIN_MINUTES=${TRAIN_MINUTES:-6.5}
BENCH_SECONDS=${BENCH_SECONDS:-120}
DEVICE=${DEVICE:-cuda}
THREADS=${THREADS:-2}  # CPU threads per process (16 cores on the H200 machine)
TRAIN_ARGS=(--steps 200000 --batch-size "${BATCH:-32}" --crop "${CROP:-256}" --lr 3e-4 --bf16
            --validate-every 500 --checkpoint-every "${CHECKPOINT_EVERY:-250}" --no-progress
            ${COMPILE:+--compile})  # COMPILE=1: torch.compile (~2 min of compiling per process)
BENCH_ARGS=(--size "${SIZE:-128}" --cases-per-subject "${CASES:-2}" --seeds 0 --samples 4 --nfe 25)
if [[ $TINY == 1 ]]; then
  DEVICE=cpu THREADS=1 TAG=${TAG/h200/tiny_cpu} TRAIN_MINUTES=1 BENCH_SECONDS=${TINY_BENCH_SECONDS:-240}
  LOSO_DIR=${LOSO_DIR/out\/loso/out/loso_tiny} RESULT_DIR=$LOSO_DIR/results
  SUBJECTS=${TINY_SUBJECTS:-niivue_FLAIR niivue_fs_norm}
  PLAIN_SUBJECTS=${TINY_PLAIN_SUBJECTS:-niivue_FLAIR}
  PATCH_SUBJECTS=${TINY_PATCH_SUBJECTS:-niivue_FLAIR} PATCH=16
  TRAIN_ARGS=(--steps 3 --batch-size 2 --crop 32 --base-channels 8 --channel-mult 1 2
              --attention-levels 1 --validate-every 2 --checkpoint-every 2 --no-progress)
  BENCH_ARGS=(--size 64 --real-size 64 --cases-per-subject 1 --seeds 0 --samples 2 --nfe 3
              --masks "R=4 1D random" --l1-weights 0.01)
  # only the subjects' own files (and every file of the subjects it trains on) keep loading short
  tiny_data=$LOSO_DIR/tiny_data
  rm -rf "$tiny_data" && mkdir -p "$tiny_data/train_volumes"
  ln -s "$(realpath "$DATA_DIR/eval")" "$tiny_data/eval"
  for s in $SUBJECTS; do
    for f in "$DATA_DIR"/train_volumes/"$s"*; do [[ -e $f ]] && ln -sf "$(realpath "$f")" "$tiny_data/train_volumes/"; done
  done
  DATA_DIR=$tiny_data
fi
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
mkdir -p "$LOSO_DIR/logs" "$LOSO_DIR/bench" "$RESULT_DIR"
log() { echo "$(date -u +%H:%M:%S) gpu_loso: $*" | tee -a "$LOSO_DIR/logs/gpu_loso.log"; }
log "phase $PHASE, device $DEVICE, data $DATA_DIR, aug: $SUBJECTS; plain: $PLAIN_SUBJECTS; patch $PATCH: $PATCH_SUBJECTS"
if [[ $DEVICE == cuda* ]] && command -v nvidia-smi >/dev/null; then
  log "$(nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader)"
fi

train_all() {
  local pids=() names=() variant subject extra
  for variant in aug plain patch; do
    local list=$SUBJECTS extra=(--augment)
    [[ $variant == plain ]] && list=$PLAIN_SUBJECTS extra=()
    [[ $variant == patch ]] && list=$PATCH_SUBJECTS extra=(--augment --patch "$PATCH")
    mkdir -p "$LOSO_DIR/$variant"
    for subject in $list; do
      # the hard limit: TRAIN_MINUTES after loading, plus a margin; a killed run keeps its
      # last checkpoint (written atomically every CHECKPOINT_EVERY steps)
      timeout --kill-after=10 "$(awk "BEGIN {print int($TRAIN_MINUTES * 60 + 90)}")" \
        "$PY" -m diffusion_core.training --data "$DATA_DIR/train_volumes" \
        --out "$LOSO_DIR/$variant/$subject" --validation-subject "$subject" --device "$DEVICE" \
        --max-minutes "$TRAIN_MINUTES" "${TRAIN_ARGS[@]}" "${extra[@]}" \
        >"$LOSO_DIR/logs/train_${variant}_${subject}.log" 2>&1 &
      pids+=($!) names+=("$variant/$subject")
    done
  done
  log "training ${#pids[@]} priors: ${names[*]}"
  local i
  for i in "${!pids[@]}"; do
    if wait "${pids[$i]}"; then
      log "trained ${names[$i]}: $(grep -o 'wrote .*' "$LOSO_DIR/logs/train_${names[$i]/\//_}.log" | tail -1)"
    else
      log "FAILED ${names[$i]} (exit $?), see logs/train_${names[$i]/\//_}.log; continuing with what exists"
      tail -3 "$LOSO_DIR/logs/train_${names[$i]/\//_}.log" | sed 's/^/    /' || true
    fi
  done
  rm -f "$LOSO_DIR"/*/*.state.* # optimizer moments: large, not needed by the benchmark
}

bench_all() {
  local pids=() names=() variant subject first
  run_bench() {  # name, then generalization.py arguments; results only through --json
    local name=$1
    shift
    timeout --kill-after=10 "$BENCH_SECONDS" "$PY" benchmarks/generalization.py \
      --data-dir "$DATA_DIR" --device "$DEVICE" --threads "$THREADS" "${BENCH_ARGS[@]}" \
      --json "$LOSO_DIR/bench/$name.json" "$@" >"$LOSO_DIR/logs/bench_$name.log" 2>&1 &
    pids+=($!) names+=("$name")
  }
  for variant in aug plain patch; do
    first=""
    for subject in $SUBJECTS; do
      [[ -f $LOSO_DIR/$variant/$subject.safetensors ]] || continue
      first=${first:-$LOSO_DIR/$variant/$subject.safetensors}
      run_bench "${variant}__$subject" --subjects "$subject" --checkpoint-dir "$LOSO_DIR/$variant"
    done
    # the real 8-coil brain: held out of every prior (no card lists it); any one of them
    [[ -n $first ]] && run_bench "${variant}__real" --subjects real --checkpoint "$first"
    [[ -n $first ]] || log "no $variant prior exists: nothing to benchmark for it"
  done
  for subject in $SUBJECTS real; do  # the shipped prior (niivue_FLAIR held out) on the same cases
    [[ $subject == real || -n $(ls "$DATA_DIR"/train_volumes/"$subject"* 2>/dev/null) ]] || continue
    run_bench "shipped__$subject" --subjects "$subject"
  done
  log "benchmark: ${#pids[@]} runs (<= $BENCH_SECONDS s each): ${names[*]}"
  local i
  for i in "${!pids[@]}"; do
    if wait "${pids[$i]}"; then
      log "benchmarked ${names[$i]}"
    else
      log "benchmark ${names[$i]} stopped (exit $?; 124: time limit), its finished records kept"
    fi
  done
}

case $PHASE in
  train) train_all ;;
  bench) bench_all ;;
  all) train_all; bench_all ;;
  *) echo "PHASE: expected train, bench or all, got $PHASE" >&2; exit 2 ;;
esac
if [[ $PHASE != train ]]; then
  "$PY" benchmarks/loso_summary.py --loso-dir "$LOSO_DIR" --out "$RESULT_DIR/loso_$TAG.md" \
    --json "$RESULT_DIR/loso_$TAG.json" \
    --note "scripts/gpu_loso.sh: TRAIN_MINUTES=$TRAIN_MINUTES, train ${TRAIN_ARGS[*]}; bench ${BENCH_ARGS[*]}" \
    | tee -a "$LOSO_DIR/logs/gpu_loso.log"
fi
log "done"
