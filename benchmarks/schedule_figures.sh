#!/usr/bin/env bash
# Every figure of the speed targets on the paper's schedule, on one card, part by part: the
# cached training step, the embedding-cache build, predict throughput, the real `odssam train`
# on Kvasir-SEG and MoNuSeg split by phase, `odssam predict` on the Kvasir-SEG images, the
# predict profile, the selective scan (with its tile sweep) and the ViT-H encoder. Random
# weights throughout (no official checkpoint is needed or read).
#
#   bash benchmarks/schedule_figures.sh [PART ...]   # default: every part, in this order
#   PARTS: step cache predict-bench predict-write monuseg kvasir predict profile scan encoder
#
# Environment: KVASIR (a folder with images/ and masks/, default .gpu-data/Kvasir-SEG),
# MONUSEG_PACK (the output of `monuseg_transport.py pack`, default .gpu-data/monuseg-pack),
# KVASIR_EPOCHS (default 10, extrapolated to 200), MONUSEG_EPOCHS (default 200), WORKERS (data
# loader workers, default 8), OUT (results, default /tmp/schedule-figures), WORK (runs and data,
# default /tmp/schedule-work). Everything goes to $OUT/figures.log; one line per part to
# $OUT/summary.txt. `predict` and `profile` use the checkpoint of the `kvasir` part.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
KVASIR=$(realpath "${KVASIR:-.gpu-data/Kvasir-SEG}")
MONUSEG_PACK=$(realpath "${MONUSEG_PACK:-.gpu-data/monuseg-pack}")
KVASIR_EPOCHS=${KVASIR_EPOCHS:-10}
MONUSEG_EPOCHS=${MONUSEG_EPOCHS:-200}
WORKERS=${WORKERS:-8}
OUT=${OUT:-/tmp/schedule-figures}
WORK=${WORK:-/tmp/schedule-work}
mkdir -p "$OUT" "$WORK"
LOG=$OUT/figures.log
RANDOM_WEIGHTS=(--set model.sam.checkpoint=null --set model.prompt_encoder.feature_encoder.checkpoint=null)

part() {  # part NAME COMMAND...: run, log, one summary line with the seconds and exit status
  local name=$1 start status
  shift
  start=$(date +%s)
  { echo; echo "=== $name: $*"; } >> "$LOG"
  "$@" >> "$LOG" 2>&1
  status=$?
  echo "$name: exit $status in $(( $(date +%s) - start )) s" | tee -a "$OUT/summary.txt"
}

schedule() {  # schedule NAME CONFIG EPOCHS ROOT [--set ...]: bench_schedule.py, its JSON into the log
  local name=$1 config=$2 epochs=$3 root=$4
  shift 4
  python3 benchmarks/bench_schedule.py --config "$config" --epochs "$epochs" --schedule 200 \
    --run-dir "$WORK/$name" --json "$WORK/$name.json" -- --set "data.root=$root" \
    --set "data.num_workers=$WORKERS" "${RANDOM_WEIGHTS[@]}" "$@" --no-progress || return
  cat "$WORK/$name.json"
}

monuseg_data() {
  [ -d "$WORK/MoNuSeg" ] || python3 benchmarks/monuseg_transport.py unpack "$MONUSEG_PACK" "$WORK/MoNuSeg" --test-standin 14
}

ALL_PARTS=(step cache predict-bench predict-write monuseg kvasir predict profile scan encoder)
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=("${ALL_PARTS[@]}")
for name in "${parts[@]}"; do
  case $name in
    step) part step python3 benchmarks/bench_train_step.py --variants --profile 15 ;;
    cache) part cache python3 benchmarks/bench_cache.py --config paper --device cuda --images 256 --workers "$WORKERS" ;;
    predict-bench) part predict-bench python3 benchmarks/bench_predict.py --config paper --device cuda \
      --precision bf16 --batch-size 8 --images 96 --repeats 2 ;;
    predict-write) part predict-write python3 benchmarks/bench_predict.py --config paper --device cuda \
      --precision bf16 --sizes kvasir --write --images 96 ;;
    monuseg) monuseg_data && part monuseg schedule monuseg configs/monuseg.yaml "$MONUSEG_EPOCHS" "$WORK/MoNuSeg" ;;
    kvasir) part kvasir schedule kvasir configs/kvasir.yaml "$KVASIR_EPOCHS" "$KVASIR" \
      --set data.dataset=folder --set data.test_fraction=0.1 ;;
    predict) part predict odssam predict --checkpoint "$WORK/kvasir/last.pt" "$KVASIR/images" \
      --output "$WORK/predict" --device cuda --no-progress ;;
    profile) part profile python3 benchmarks/profile_predict.py "$KVASIR/images" \
      --checkpoint "$WORK/kvasir/last.pt" --images 96 ;;
    scan) part scan python3 benchmarks/bench_selective_scan.py --sweep ;;
    encoder) part encoder python3 benchmarks/bench_sam_encoder.py --no-compile --profile ;;
    *) echo "unknown part: $name (${ALL_PARTS[*]})" >&2; exit 2 ;;
  esac
done
